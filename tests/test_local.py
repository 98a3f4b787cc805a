"Larger checks of the local engine: parallel workers, CRS handling, exactextract agreement, property tests."
import numpy as np, pandas as pd, pytest, pyproj, shapely
from affine import Affine
from hypothesis import given, settings, strategies as st, HealthCheck

rasterio = pytest.importorskip('rasterio')
exactextract = pytest.importorskip('exactextract')

from gee_polygons.layers import CategoricalLayer, ContinuousLayer
from gee_polygons.sites import Site, SiteCollection
from gee_polygons.local import (local_categorical, local_continuous, polygon_coverage, weighted_stats, cell_areas,
                                class_areas)
from gee_polygons.sample_data import SAMPLE_LAYER, sample_sites_path, sample_raster_path

GEOD = pyproj.Geod(ellps='WGS84')
LYR = CategoricalLayer('users/x/lulc', {3: 'Forest', 15: 'Pasture', 33: 'Water'}, {}, [2020, 2021], name='t')


def write(path, arr, transform, crs, nodata=None, desc=None):
    arr = arr[None] if arr.ndim == 2 else arr
    with rasterio.open(path, 'w', driver='GTiff', width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata, tiled=True, blockxsize=64,
                       blockysize=64, compress='deflate') as dst:
        dst.write(arr)
        for i, d in enumerate(desc or [], 1): dst.set_band_description(i, d)
    return path


def star(rng, cx, cy, ha, k):
    ang = (np.arange(k) + rng.uniform(0, 0.9, k)) * 2 * np.pi / k  # increasing, gaps < pi: a simple polygon
    r = np.sqrt(ha * 1e4 / np.pi) / 111_320 * rng.uniform(0.7, 1.3, k)
    return shapely.Polygon(np.c_[cx + r * np.cos(ang) / np.cos(np.radians(cy)), cy + r * np.sin(ang)])


@pytest.fixture(scope='module')
def geo(tmp_path_factory):
    "A 1200 x 1200 EPSG:4326 raster of 30 m pixels with two years, and 300 random sites on it."
    rng, d = np.random.default_rng(42), 0.00027
    path = tmp_path_factory.mktemp('geo') / 'geo.tif'
    arr = rng.choice(np.array([3, 15, 33], np.uint8), size=(2, 1200, 1200))
    arr[1, 100:300, 100:300] = 0
    write(path, arr, Affine(d, 0, -48, 0, -d, -15.5), 'EPSG:4326', 0, ['classification_2020', 'classification_2021'])
    polys = [star(rng, -48 + rng.uniform(0.02, 0.30), -15.5 - rng.uniform(0.02, 0.30), rng.uniform(1, 500),
                  int(rng.integers(5, 41))) for _ in range(300)]
    return path, SiteCollection([Site(f's{i:03d}', p) for i, p in enumerate(polys)]), polys


def test_workers_give_the_same_table_in_the_same_order(geo):
    path, sites, _ = geo
    one = local_categorical(sites, LYR, [2020, 2021], path, workers=1, progress=False)
    two = local_categorical(sites, LYR, [2020, 2021], path, workers=2, progress=False, piece_size=40)
    pd.testing.assert_frame_equal(one.data, two.data)
    assert (one.errors, one.warnings) == (two.errors, two.warnings)
    assert one.data.site_id.unique().tolist() == sites.ids


def test_total_area_matches_geodesic_area(geo):
    path, sites, polys = geo
    res = local_categorical(sites, LYR, [2020], path, progress=False)
    got = res.data.groupby('site_id').area_ha.sum().reindex(sites.ids).to_numpy()
    truth = np.array([abs(GEOD.geometry_area_perimeter(p)[0]) / 1e4 for p in polys])
    assert np.abs(got / truth - 1).max() < 0.005


def test_counts_agree_with_bare_exactextract(geo):
    "Coverage-weighted counts per class equal exactextract's frac x count (nodata excluded from both)."
    path, sites, polys = geo
    sub = sites[:40]
    res = local_categorical(sub, LYR, [2021], path, progress=False)
    import geopandas as gpd
    from exactextract import exact_extract, Operation
    from exactextract.raster import RasterioRasterSource
    with rasterio.open(path) as ds:
        src = RasterioRasterSource(ds, 2)
        ops = [Operation('unique', 'u', src), Operation('frac', 'f', src), Operation('count', 'n', src)]
        df = exact_extract(src, gpd.GeoDataFrame({'site_id': sub.ids}, geometry=polys[:40], crs=4326), ops,
                           include_cols=['site_id'], output='pandas')
    for _, r in df.iterrows():
        mine = res.data[res.data.site_id == r.site_id]
        o = np.argsort(r.u)
        assert mine.class_value.tolist() == [int(v) for v in r.u[o]]
        np.testing.assert_allclose(mine['count'].to_numpy(), (r.f * r.n)[o], rtol=1e-9)


def test_projected_raster_in_epsg5880_with_sites_in_4326(tmp_path):
    "Grid-aligned polygons on a SIRGAS 2000 / Brazil Polyconic raster: exact whole-pixel areas after reprojection."
    rng = np.random.default_rng(1)
    arr = rng.choice(np.array([3, 15], np.uint8), size=(100, 120))
    t = Affine(30, 0, 5_000_000, 0, -30, 8_200_000)
    path = write(tmp_path / 'poly.tif', arr, t, 'EPSG:5880', 0, ['classification_2020'])
    to4326 = pyproj.Transformer.from_crs('EPSG:5880', 'EPSG:4326', always_xy=True)
    boxes = [(0, 0, 10, 10), (5, 7, 50, 9), (60, 100, 100, 120)]
    sites = [Site(f'b{i}', shapely.transform(shapely.box(t.c + 30 * c0, t.f - 30 * r1, t.c + 30 * c1, t.f - 30 * r0),
                                             lambda xy: np.column_stack(to4326.transform(*xy.T))))
             for i, (r0, c0, r1, c1) in enumerate(boxes)]
    res = local_categorical(sites, LYR, [2020], path, progress=False)
    for i, (r0, c0, r1, c1) in enumerate(boxes):
        codes, counts = np.unique(arr[r0:r1, c0:c1], return_counts=True)
        got = res.data[res.data.site_id == f'b{i}']
        assert got.class_value.tolist() == codes.tolist()
        np.testing.assert_allclose(got.area_ha.to_numpy(), counts * 900 / 1e4, rtol=1e-7)
    assert res.errors == []


def test_sample_data_with_workers_matches_single_process():
    sites = SiteCollection.from_file(sample_sites_path())
    one = local_categorical(sites, SAMPLE_LAYER, SAMPLE_LAYER.years, sample_raster_path(), progress=False)
    two = local_categorical(sites, SAMPLE_LAYER, SAMPLE_LAYER.years, sample_raster_path(), workers=2, progress=False,
                            piece_size=3)
    pd.testing.assert_frame_equal(one.data, two.data)
    assert [s for s, _ in one.warnings] == ["site_07", "site_12"] and one.errors == []


def test_a_single_site_is_accepted():
    site = SiteCollection.from_file(sample_sites_path())[19]
    res = local_categorical(site, SAMPLE_LAYER, [2016], sample_raster_path(), progress=False)
    assert res.data.site_id.unique().tolist() == ['site_20'] and res.n_sites == 1
    np.testing.assert_allclose(res.data.area_ha.sum(), site.area_ha, rtol=5e-3)


def test_continuous_single_file_yearly_and_workers(tmp_path):
    "Bands named <band>_<period> in one file; statistics equal a brute-force computation from the coverage."
    rng = np.random.default_rng(3)
    d, t = 0.00027, Affine(0.00027, 0, -48, 0, -0.00027, -15.5)
    vals = rng.normal(0.5, 0.2, size=(4, 300, 300)).astype('float32')
    vals[:, :20, :20] = -1
    path = write(tmp_path / 'vi.tif', vals, t, 'EPSG:4326', -1, ['NDVI_2020', 'EVI_2020', 'NDVI_2021', 'EVI_2021'])
    polys = [star(rng, -48 + rng.uniform(0.005, 0.075), -15.5 - rng.uniform(0.005, 0.075), rng.uniform(1, 50), 12)
             for _ in range(25)]
    sites = [Site(f'p{i}', p) for i, p in enumerate(polys)]
    lyr = ContinuousLayer('x/s2', ['NDVI', 'EVI'])
    for red in ('mean', 'median', 'stdDev'):
        res = local_continuous(sites, lyr, path, 2020, 2022, reducer=red, progress=False)
        par = local_continuous(sites, lyr, path, 2020, 2022, reducer=red, progress=False, workers=2, piece_size=5)
        pd.testing.assert_frame_equal(res.data, par.data)
        assert res.data.period.tolist() == ['2020', '2021'] * 25
        for i, (cells, cov) in enumerate(polygon_coverage(polys, t, (300, 300))):
            v = vals.reshape(4, -1)[:, cells]
            stats, counts = weighted_stats(v, cov, red, -1)
            row = res.data.iloc[2 * i + 1]  # 2021: layers 2 and 3
            np.testing.assert_allclose([row.NDVI, row.EVI, row.valid_count], [stats[2], stats[3], counts[2]], rtol=1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(r0=st.integers(0, 40), c0=st.integers(0, 40), h=st.integers(1, 20), w=st.integers(1, 20),
       seed=st.integers(0, 2**16), frac=st.sampled_from([0.0, 0.25, 0.5]))
def test_class_areas_on_shifted_boxes_are_exact(r0, c0, h, w, seed, frac):
    "A box shifted by `frac` of a pixel: coverage-weighted areas equal a direct computation."
    arr = np.random.default_rng(seed).choice(np.array([1, 2, 7], np.uint8), size=(1, 64, 64))
    t = Affine(10, 0, 0, 0, -10, 640)
    geom = shapely.box(10 * (c0 + frac), 640 - 10 * (r0 + h + frac), 10 * (c0 + w + frac), 640 - 10 * (r0 + frac))
    (cells, cov), = polygon_coverage([geom], t, (64, 64))
    lay, cls, cnt, area = class_areas(arr.reshape(1, -1)[:, cells], cov, np.full(len(cells), 100.0))
    weights = np.zeros((64, 64))  # the analytic coverage of each pixel: overlap of [c0+frac, c0+w+frac) per axis
    ov = lambda lo, n: np.clip(np.minimum(np.arange(64) + 1, lo + n) - np.maximum(np.arange(64), lo), 0, 1)
    weights = np.outer(ov(r0 + frac, h), ov(c0 + frac, w))
    for c, a in zip(cls, area):
        assert abs(a - 100 * weights[arr[0] == c].sum()) < 1e-6
    assert abs(area.sum() - 100 * h * w) < 1e-6


def test_extract_dispatch_and_lazy_collections_and_progress_bar():
    import gee_polygons.extract  # noqa: F401  (adds SiteCollection.extract_categorical)
    eager = SiteCollection.from_file(sample_sites_path())
    lazy = SiteCollection.from_file(sample_sites_path(), lazy=True)
    direct = local_categorical(eager, SAMPLE_LAYER, [2019], sample_raster_path(), progress=True)
    via = lazy.extract_categorical(SAMPLE_LAYER, [2019], source=sample_raster_path(), progress=False)
    pd.testing.assert_frame_equal(direct.data, via.data)
    assert direct.warnings == via.warnings and [s for s, _ in via.warnings] == ["site_07", "site_12"]


def test_uint8_fast_path_equals_the_window_path(geo, tmp_path):
    "The same classes stored as uint16 take the per-site window path: the tables agree to 1e-12."
    path, sites, _ = geo
    with rasterio.open(path) as ds: arr, t = ds.read(), ds.transform
    wide = write(tmp_path / 'wide.tif', arr.astype('uint16'), t, 'EPSG:4326', 0, ['classification_2020', 'classification_2021'])
    fast = local_categorical(sites, LYR, [2020, 2021], path, progress=False)
    slow = local_categorical(sites, LYR, [2020, 2021], wide, progress=False)
    pd.testing.assert_frame_equal(fast.data, slow.data, check_exact=False, rtol=1e-12)
    assert (fast.errors, fast.warnings) == (slow.errors, slow.warnings)


def test_earth_models(geo):
    "'sphere' (R = 6,371,007.2 m) scales areas by the sphere/ellipsoid cell-area ratio; counts and fractions keep."
    path, sites, _ = geo
    wgs = local_categorical(sites[:50], LYR, [2020], path, progress=False)
    sph = local_categorical(sites[:50], LYR, [2020], path, progress=False, earth='sphere')
    lat = -15.5 - 0.00027 * 600  # the raster's middle row
    ratio = (cell_areas(Affine(1e-4, 0, 0, 0, -1e-4, lat), 'EPSG:4326', [0], 'sphere')
             / cell_areas(Affine(1e-4, 0, 0, 0, -1e-4, lat), 'EPSG:4326', [0]))[0]
    np.testing.assert_allclose(sph.data.area_ha / wgs.data.area_ha, ratio, rtol=2e-5)
    assert 1.003 < ratio < 1.004  # +0.35% near 15.6°S
    np.testing.assert_array_equal(sph.data['count'], wgs.data['count'])
    np.testing.assert_allclose(sph.data.fraction, wgs.data.fraction, atol=1e-6)
    with pytest.raises(ValueError, match="earth must be 'wgs84'"): local_categorical(sites[:1], LYR, [2020], path, earth='ellipsoid')


SCRIPT = '''
from gee_polygons.local import local_categorical
from gee_polygons.sites import SiteCollection
from gee_polygons.sample_data import SAMPLE_LAYER, sample_sites_path, sample_raster_path
sites = SiteCollection.from_file(sample_sites_path())
res = local_categorical(sites, SAMPLE_LAYER, SAMPLE_LAYER.years, sample_raster_path(), workers=2, piece_size=3, progress=False)
print('rows', len(res.data))
'''


def test_a_plain_script_without_a_main_guard_can_use_workers(tmp_path):
    "Spawned workers do not run the calling script again: no `if __name__ == '__main__':` needed."
    import subprocess, sys
    script = tmp_path / 'plain_script.py'
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    sites = SiteCollection.from_file(sample_sites_path())
    one = local_categorical(sites, SAMPLE_LAYER, SAMPLE_LAYER.years, sample_raster_path(), progress=False)
    assert out.stdout.split() == ['rows', str(len(one.data))]


@pytest.mark.parametrize('workers', [1, 2])
def test_damaged_or_unreadable_rasters_give_one_line(geo, tmp_path, workers):
    path, sites, _ = geo
    text = tmp_path / 'notes.tif'
    text.write_text('this is not a raster')
    with pytest.raises(ValueError, match='not a GeoTIFF or raster GDAL knows') as e:
        local_categorical(sites, LYR, [2020], text, progress=False, workers=workers)
    assert '\n' not in str(e.value)
    cut = tmp_path / 'cut.tif'
    cut.write_bytes(path.read_bytes()[:path.stat().st_size // 2])  # header whole, later tiles missing
    with pytest.raises(ValueError, match='damaged or truncated') as e:
        local_categorical(sites, LYR, [2020, 2021], cut, progress=False, workers=workers, piece_size=50)
    assert '\n' not in str(e.value) and e.value.__cause__ is None and 'cut.tif' in str(e.value)


def test_a_raster_without_crs_is_named(tmp_path):
    path = tmp_path / 'nocrs.tif'
    with rasterio.open(path, 'w', driver='GTiff', width=10, height=10, count=1, dtype='uint8',
                       transform=Affine(0.001, 0, -48, 0, -0.001, -15)) as dst: dst.write(np.ones((1, 10, 10), np.uint8))
    site = Site('a', shapely.box(-47.999, -15.005, -47.995, -15.001))
    with pytest.raises(ValueError, match='nocrs.tif has no CRS; set one'):
        local_categorical([site], LYR, [2020], path, band_years=[2020], progress=False)

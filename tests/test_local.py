"Larger checks of the local engine: parallel workers, CRS handling, exactextract agreement, property tests."
import numpy as np, pandas as pd, pytest, pyproj, shapely
from affine import Affine
from hypothesis import given, settings, strategies as st, HealthCheck

rasterio = pytest.importorskip('rasterio')
exactextract = pytest.importorskip('exactextract')

from gee_polygons.layers import CategoricalLayer, ContinuousLayer
from gee_polygons.sites import Site, SiteCollection
from gee_polygons.local import (local_categorical, local_continuous, local_transitions, polygon_coverage, weighted_stats,
                                cell_areas, cell_class_areas)
import gee_polygons.local as L
from gee_polygons.result import TRANSITION_SCHEMA
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
        np.testing.assert_allclose(mine["count"].to_numpy(), (r.f * r.n)[o], rtol=1e-7)  # exactextract keeps fractions in float32


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
            np.testing.assert_allclose([row.NDVI, row.EVI, row.valid_count], [stats[2], stats[3], counts[2]],
                                       rtol=1e-6)  # exactextract's fractions are float32, the engine's float64


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(r0=st.integers(0, 40), c0=st.integers(0, 40), h=st.integers(1, 20), w=st.integers(1, 20),
       seed=st.integers(0, 2**16), frac=st.sampled_from([0.0, 0.25, 0.5]))
def test_class_areas_on_shifted_boxes_are_exact(r0, c0, h, w, seed, frac):
    "A box shifted by `frac` of a pixel: coverage-weighted areas equal a direct computation."
    arr = np.random.default_rng(seed).choice(np.array([1, 2, 7], np.uint8), size=(1, 64, 64))
    t = Affine(10, 0, 0, 0, -10, 640)
    geom = shapely.box(10 * (c0 + frac), 640 - 10 * (r0 + h + frac), 10 * (c0 + w + frac), 640 - 10 * (r0 + frac))
    (cells, cov), = polygon_coverage([geom], t, (64, 64))
    lay, cls, cnt, area = cell_class_areas(arr.reshape(1, -1)[:, cells], cov, np.full(len(cells), 100.0))
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


# ---- transitions (issue 12) and the fast engine's equality with the reference path (issue 14)

def test_transitions_invariants_against_class_areas_with_workers(geo):
    """Sum over class_to = class areas of year_from (year_to fully classified), over class_from = those of year_to
    (year_from fully classified); identical years = the diagonal; two workers = one process."""
    path, sites, _ = geo
    pairs = [(2020, 2021), (2021, 2020), (2020, 2020)]
    one = local_transitions(sites, LYR, pairs, path, workers=1, progress=False)
    two = local_transitions(sites, LYR, pairs, path, workers=2, progress=False, piece_size=40)
    pd.testing.assert_frame_equal(one.data, two.data)
    assert (one.errors, one.warnings) == (two.errors, two.warnings) and one.data.dtypes.astype(str).to_dict() == TRANSITION_SCHEMA
    cat = local_categorical(sites, LYR, [2020, 2021], path, progress=False).data.set_index(['site_id', 'year', 'class_value']).area_ha
    d = one.data
    fwd = d[(d.year_from == 2021) & (d.year_to == 2020)].groupby(['site_id', 'year_from', 'class_from']).area_ha.sum()
    np.testing.assert_allclose(fwd.to_numpy(), cat.loc[fwd.index].to_numpy(), rtol=1e-12)
    assert len(fwd) == len(cat.xs(2021, level='year'))
    bwd = d[(d.year_from == 2020) & (d.year_to == 2021)].groupby(['site_id', 'year_to', 'class_to']).area_ha.sum()
    np.testing.assert_allclose(bwd.to_numpy(), cat.loc[bwd.index].to_numpy(), rtol=1e-12)
    diag = d[(d.year_from == 2020) & (d.year_to == 2020)]
    assert (diag.class_from == diag.class_to).all()
    np.testing.assert_allclose(diag.area_ha.to_numpy(), cat.xs(2020, level='year').to_numpy(), rtol=1e-12)
    frac = d.groupby(['site_id', 'year_from', 'year_to']).fraction.sum()
    assert (frac <= 1 + 1e-12).all() and np.allclose(frac.xs((2021, 2020), level=(1, 2)), 1, atol=1e-12)
    assert frac.xs((2020, 2021), level=(1, 2)).min() < 0.999  # the nodata block of 2021 drops out of (2020, 2021)


@pytest.mark.parametrize('dtype', ['uint8', 'int16'])
def test_transitions_exact_on_a_pixel_aligned_truth_raster(tmp_path, dtype):
    "Boxes on the pixel grid of a UTM raster: every transition is a whole number of 900 m2 pixels (both code paths)."
    rng = np.random.default_rng(3)
    arr = rng.choice(np.array([3, 15, 33, 0], dtype), size=(3, 50, 60), p=[0.4, 0.3, 0.2, 0.1])
    T = Affine(30, 0, 600000, 0, -30, 8200000)
    path = write(tmp_path / 't.tif', arr, T, 'EPSG:32723', 0, [f'classification_{y}' for y in (2020, 2021, 2022)])
    lyr = CategoricalLayer('users/x/t', {3: 'Forest', 15: 'Pasture', 33: 'Water'}, {}, [2020, 2021, 2022], name='t')
    to4326 = pyproj.Transformer.from_crs('EPSG:32723', 'EPSG:4326', always_xy=True)
    boxes = [(0, 0, 10, 12), (5, 20, 30, 45), (31, 1, 50, 60)]
    poly = lambda r0, c0, r1, c1: shapely.transform(shapely.box(600000 + 30 * c0, 8200000 - 30 * r1, 600000 + 30 * c1,
                                                                8200000 - 30 * r0), lambda xy: np.column_stack(to4326.transform(*xy.T)))
    sites = [Site(f'b{i}', poly(*b)) for i, b in enumerate(boxes)]
    res = local_transitions(sites, lyr, [(2020, 2022), (2021, 2022), (2022, 2022)], path, progress=False)
    assert res.data.groupby(['site_id', 'year_from', 'year_to']).ngroups == 9
    for (sid, y0, y1), g in res.data.groupby(['site_id', 'year_from', 'year_to']):
        r0, c0, r1, c1 = boxes[int(sid[1])]
        a, b = arr[y0 - 2020, r0:r1, c0:c1].astype(int), arr[y1 - 2020, r0:r1, c0:c1].astype(int)
        ok = (a != 0) & (b != 0)
        codes, counts = np.unique(a[ok] * 1000 + b[ok], return_counts=True)
        assert g.class_from.tolist() == (codes // 1000).tolist() and g.class_to.tolist() == (codes % 1000).tolist()
        np.testing.assert_allclose(g.area_ha.to_numpy(), counts * 0.09, rtol=1e-9)
        np.testing.assert_allclose(g['count'].to_numpy(), counts, rtol=1e-6)
        np.testing.assert_allclose(g.fraction.to_numpy(), counts / (a != 0).sum(), rtol=1e-9)
    assert res.data.class_to_name[res.data.class_to == 33].iloc[0] == 'Water'


def test_transitions_errors_are_one_line(geo):
    path, sites, _ = geo
    for bad in ([], [2020, 2021, 2022], [(2020, 2021, 2022)], 'x', None):
        with pytest.raises(ValueError, match=r'pairs must be \(year_from, year_to\) pairs of years'):
            local_transitions(sites, LYR, bad, path, progress=False)
    with pytest.raises(ValueError, match='available years are 2020-2021'): local_transitions(sites, LYR, [(2019, 2020)], path)
    with pytest.raises(TypeError, match='Expected a CategoricalLayer'):
        local_transitions(sites, ContinuousLayer('x', ['NDVI']), [(2020, 2021)], path)
    with pytest.raises(ValueError, match='between 0 and 1'): local_transitions(sites, LYR, [(2020, 2021)], path, min_coverage=2)


def test_extract_transitions_dispatches_to_the_local_engine():
    import gee_polygons.extract  # noqa: F401 (adds SiteCollection.extract_transitions)
    sites = SiteCollection.from_file(sample_sites_path())
    y0, y1 = SAMPLE_LAYER.years[0], SAMPLE_LAYER.years[-1]
    direct = local_transitions(sites, SAMPLE_LAYER, [(y0, y1)], sample_raster_path(), progress=False)
    via = sites.extract_transitions(SAMPLE_LAYER, pairs=[(y0, y1)], source=sample_raster_path(), progress=False)
    pd.testing.assert_frame_equal(direct.data, via.data)
    assert direct.provenance['engine'] == 'local' and direct.provenance['earth'] == 'wgs84'


def test_fast_engine_equals_the_reference_path_on_the_sample(monkeypatch):
    """The compiled tile-run engine's tables equal the window-by-window reference (one read and one reduction per site)
    within 1e-9, for class areas and transitions."""
    sites = SiteCollection.from_file(sample_sites_path())
    years, pairs = SAMPLE_LAYER.years, list(zip(SAMPLE_LAYER.years, SAMPLE_LAYER.years[1:]))
    fast = (local_categorical(sites, SAMPLE_LAYER, years, sample_raster_path(), progress=False),
            local_transitions(sites, SAMPLE_LAYER, pairs, sample_raster_path(), progress=False))
    monkeypatch.setattr(L, 'categorical_piece', L._categorical_windows)
    monkeypatch.setattr(L, 'transitions_piece', lambda st, g, p: L._piece_windows(
        st, g, L._TRANSITION_ROWS, lambda v, c, a: L.cell_transitions(v, c, a, p, st.nodata)))
    ref = (local_categorical(sites, SAMPLE_LAYER, years, sample_raster_path(), progress=False),
           local_transitions(sites, SAMPLE_LAYER, pairs, sample_raster_path(), progress=False))
    for f, r in zip(fast, ref):
        num = ['count', 'area_ha', 'fraction']
        pd.testing.assert_frame_equal(f.data.drop(columns=num), r.data.drop(columns=num))
        for c in num: np.testing.assert_allclose(f.data[c], r.data[c], rtol=1e-9, atol=0)
        assert (f.errors, f.warnings) == (r.errors, r.warnings)

"""The evaluator against the local engine and hand computations: every expression kind the library builds, evaluated
over synthetic rasters; the algorithm contract; errors; the emulator answering the real client."""
import io, json, math
import numpy as np, pandas as pd, pytest
from hypothesis import given, settings, strategies as st, HealthCheck

rasterio = pytest.importorskip('rasterio')
pytest.importorskip('exactextract')
import ee
from rasterio.transform import from_origin
import shapely
from shapely.geometry import shape

from gee_polygons.testing import offline_init, algorithm_names
from gee_polygons import earthengine as E
from gee_polygons.evaluator import (Evaluator, EvaluationError, UnsupportedAlgorithm, ALGORITHMS, unsupported_algorithms,
                                    sample_evaluator, reduce_pixels, export_csv, export_geojson, M_PER_DEGREE, default_grid)
from gee_polygons.layers import CategoricalLayer, ContinuousLayer, CATEGORICAL_SCHEMA, continuous_schema
from gee_polygons.result import TRANSITION_SCHEMA
from gee_polygons.local import local_categorical, local_continuous, polygon_coverage, to_raster_crs, cell_areas
from gee_polygons.sites import SiteCollection
import gee_polygons.extract  # noqa: F401  (adds SiteCollection.extract_*)
from gee_polygons.sample_data import SAMPLE_LAYER, sample_sites_path, sample_raster_path, ORIGIN, RES, SHAPE
from gee_polygons.datasets.registry import LAYERS

TOL = 0.001  # areas must agree within 0.1% (the local engine on the evaluator's earth model)


def local_earth(ev) -> dict:
    "The local engine's earth= for the evaluator `ev`'s model ({} while the local engine has no earth= yet)."
    import inspect
    return {'earth': ev.earth} if 'earth' in inspect.signature(local_categorical).parameters else {}


def sample_ev(**kw):
    "The sample evaluator on an earth model the local engine can also use."
    ev = sample_evaluator(**kw)
    return ev if local_earth(ev) or ev.earth == 'wgs84' else sample_evaluator(**{**kw, 'earth': 'wgs84'})


@pytest.fixture(scope='module', autouse=True)
def offline():
    offline_init()


@pytest.fixture(scope='module')
def sites():
    return SiteCollection.from_file(sample_sites_path())


def write(path, arr, transform, desc=None, nodata=None):
    arr = arr[None] if arr.ndim == 2 else arr
    with rasterio.open(path, 'w', driver='GTiff', width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs='EPSG:4326', transform=transform, nodata=nodata) as dst:
        dst.write(arr)
        for i, d in enumerate(desc or [], 1): dst.set_band_description(i, d)
    return path


def compare(ours, theirs, keys, cols, rel=TOL):
    "Same rows by `keys`; `cols` agree within `rel` (relative) or 1e-9 (absolute)."
    m = theirs.merge(ours, on=keys, how='outer', suffixes=('_l', '_e'), indicator=True)
    assert set(m._merge) == {'both'}, m[m._merge != 'both'][keys]
    for c in cols:
        a, b = m[f'{c}_e'].to_numpy(float), m[f'{c}_l'].to_numpy(float)
        np.testing.assert_allclose(a, b, rtol=rel, atol=1e-9, err_msg=c)
    return m


# --- the contract -------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def exprs(sites):
    "Every expression kind the library builds, for the presets and the sample layer (two sites)."
    return E.all_expressions(sites[:2], [*LAYERS.values(), SAMPLE_LAYER])


def test_registry_is_exactly_the_library_algorithms(exprs):
    from gee_polygons.export import tag_job  # export chunks tag every row with their job id
    used = set().union(*map(algorithm_names, [*exprs.values(), tag_job(exprs['sites_fc'], 'job')]))
    assert used - set(ALGORITHMS) == set(), f'teach the evaluator: {sorted(used - set(ALGORITHMS))}'
    assert set(ALGORITHMS) - used == set(), f'no longer used by the library: {sorted(set(ALGORITHMS) - used)}'


def test_job_tags_evaluate(sites):
    from gee_polygons.export import tag_job
    rows = sample_evaluator()(tag_job(E.transitions_table(SAMPLE_LAYER, [(2016, 2020)], sites[:2], coverage=True), 'job-1'))
    assert rows and {r['job_id'] for r in rows} == {'job-1'} and all('site_id' in r for r in rows)


def test_coverage_check_catches_a_new_algorithm(sites, exprs):
    assert unsupported_algorithms(*exprs.values()) == set()
    new = E.categorical_table(SAMPLE_LAYER, [2016], sites[:1]).map(lambda f: f.set('x', ee.Number(2).sqrt()).setGeometry(None))
    assert unsupported_algorithms(*exprs.values(), new) == {'Feature.setGeometry', 'Number.sqrt'}
    with pytest.raises(UnsupportedAlgorithm, match=r'does not implement (Feature\.setGeometry|Number\.sqrt)'): sample_evaluator()(new)


def test_function_reference_and_odd_nodes_are_clear_errors():
    ev = Evaluator()
    with pytest.raises(UnsupportedAlgorithm, match='functionReference'):
        ev.evaluate({'result': '0', 'values': {'0': {'functionInvocationValue': {'functionReference': 'f', 'arguments': {}}}}})
    with pytest.raises(EvaluationError, match='cannot read the expression node'):
        ev.evaluate({'result': '0', 'values': {'0': {'bytesValue': 'AA=='}}})
    with pytest.raises(EvaluationError, match='no value'): ev.evaluate({'result': '9', 'values': {}})
    with pytest.raises(EvaluationError, match='Not an Earth Engine expression'): ev.evaluate({'values': {}})
    with pytest.raises(EvaluationError, match=r"does not support the argument\(s\) \['bogus'\]"):
        ev.evaluate({'result': '0', 'values': {'0': {'functionInvocationValue': {
            'functionName': 'Number.gt', 'arguments': {'left': {'constantValue': 1}, 'right': {'constantValue': 0},
                                                       'bogus': {'constantValue': 1}}}}}})


def test_expression_forms_are_equivalent():
    ev, obj = Evaluator(), ee.Number(7).divide(2)
    d = json.loads(ee.serializer.toJSON(obj))
    assert ev.evaluate(obj) == ev.evaluate(d) == ev.evaluate(json.dumps(d)) == ev.evaluate(json.dumps(d).encode()) == 3.5


# --- categorical: the sample against the local engine ----------------------------------------------------------

@pytest.mark.parametrize('years', [[2016], [2018, 2019, 2020], SAMPLE_LAYER.years])
def test_sample_categorical_matches_local(sites, years):
    ev = sample_ev()
    rows = ev(E.categorical_table(SAMPLE_LAYER, years, sites))
    ours = pd.DataFrame(rows)
    assert set(ours.columns) == set(CATEGORICAL_SCHEMA)  # properties come in the expression's (sorted) order
    theirs = local_categorical(sites, SAMPLE_LAYER, years, sample_raster_path(), progress=False, **local_earth(ev)).data
    m = compare(ours, theirs, ['site_id', 'year', 'class_value'], ['area_ha', 'count', 'fraction'])
    assert (m.class_name_e == m.class_name_l).all()
    assert sorted(ours.year.unique()) == years


def test_sample_categorical_chunks_add_up(sites):
    "Two chunks give the rows of one request; site_07 (half outside) and site_12 (2019 gap) included."
    ev = sample_evaluator()
    whole = pd.DataFrame(ev(E.categorical_table(SAMPLE_LAYER, [2019], sites)))
    parts = pd.concat([pd.DataFrame(ev(E.categorical_table(SAMPLE_LAYER, [2019], c))) for c in sites.chunks(7)])
    pd.testing.assert_frame_equal(whole.reset_index(drop=True), parts.reset_index(drop=True))
    assert {'site_07', 'site_12'} <= set(whole.site_id)


def test_fraction_sums_to_one_and_counts_are_weighted_pixels(sites):
    df = pd.DataFrame(sample_evaluator()(E.categorical_table(SAMPLE_LAYER, [2017], sites)))
    np.testing.assert_allclose(df.groupby('site_id').fraction.sum(), 1, rtol=1e-12)
    assert (df['count'] % 1 != 0).any()  # partial pixels count partially


@pytest.mark.parametrize('earth', ['wgs84', 'sphere'])
def test_pixel_area_follows_the_earth_model(sites, earth):
    ev = sample_evaluator(earth=earth)
    feats = ev(ee.Image.pixelArea().reduceRegions(E.sites_fc(sites[:3]), ee.Reducer.sum(), 30))
    src = rasterio.open(sample_raster_path())
    geoms = to_raster_crs([shape(s.geometry) for s in sites[:3]], src.crs)
    for f, (cells, cov) in zip(feats, polygon_coverage(geoms, src.transform, src.shape)):
        rows = cells // src.shape[1]
        assert f['area'] == pytest.approx(float((cov * cell_areas(src.transform, src.crs, rows, earth)).sum()), rel=1e-6)
    # the ellipsoid gives the geodesic area of the (fully covered) site; the authalic sphere 0.35% more at 15.7°S
    assert feats[0]['area'] / 1e4 / sites[0].area_ha == pytest.approx({'wgs84': 1, 'sphere': 1.0035}[earth], abs=TOL)


def test_far_scale_resamples_on_a_grid_of_that_scale(sites):
    ev = sample_evaluator()
    native = pd.DataFrame(ev(E.categorical_table(SAMPLE_LAYER, [2020], sites, scale=30)))
    coarse = pd.DataFrame(ev(E.categorical_table(SAMPLE_LAYER, [2020], sites, scale=90)))
    g = ev.working_grid(ev.image(SAMPLE_LAYER.asset_id), 90, [])
    assert g.nominal_scale == pytest.approx(90) and g.shape == (math.ceil(600 * RES * M_PER_DEGREE / 90),) * 2
    assert ev.working_grid(ev.image(SAMPLE_LAYER.asset_id), 31, []).shape == SHAPE  # within 10%: native grid
    tot_n, tot_c = native.groupby('site_id').area_ha.sum(), coarse.groupby('site_id').area_ha.sum()
    inside = tot_n.index != 'site_07'  # site_07 crosses the raster's edge, which the 90 m grid does not align with
    np.testing.assert_allclose(tot_c[inside], tot_n[inside], rtol=0.02)  # nearest-neighbour at 3x the pixel: same totals
    assert tot_c['site_07'] < tot_n['site_07']
    assert not np.allclose(coarse['count'].sum(), native['count'].sum(), rtol=0.5)  # ~9x fewer pixels


# --- categorical: an image collection (yearly mode), like Dynamic World ----------------------------------------

DW_GRID = list(from_origin(*ORIGIN, 3 * RES, 3 * RES))[:6]  # the test collections' 90 m grid, as a crsTransform


@pytest.fixture(scope='module')
def dw(tmp_path_factory):
    "A Dynamic World-like collection: 5 label images a year at 90 m, 255 = nodata; per-year numpy modes."
    d = tmp_path_factory.mktemp('dw'); (d / 'col').mkdir(); (d / 'mode').mkdir()
    rng, t = np.random.default_rng(11), from_origin(*ORIGIN, 3 * RES, 3 * RES)
    h, w = SHAPE[0] // 3, SHAPE[1] // 3
    layer = CategoricalLayer('users/test/dynamic_world', {0: 'water', 1: 'trees', 2: 'grass', 3: 'crops'}, {},
                             [2020, 2021], temporal='collection', band='label', scale=90, name='dw_test')
    base = rng.integers(0, 4, (h, w))
    for y in layer.years:
        stack = np.where(rng.random((5, h, w)) < 0.35, rng.integers(0, 4, (5, h, w)), base).astype(np.uint8)
        stack[rng.random((5, h, w)) < 0.15] = 255
        stack[:, :8, :8] = 255  # never observed
        for i, day in enumerate(('02-01', '04-11', '06-21', '09-01', '12-31')):
            write(d / 'col' / f'dw_{y}-{day}.tif', stack[i], t, ['label'], nodata=255)
        valid = stack != 255
        counts = np.stack([((stack == c) & valid).sum(0) for c in range(4)])
        mode = np.where(valid.any(0), counts.argmax(0), 255).astype(np.uint8)  # ties: the smallest class
        write(d / 'mode' / f'mode_{y}.tif', mode, t, ['label'], nodata=255)
    write(d / 'col' / 'dw_2019-12-31.tif', base.astype(np.uint8), t, ['label'], nodata=255)  # outside the years
    return layer, d


def test_collection_mode_matches_local(sites, dw):
    layer, d = dw
    ev = Evaluator({layer.asset_id: d / 'col'}, earth='wgs84')
    ours = pd.DataFrame(ev(E.categorical_table(layer, layer.years, sites, crs='EPSG:4326', crs_transform=DW_GRID)))
    theirs = local_categorical(sites, layer, layer.years, str(d / 'mode' / 'mode_{year}.tif'), progress=False).data
    compare(ours, theirs, ['site_id', 'year', 'class_value'], ['area_ha', 'count', 'fraction'])


def test_collection_is_filtered_by_date_and_bounds(sites, dw):
    layer, d = dw
    ev = Evaluator({layer.asset_id: d / 'col'})
    col = ee.ImageCollection(layer.asset_id)
    assert ev.evaluate(col.filterDate('2020-01-01', '2021-01-01').size()) == 5
    assert ev.evaluate(col.filterDate('2019-12-31', '2020-01-01').size()) == 1  # end exclusive
    far = ee.Geometry.MultiPolygon([[[[10, 10], [11, 10], [11, 11]]]], None, False)
    assert ev.evaluate(col.filterBounds(far).size()) == 0
    assert ev.evaluate(col.filterBounds(E.sites_fc(sites[:2])).size()) == 11


# --- continuous -------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def indices(tmp_path_factory):
    "Two bands, an image every ~10 days Jan-Mar 2020 and one in 2021, 10% NaN; numpy median composites per period."
    d = tmp_path_factory.mktemp('idx'); (d / 'col').mkdir(); (d / 'comp').mkdir()
    rng, t = np.random.default_rng(5), from_origin(*ORIGIN, 3 * RES, 3 * RES)
    layer = ContinuousLayer('users/test/indices', ['NDVI', 'EVI'], scale=90, name='indices')
    dates = {'2020-01': ['03', '14', '25'], '2020-02': ['05', '15', '24'], '2020-03': ['02', '12', '22'], '2021-01': ['10']}
    stacks = {}
    for ym, days in dates.items():
        s = rng.normal(0.4, 0.25, (len(days), 2, SHAPE[0] // 3, SHAPE[1] // 3)).astype(np.float32)
        s[:, :, rng.random(s.shape[2:]) < 0.1] = np.nan
        for i, day in enumerate(days): write(d / 'col' / f'x_{ym}-{day}.tif', s[i], t, layer.bands, np.nan)
        stacks[ym] = s
    with np.errstate(all='ignore'):
        import warnings; warnings.simplefilter('ignore', RuntimeWarning)
        for ym, s in stacks.items(): write(d / 'comp' / f'{ym}.tif', np.nanmedian(s, 0), t, layer.bands, np.nan)
        for y in ('2020', '2021'):
            s = np.concatenate([v for k, v in stacks.items() if k.startswith(y)])
            write(d / 'comp' / f'{y}.tif', np.nanmedian(s, 0), t, layer.bands, np.nan)
    return layer, d


@pytest.mark.parametrize('frequency,start,end', [('monthly', '2020-01-01', '2020-04-01'), ('yearly', '2020-01-01', '2022-01-01')])
@pytest.mark.parametrize('reducer', ['mean', 'median', 'min', 'max', 'stdDev'])
def test_continuous_matches_local(sites, indices, reducer, frequency, start, end):
    layer, d = indices
    table = E.continuous_table(layer, start, end, sites, reducer, frequency, crs='EPSG:4326', crs_transform=DW_GRID)
    ours = pd.DataFrame(Evaluator({layer.collection_id: d / 'col'})(table))
    assert set(ours.columns) == set(continuous_schema(layer.bands))
    theirs = local_continuous(sites, layer, str(d / 'comp' / '{period}.tif'), start, end, reducer, frequency, progress=False).data
    compare(ours, theirs, ['site_id', 'period'], ['NDVI', 'EVI', 'valid_count'], rel=1e-5)


def test_continuous_per_day_and_empty_periods(sites, indices):
    layer, d = indices
    ev = Evaluator({layer.collection_id: d / 'col'})
    days = pd.DataFrame(ev(E.continuous_table(layer, '2020-01-01', '2020-02-01', sites, 'mean', 'all')))
    assert sorted(days.period.unique()) == ['2020-01-03', '2020-01-14', '2020-01-25']
    # one image a day is its own composite: the mean over a site is that image's mean
    one = Evaluator({layer.collection_id: [d / 'col' / 'x_2020-01-14.tif']})
    mono = pd.DataFrame(one(E.continuous_table(layer, '2020-01-01', '2020-02-01', sites, 'mean', 'monthly')))
    got = days[days.period == '2020-01-14'].set_index('site_id')
    np.testing.assert_allclose(got.loc[mono.site_id, 'NDVI'], mono.NDVI, rtol=1e-12)
    # months without images give no rows (valid_count 0 is filtered out)
    gap = pd.DataFrame(ev(E.continuous_table(layer, '2020-03-01', '2020-06-01', sites, 'mean', 'monthly')))
    assert sorted(gap.period.unique()) == ['2020-03']


# --- the presets: every expression the library builds evaluates ------------------------------------------------

S2_BANDS = ['B1', 'B2', 'B3', 'B4', 'B5', 'B6', 'B7', 'B8', 'B8A', 'B9', 'B11', 'B12', 'SCL']


@pytest.fixture(scope='module')
def presets(tmp_path_factory):
    "Synthetic stand-ins for every preset, at 300 m over the sample area, dated inside `all_expressions`' windows."
    d, rng = tmp_path_factory.mktemp('presets'), np.random.default_rng(2)
    t, n = from_origin(*ORIGIN, 10 * RES, 10 * RES), SHAPE[0] // 10
    assets = {}
    for key in [k for k, l in LAYERS.items() if getattr(l, 'temporal', None) == 'band']:  # every MapBiomas preset
        l = LAYERS[key]
        assets[l.asset_id] = write(d / f'{key}.tif', rng.choice(list(l.class_map), (len(l.years), n, n)).astype(np.uint8),
                                   t, [l.band_name(y) for y in l.years], 0)
    dw = LAYERS['dynamic_world']; (d / 'dw').mkdir()
    for y in dw.years[-2:]: write(d / 'dw' / f'dw_{y}-06-01.tif', rng.integers(0, 9, (n, n)).astype(np.uint8), t, ['label'])
    assets[dw.asset_id] = d / 'dw'
    y = LAYERS['sentinel2'].years[-1]; (d / 's2').mkdir()
    refl = np.array([1000, 500, 800, 1000, 1200, 1800, 2200, 3000, 2800, 900, 2000, 1500], np.uint16)
    for day in ('01-03', '01-10'):
        img = np.concatenate([np.broadcast_to(refl[:, None, None], (12, n, n)), np.full((1, n, n), 4, np.uint16)])
        img[12, : n // 2, : n // 4] = 8  # clouds over the north-west: site_01 is hidden, site_02 is clear
        write(d / 's2' / f's2_{y}-{day}.tif', img.copy(), t, S2_BANDS)
    assets[LAYERS['sentinel2'].collection_id] = d / 's2'
    emb = LAYERS['satellite_embedding']; (d / 'emb').mkdir()
    ey = emb.years[-1]
    write(d / 'emb' / f'emb_{ey}-01-01.tif', (np.arange(64, dtype=np.float32)[:, None, None] / 64 + np.zeros((64, n, n), np.float32)),
          t, emb.bands)
    assets[emb.collection_id] = d / 'emb'
    assets[SAMPLE_LAYER.asset_id] = sample_raster_path()
    return assets


def test_every_library_expression_evaluates(exprs, presets):
    ev = Evaluator(presets)
    kinds = set()
    for name, expr in exprs.items():
        if name.endswith('/layer_image'):
            val = ev.evaluate_value(expr)
            assert val['type'] == 'Image' and len(val['bands']) == 2, name
            kinds.add(val['type']); continue
        kinds.add(ev.evaluate_value(expr)['type'] if name == 'sites_fc' else 'FeatureCollection')
        rows = ev(expr)
        assert rows, name
        if '/categorical_table' in name: assert set(rows[0]) == set(CATEGORICAL_SCHEMA), name
        if '/transitions_table' in name: assert set(rows[0]) == set(TRANSITION_SCHEMA), name
        if '/continuous_table' in name:
            layer = LAYERS[name.split('/')[0]]
            assert set(rows[0]) == set(continuous_schema(layer.bands)), name
    assert kinds == {'Image', 'FeatureCollection'}


def test_sentinel2_preprocessing_by_hand(sites, presets):
    "Constant reflectances: NDVI, EVI, NBR known; SCL-cloudy pixels masked out of the composite and valid_count."
    ev, s2 = Evaluator(presets), LAYERS['sentinel2']
    y = s2.years[-1]
    rows = pd.DataFrame(ev(E.continuous_table(s2, f'{y}-01-01', f'{y}-02-01', sites, 'mean', 'monthly')))
    b2, b4, b8, b12 = 0.05, 0.1, 0.3, 0.15
    assert np.allclose(rows.NDVI, (b8 - b4) / (b8 + b4))
    assert np.allclose(rows.EVI, 2.5 * (b8 - b4) / (b8 + 6 * b4 - 7.5 * b2 + 1))
    assert np.allclose(rows.NBR, (b8 - b12) / (b8 + b12))
    src = rasterio.open(presets[s2.collection_id] / f's2_{y}-01-03.tif')
    geoms = to_raster_crs([shape(s.geometry) for s in sites], 'EPSG:4326')
    clear = src.read(13).ravel() != 8
    g = default_grid(tuple(shapely.total_bounds(geoms)), s2.scale)  # a composite: EPSG:4326 at 10 m from (0, 0)
    cover = polygon_coverage(geoms, g.transform, g.shape)
    # valid_count counts clear pixels on the 10 m working grid: compare with the coverage of clear 300 m cells
    expected = {}
    for s, (cells, cov) in zip(sites, cover):
        x = g.transform.c + ((cells % g.shape[1]) + 0.5) * g.transform.a
        yy = g.transform.f + ((cells // g.shape[1]) + 0.5) * g.transform.e
        c, r = np.floor((x - src.transform.c) / src.transform.a), np.floor((yy - src.transform.f) / src.transform.e)
        inside = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
        ok = np.zeros(len(cells), bool)
        ok[inside] = clear[(r[inside].astype(int)) * src.width + c[inside].astype(int)]
        if (cov * ok).sum() > 0: expected[s.site_id] = (cov * ok).sum()
    got = rows.set_index('site_id').valid_count
    assert set(got.index) == set(expected)
    np.testing.assert_allclose(got[list(expected)], list(expected.values()), rtol=1e-9)


def test_embedding_band_means(sites, presets):
    emb = LAYERS['satellite_embedding']
    y = emb.years[-1]
    rows = pd.DataFrame(Evaluator(presets)(E.continuous_table(emb, f'{y}-01-01', f'{y + 1}-01-01', sites[:3], 'median', 'yearly')))
    np.testing.assert_allclose(rows[emb.bands].to_numpy(), np.tile(np.arange(64) / 64, (len(rows), 1)), rtol=1e-6)


# --- reducers: the fast grouped path against plain numpy --------------------------------------------------------

_GROUPED = {'result': '0', 'values': {'0': {'functionInvocationValue': {'functionName': 'Reducer.group', 'arguments': {
    'groupField': {'constantValue': 0}, 'groupName': {'constantValue': 'class'}, 'reducer': {'functionInvocationValue': {
        'functionName': 'Reducer.repeat', 'arguments': {'count': {'constantValue': 2}, 'reducer': {
            'functionInvocationValue': {'functionName': 'Reducer.sum', 'arguments': {}}}}}}}}}}}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 1e4), st.floats(0, 1), st.booleans()), min_size=0, max_size=60))
def test_grouped_sums_match_numpy(px):
    red = Evaluator().evaluate(_GROUPED)
    g = np.array([p[0] for p in px], float); a = np.array([p[1] for p in px]); cov = np.array([p[2] for p in px])
    m = np.array([float(p[3]) for p in px]); one = np.ones(len(px))
    (groups,) = reduce_pixels(red, [g, a, one], [m, one, one], cov)
    w = cov * m
    want = {int(k): [float((w * a)[g == k].sum()), float(w[g == k].sum())] for k in np.unique(g[w > 0])}
    assert [x['class'] for x in groups] == sorted(want)
    for x in groups: np.testing.assert_allclose(x['sum'], want[x['class']], rtol=1e-9, atol=1e-9)


# --- errors -----------------------------------------------------------------------------------------------------

def test_clear_errors(sites, tmp_path):
    fc = E.categorical_table(SAMPLE_LAYER, [2016], sites[:1])
    with pytest.raises(EvaluationError, match="Image asset 'users/gee-polygons/sample_lulc' is not mapped"): Evaluator()(fc)
    with pytest.raises(EvaluationError, match='Raster not found'): Evaluator({SAMPLE_LAYER.asset_id: tmp_path / 'x.tif'})(fc)
    img = ee.Image(SAMPLE_LAYER.asset_id)
    with pytest.raises(EvaluationError, match="mutually exclusive with 'scale'"):
        sample_evaluator()(img.reduceRegions(E.sites_fc(sites[:1]), ee.Reducer.sum(), 30, None, [1, 0, 0, 0, -1, 0]))
    with pytest.raises(EvaluationError, match='Too many pixels'):
        sample_evaluator()(E.categorical_table(SAMPLE_LAYER, [2016], sites[:1], max_pixels_per_region=10))
    with pytest.raises(EvaluationError, match="Pattern 'classification_1990' did not match"):
        sample_evaluator().evaluate(img.select('classification_1990'))
    with pytest.raises(EvaluationError, match='computeFeatures needs a FeatureCollection'): sample_evaluator()(img)


def test_rows_are_cached_per_expression_and_not_shared(sites):
    ev = sample_evaluator(cache_size=1)
    fc = E.categorical_table(SAMPLE_LAYER, [2016], sites[:2])
    a = ev(fc); a[0]['site_id'] = 'changed'
    assert ev(fc)[0]['site_id'] == 'site_01' and len(ev.results) == 1
    ev(E.sites_fc(sites[:1]))
    assert len(ev.results) == 1


# --- export files -----------------------------------------------------------------------------------------------

def test_export_csv_round_trips_the_table(sites):
    ev = sample_evaluator()
    feats = ev.features(E.categorical_table(SAMPLE_LAYER, [2018, 2019], sites[:4]))
    df = pd.read_csv(io.StringIO(export_csv(feats, list(CATEGORICAL_SCHEMA))))
    assert list(df.columns) == list(CATEGORICAL_SCHEMA)
    pd.testing.assert_frame_equal(df, pd.DataFrame([f['properties'] for f in feats])[list(CATEGORICAL_SCHEMA)], check_dtype=False)
    gj = export_geojson(feats, ['site_id', 'area_ha'])
    assert [list(f['properties']) for f in gj['features']] == [['site_id', 'area_ha']] * len(feats)


# --- through the emulator, with the real client -----------------------------------------------------------------

def test_emulator_answers_compute_features_like_local(sites):
    from gee_polygons.emulator import Emulator
    ev = sample_ev()
    with Emulator(evaluate=ev) as emu:
        emu.connect()
        res = sites.extract_categorical(SAMPLE_LAYER, [2018, 2019], progress=False)
    loc = local_categorical(sites, SAMPLE_LAYER, [2018, 2019], sample_raster_path(), progress=False, **local_earth(ev))
    assert res.warnings == loc.warnings and [s for s, _ in loc.warnings] == ['site_07', 'site_12']  # same words, same sites
    theirs = loc.data
    compare(res.data, theirs, ['site_id', 'year', 'class_value'], ['area_ha', 'count', 'fraction'])


# --- masks: every table the library builds is the same under either masking rule ------------------------------

def rows_key(rows) -> list:
    "Rows in a canonical order, for comparing tables."
    return sorted((json.dumps(r, sort_keys=True) for r in rows))


def both_modes(assets, expr, **kw) -> tuple:
    "The rows of `expr` with each input masked by its own mask, and with one joint mask."
    return tuple(Evaluator(assets, mask_mode=m, **kw)(expr) for m in ('per_input', 'joint'))


def test_every_library_table_is_the_same_under_both_mask_rules(exprs, presets):
    "Presets (MapBiomas, Dynamic World, Sentinel-2 with cloud masks, embedding) and the sample (its 2019 gap)."
    tables = {k: e for k, e in exprs.items() if '_table' in k}
    assert {k.split('/')[1] for k in tables} == {'categorical_table', 'transitions_table', 'continuous_table'}
    assert {k.split('/')[2] for k in tables if 'continuous' in k} == set(E.FREQUENCIES)
    for name, expr in tables.items():
        a, b = both_modes(presets, expr)
        assert a and rows_key(a) == rows_key(b), name


@pytest.mark.parametrize('years', [[2019], [2018, 2019, 2020]])
def test_sample_categorical_with_gaps_is_the_same_under_both_rules(sites, years):
    a, b = both_modes({SAMPLE_LAYER.asset_id: sample_raster_path()}, E.categorical_table(SAMPLE_LAYER, years, sites, coverage=True))
    assert rows_key(a) == rows_key(b)
    gap = pd.DataFrame(a).query("site_id == 'site_12' and classified_ha > 0").set_index('year')
    assert (gap.classified_ha < gap.site_ha)[2019] and (len(years) == 1 or (gap.classified_ha == gap.site_ha)[2018])


def test_collections_with_gaps_are_the_same_under_both_rules(sites, dw, indices):
    layer, d = dw  # 15% of the label pixels are nodata, and a corner is never observed
    a, b = both_modes({layer.asset_id: d / 'col'}, E.categorical_table(layer, layer.years, sites, coverage=True))
    assert rows_key(a) == rows_key(b)
    layer, d = indices  # 10% NaN in every image, months without images
    for fr, start, end in (('yearly', '2020-01-01', '2022-01-01'), ('monthly', '2020-01-01', '2020-06-01'), ('all', '2020-01-01', '2020-03-01')):
        for reducer in E.REDUCERS:
            a, b = both_modes({layer.collection_id: d / 'col'}, E.continuous_table(layer, start, end, sites, reducer, fr, coverage=True))
            assert a and rows_key(a) == rows_key(b), (fr, reducer)


def test_the_joint_rule_bites_a_naively_masked_expression(sites):
    "The test above would be empty if the evaluator's rules did not differ: a stack masked per year does."
    img = ee.Image(SAMPLE_LAYER.asset_id)
    bands = [SAMPLE_LAYER.band_name(y) for y in (2018, 2019)]
    stack = ee.Image.cat([img.select([b]).addBands(ee.Image.pixelArea().updateMask(img.select([b]).mask())) for b in bands])
    red = ee.Reducer.sum().group(0, 'class').combine(ee.Reducer.sum().group(0, 'class'), 'y2019_')
    a, b = both_modes({SAMPLE_LAYER.asset_id: sample_raster_path()}, stack.reduceRegions(E.sites_fc(sites), red, 30))
    area18 = lambda rows: {r['site_id']: sum(g['sum'] for g in r['groups']) for r in rows}
    assert area18(b)['site_12'] < area18(a)['site_12'] * 0.9  # the 2019 gap removes 2018 pixels under the joint rule
    assert area18(b)['site_01'] == pytest.approx(area18(a)['site_01'], rel=1e-12)  # no gap there


# --- grids: composites are reduced on the grid named, Earth Engine's default otherwise --------------------------

def test_composite_grid_is_honoured(sites, dw):
    layer, d = dw
    ev = Evaluator({layer.asset_id: d / 'col'})
    per = lambda **g: pd.DataFrame(ev(E.categorical_table(layer, [2020], sites[:6], **g))).set_index(['site_id', 'class_value'])
    files, default, utm = per(crs='EPSG:4326', crs_transform=DW_GRID), per(), per(crs='EPSG:32723')
    for other in (default, utm):  # other grids sample other pixels: class areas move, site totals barely
        assert not np.allclose(other['count'].reindex(files.index).fillna(0), files['count'], rtol=1e-3)
        tot = lambda t: t.groupby('site_id').area_ha.sum()
        np.testing.assert_allclose(tot(other), tot(files), rtol=0.03)
    assert default.equals(per(crs='EPSG:4326'))  # no crs = EPSG:4326 at the scale, as Earth Engine's default projection
    g = ev.working_grid(ev.evaluate(E.layer_image(layer, [2020])), layer.scale, [])
    assert g.crs == 'EPSG:4326' and g.transform.c == 0 and g.nominal_scale == pytest.approx(90)

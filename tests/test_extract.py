"Fault-pattern tests of interactive extraction: whatever fails, every site ends in .data or .errors (offline, no sockets)."
from contextlib import contextmanager
import ee, pytest
from hypothesis import given, settings, strategies as st, HealthCheck, Phase
from gee_polygons import gateway
from gee_polygons import extract as X
from gee_polygons.layers import CategoricalLayer
from gee_polygons.sample_data import sample_sites_path
from gee_polygons.sites import SiteCollection
from gee_polygons.testing import offline_init, block_sockets
from gee_polygons.emulator import Emulator, answering

MB = CategoricalLayer('projects/mapbiomas-public/assets/brazil/lulc/collection10/mapbiomas_brazil_collection10_coverage_v2',
                      {3: 'Forest', 15: 'Pasture'}, {}, range(1985, 2025), name='mapbiomas')
SITES = None

@pytest.fixture(scope='module', autouse=True)
def _offline():
    global SITES
    block_sockets(); offline_init()
    SITES = SiteCollection.from_file(sample_sites_path())
    gateway.policy.sleep = lambda s: None
    yield
    import time; gateway.policy.sleep = time.sleep

@contextmanager
def fake_server(answer):
    "The offline emulator, answering each request with `answer(its site ids)` (rows, or an exception); yields the ids."
    with answering(answer) as calls: yield calls

def rows_for(ids, empty=()):
    return [dict(site_id=i, year=2020, class_value=3, class_name='Forest', count=4.0, area_ha=.36, fraction=1.0)
            for i in ids if i not in empty]

ERRORS = {'oom': 'User memory limit exceeded.', 'timeout': 'Computation timed out.', 'agg': 'Too many concurrent aggregations.',
          'asset': 'Image.load: Asset not found.', '429': 'Too Many Requests (429)'}

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no slow shrinking; the failing example is printed
@given(bad=st.dictionaries(st.integers(0, 19), st.sampled_from(sorted(ERRORS)), max_size=6),
       empty=st.sets(st.integers(0, 19), max_size=3), chunk=st.integers(1, 25))
def test_every_site_in_data_or_errors(bad, empty, chunk):
    ids = SITES.ids
    bad_ids, empty_ids = {ids[i]: k for i, k in bad.items()}, {ids[i] for i in empty}
    limited = []
    def answer(req):
        if any(bad_ids.get(i) == '429' for i in req) and len(limited) < 2:  # transient: two 429s, then it passes
            limited.append(req); raise ee.EEException(ERRORS['429'])
        for i in req:
            if bad_ids.get(i) not in (None, '429'): raise ee.EEException(ERRORS[bad_ids[i]])
        return rows_for(req, empty_ids)
    with fake_server(answer) as calls:
        r = SITES.extract_categorical(MB, 2020, chunk_size=chunk, progress=False)
    in_data, failed = set(r.data['site_id']), set(r.failed_ids)
    assert in_data | failed == set(ids) and not in_data & failed
    persistent = {i for i, k in bad_ids.items() if k != '429'}
    assert persistent <= failed
    assert all([i] in calls for i, m in r.errors if gateway.is_scaling_error(m))  # reported only once tried alone
    assert {i for i in empty_ids if i not in failed} <= {s for s, m in r.errors if m == X._NO_CLASSES}
    for i, m in r.errors:  # any other failure is the site's own, or shared from a chunk that hit a non-scaling error
        assert i in persistent or i in empty_ids or m == ERRORS['asset']
    rate_limited = {i for i, k in bad_ids.items() if k == '429'} - empty_ids
    assert not (rate_limited & failed) or 'asset' in bad_ids.values()  # retried, then succeeded
    assert all(len(c) <= chunk for c in calls)

def test_payload_limit_splits_requests():
    "Chunks close before their estimated request bytes pass the limit."
    fixed = X.E.payload_bytes(X.E.categorical_table(MB, [2020], SITES[:1])) - X.site_bytes(SITES[0])
    sizes = [X.site_bytes(s) for s in SITES]
    limit = fixed + 3 * max(sizes)
    chunks = X.plan_chunks(list(SITES), 1, fixed, chunk_size=100, max_bytes=limit)
    assert len(chunks) > 1 and sum(len(c) for c in chunks) == len(SITES)
    for c in chunks:
        assert X.E.payload_bytes(X.E.categorical_table(MB, [2020], c)) <= limit * 1.05

def test_ee_path_agrees_with_local_engine_on_the_sample():
    "The Earth Engine path, answered by the local expression evaluator, gives the local engine's table."
    import pandas as pd
    from gee_polygons.evaluator import Evaluator
    from gee_polygons.sample_data import sample_raster_path, SAMPLE_LAYER
    ev = Evaluator({SAMPLE_LAYER.asset_id: str(sample_raster_path())})
    with Emulator(evaluate=ev) as emu:
        emu.connect()
        r = SITES.extract_categorical(SAMPLE_LAYER, [2016, 2020, 2023], chunk_size=7, progress=False)
    loc = SITES.extract_categorical(SAMPLE_LAYER, [2016, 2020, 2023], source=sample_raster_path(), earth=ev.earth, progress=False)
    assert set(r.data['site_id']) | set(r.failed_ids) == set(SITES.ids)
    keys = ['site_id', 'year', 'class_value']
    m = r.data.merge(loc.data, on=keys, how='outer', suffixes=('_ee', '_local'), indicator=True)
    assert (m['_merge'] == 'both').all()
    for c in ('count', 'area_ha', 'fraction'):  # the evaluator measures with exactextract (float32 fractions), the engine in float64
        pd.testing.assert_series_equal(m[f'{c}_ee'], m[f'{c}_local'], check_names=False, rtol=1e-6)
    assert (m['class_name_ee'] == m['class_name_local']).all()
    assert r.warnings == loc.warnings and [i for i, _ in r.warnings] == ['site_07']  # half outside; no gap in these years


# --- big single sites: tileScale first, then grid pieces, recombined exactly ----------------------------------

def big_site_world(tmp_path, n=1800):
    "A 2-year land-cover raster of n x n 30 m pixels (a gap of nodata in the second year), and one site over most of it."
    import numpy as np, rasterio
    from rasterio.transform import from_origin
    from gee_polygons.sites import Site
    rng, res, (x0, y0) = np.random.default_rng(4), 0.00027, (-48.0, -15.0)
    arr = rng.choice(np.array([3, 4, 15, 21], np.uint8), (2, n, n)).astype(np.uint8)
    arr[:, : n // 3] = 15  # a block of pasture, then noise
    arr[1, n // 2: n // 2 + n // 10, n // 5: n // 2] = 0  # the gap
    path = tmp_path / 'big.tif'
    with rasterio.open(path, 'w', driver='GTiff', width=n, height=n, count=2, dtype='uint8', nodata=0, crs='EPSG:4326',
                       transform=from_origin(x0, y0, res, res), tiled=True, compress='deflate') as dst:
        dst.write(arr)
        for i, y in enumerate((2020, 2021), 1): dst.set_band_description(i, f'classification_{y}')
    w = n * res
    ring = [[x0 + w * fx, y0 - w * fy] for fx, fy in ((0.01, 0.02), (0.97, 0.01), (0.99, 0.8), (0.6, 0.99), (0.4, 0.85), (0.02, 0.97), (0.01, 0.02))]
    layer = CategoricalLayer('users/test/big', {3: 'Forest', 4: 'Savanna', 15: 'Pasture', 21: 'Mosaic'}, {}, [2020, 2021])
    return layer, path, Site('huge', {'type': 'Polygon', 'coordinates': [ring]})


def test_a_site_of_millions_of_pixels_is_cut_and_recombined_exactly(tmp_path):
    import numpy as np, pandas as pd
    from functools import partial
    from shapely.geometry import shape
    from gee_polygons.evaluator import Evaluator
    layer, path, site = big_site_world(tmp_path)
    ev = Evaluator({layer.asset_id: path})
    build = lambda chunk, ts: X.E.categorical_table(layer, [2020, 2021], chunk, tile_scale=ts, coverage=True)
    whole = ev(build([site], 1))
    pixels = sum(r['count'] for r in whole if r.get('year') == 2020 and 'count' in r)
    assert pixels > 2.5e6  # several million pixels
    held, scales = [], []
    def tracked(chunk, ts): held.append(shape(chunk[0].geometry).area); scales.append(ts); return build(chunk, ts)
    def fetch(fc):  # "runs out of memory" unless the request holds at most a fifth of the site
        if held[-1] > shape(site.geometry).area / 5: raise ee.EEException('User memory limit exceeded.')
        return ev(fc)
    rows, errors = X.run_chunks([site], tracked, 10, progress=False, fetch=fetch, combine=partial(X.recombine_rows, kind='categorical'))
    assert errors == [] and scales[1:4] == [1, 4, 16]  # tileScale raised before cutting
    assert len(held) - 4 > 4  # quarters were still too big: each was cut again
    key = lambda df: df.sort_values(['year', 'class_value', 'site_ha'], na_position='last').reset_index(drop=True)
    got, want = key(pd.DataFrame(rows)), key(pd.DataFrame(X.recombine_rows(whole)))
    assert list(got.columns.sort_values()) == list(want.columns.sort_values()) and len(got) == len(want)
    for c in ('count', 'area_ha', 'fraction', 'site_ha', 'classified_ha', 'ever_ha'):
        np.testing.assert_allclose(got[c].fillna(-1), want[c].fillna(-1), rtol=1e-9, err_msg=c)
    assert (got.class_value.fillna(-1) == want.class_value.fillna(-1)).all()


def test_pieces_of_a_continuous_site_recombine_exactly(tmp_path):
    import numpy as np, pandas as pd, rasterio
    from functools import partial
    from rasterio.transform import from_origin
    from gee_polygons.evaluator import Evaluator
    from gee_polygons.layers import ContinuousLayer
    from gee_polygons.sites import Site
    rng, n, res = np.random.default_rng(8), 600, 0.00027
    (tmp_path / 'col').mkdir()
    for day in ('2020-02-01', '2020-06-01'):
        arr = rng.random((1, n, n)).astype('float32'); arr[:, rng.random((n, n)) < 0.2] = np.nan
        with rasterio.open(tmp_path / 'col' / f'x_{day}.tif', 'w', driver='GTiff', width=n, height=n, count=1, dtype='float32',
                           nodata=float('nan'), crs='EPSG:4326', transform=from_origin(-48, -15, res, res)) as dst:
            dst.write(arr); dst.set_band_description(1, 'NDVI')
    layer = ContinuousLayer('users/test/ndvi', ['NDVI'], scale=30)
    site = Site('s', {'type': 'Polygon', 'coordinates': [[[-47.99, -15.01], [-47.85, -15.02], [-47.87, -15.15], [-47.99, -15.01]]]})
    ev, grid = Evaluator({layer.collection_id: tmp_path / 'col'}), dict(crs='EPSG:4326', crs_transform=[res, 0, -48, 0, -res, -15])
    for stat in X.RECOMBINABLE:
        table = lambda chunk, ts: X.E.continuous_table(layer, '2020-01-01', '2021-01-01', chunk, stat, 'monthly', tile_scale=ts, coverage=True, **grid)
        whole = pd.DataFrame(ev(table([site], 1))).sort_values('period', na_position='last').reset_index(drop=True)
        pieces = pd.DataFrame(X.recombine_rows(sum((ev(table([p], 1)) for p in X.cut_site(site, 9)), []), 'continuous', stat))
        pieces = pieces.sort_values('period', na_position='last').reset_index(drop=True)
        for c in ('NDVI', 'valid_count', 'site_n', 'ever_n'):
            np.testing.assert_allclose(pieces[c].fillna(-1), whole[c].fillna(-1), rtol=1e-9, err_msg=(stat, c))
    assert sorted(whole.period.dropna()) == ['2020-02', '2020-06']


def test_transitions_every_site_in_data_or_errors():
    "extract_transitions shares extract_categorical's path: failures and empty sites end in errors, the rest in data."
    ids = SITES.ids
    def answer(req):
        if ids[3] in req: raise ee.EEException('Image.load: Asset not found.')
        return [dict(site_id=i, year_from=2019, year_to=2020, class_from=3, class_from_name='Forest', class_to=15,
                     class_to_name='Pasture', count=4.0, area_ha=.36, fraction=1.0) for i in req if i != ids[5]]
    with fake_server(answer) as calls:
        r = SITES.extract_transitions(MB, [2019, 2020], chunk_size=4, progress=False)
    assert r.kind == 'transitions' and set(r.data.site_id) | set(r.failed_ids) == set(ids)
    assert dict(r.errors)[ids[3]] == 'Image.load: Asset not found.' and dict(r.errors)[ids[5]] == X._NO_CLASSES
    assert set(r.failed_ids) == set(ids[:4]) | {ids[5]} and len(calls) == 5  # the failed chunk's sites share its error
    assert r.provenance['engine'] == 'ee' and r.provenance['asset_id'] == MB.asset_id

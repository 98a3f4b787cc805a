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
    loc = SITES.extract_categorical(SAMPLE_LAYER, [2016, 2020, 2023], source=sample_raster_path(), progress=False)
    assert set(r.data['site_id']) | set(r.failed_ids) == set(SITES.ids)
    keys = ['site_id', 'year', 'class_value']
    m = r.data.merge(loc.data, on=keys, how='outer', suffixes=('_ee', '_local'), indicator=True)
    assert (m['_merge'] == 'both').all()
    for c in ('count', 'area_ha', 'fraction'): pd.testing.assert_series_equal(m[f'{c}_ee'], m[f'{c}_local'], check_names=False, rtol=1e-9)
    assert (m['class_name_ee'] == m['class_name_local']).all()

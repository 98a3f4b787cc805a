"""End to end: the three ways to get the tidy table agree on the bundled synthetic sample.

(a) interactive extraction on "Earth Engine" (the emulator, real earthengine-api client, real HTTP on 127.0.0.1);
(b) a batch export through the same emulator, with faults injected (HTTP 429s, memory errors that split chunks),
    then `wait` and `collect`;
(c) the local engine on the same rasters.

Categorical (the sample land cover) and continuous (the sample NDVI/EVI collection) alike."""
import json, re
from pathlib import Path
import numpy as np, pandas as pd, pytest

pytest.importorskip('rasterio')
pytest.importorskip('exactextract')
from gee_polygons import gateway
from gee_polygons.emulator import Emulator, sites_over, site_ids
from gee_polygons.evaluator import Evaluator
from gee_polygons.export import ExportConfig, ExportDestination, Manifest
from gee_polygons.layers import CATEGORICAL_SCHEMA, continuous_schema
from gee_polygons.results import collect
from gee_polygons.sample_data import (SAMPLE_LAYER, SAMPLE_YEARS, SAMPLE_INDICES, make_sample_continuous,
                                      sample_raster_path, sample_sites_path, INDEX_RES, ORIGIN)
from gee_polygons.sites import SiteCollection
import gee_polygons.extract  # noqa: F401  (adds SiteCollection.extract_*)

AREA_TOL = 0.001  # areas agree within 0.1%: the local engine runs on the evaluator's earth model
CAT_KEYS, CONT_KEYS = ['site_id', 'year', 'class_value'], ['site_id', 'period']
START, END = '2020-01-01', '2022-01-01'


@pytest.fixture(scope='module', autouse=True)
def no_backoff_sleep():
    "The gateway retries 429s at once instead of backing off for real seconds (module scope: the fixtures below need it)."
    real, gateway.policy.sleep = gateway.policy.sleep, lambda s: None
    yield
    gateway.policy.sleep = real


@pytest.fixture(scope='module')
def sites(): return SiteCollection.from_file(sample_sites_path())


@pytest.fixture(scope='module')
def indices(tmp_path_factory):
    "(collection folder, composite template) of the synthetic continuous sample."
    return make_sample_continuous(tmp_path_factory.mktemp('indices'))


@pytest.fixture(scope='module')
def evaluator(indices):
    "What the emulator computes with: the sample raster and the sample index collection mapped to their asset ids."
    return Evaluator({SAMPLE_LAYER.asset_id: sample_raster_path(), SAMPLE_INDICES.collection_id: indices[0]})


# the sample composites' 90 m grid: composites are reduced where they are named (EPSG:4326 from (0, 0) otherwise)
ON_FILES = dict(crs='EPSG:4326', crs_transform=[INDEX_RES, 0, ORIGIN[0], 0, -INDEX_RES, ORIGIN[1]])


def max_rel_diff(a:pd.DataFrame, b:pd.DataFrame, keys:list, cols:list) -> dict:
    "Column -> largest relative difference between `a` and `b` joined on `keys`; the key sets must be identical."
    m = a.merge(b, on=keys, how='outer', suffixes=('_a', '_b'), indicator=True)
    assert (m._merge == 'both').all(), m.loc[m._merge != 'both', keys + ['_merge']]
    out = {}
    for c in cols:
        x, y = m[f'{c}_a'].to_numpy(float), m[f'{c}_b'].to_numpy(float)
        assert not np.isnan(x).any() and not np.isnan(y).any(), c
        out[c] = float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-12)))
    return out


def leaves_and_splits(manifest_path) -> tuple:
    "({key: state} of unsplit chunks, {split key: its children}) from the manifest on disk."
    m = Manifest.load(manifest_path)
    return ({k: c.state for k, c in m.chunks.items() if c.state != 'SPLIT'},
            {k: c.children for k, c in m.chunks.items() if c.state == 'SPLIT'})


def rejected(emu, route:str) -> int:
    "Requests the emulator answered with HTTP 429 on paths containing `route`."
    return sum(e['status'] == 429 and route in e['path'] for e in emu.log)


# --- categorical ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def categorical(sites, evaluator, tmp_path_factory):
    "The three categorical tables, and what the export left behind."
    tmp = tmp_path_factory.mktemp('cat')
    out = {'local': sites.extract_categorical(SAMPLE_LAYER, SAMPLE_YEARS, source=sample_raster_path(), earth=evaluator.earth,
                                              progress=False)}
    with Emulator(evaluate=evaluator) as emu:
        emu.connect()
        emu.fail_http('table:computeFeatures', 429, times=1)
        out['interactive'] = sites.extract_categorical(SAMPLE_LAYER, SAMPLE_YEARS, engine='ee', progress=False)
        out['interactive_429s'] = rejected(emu, 'computeFeatures')
    with Emulator(evaluate=evaluator, max_running=2, task_seconds=10, auto_advance=5, advance_on='/operations') as emu:
        emu.connect()
        emu.fail_http('table:export', 429, times=2, method='POST')
        emu.fail_http('/operations/', 429, times=3, method='GET')
        emu.fail_tasks(sites_over(5))  # chunks of 8 sites run out of memory: each is split into two of 4
        manifest = tmp / 'categorical_job.json'
        cfg = ExportConfig(chunk_size=8, max_concurrent=3, poll_interval_sec=0.001, manifest=str(manifest))
        job = sites.export_categorical(SAMPLE_LAYER, SAMPLE_YEARS, ExportDestination('cloud_storage', 'e2e-bucket/runs', 'cat'), cfg)
        out['ok'] = job.wait(poll_interval_sec=0.001, progress=False)
        out['export'] = collect(job, source=Path(emu.out_dir) / 'gcs' / 'e2e-bucket')
        out['emu'], out['manifest'] = emu, manifest
    return out


def test_categorical_three_ways_same_rows_and_areas(categorical, sites):
    loc, inter, exp = categorical['local'].data, categorical['interactive'].data, categorical['export'].data
    for df in (loc, inter, exp): assert list(df.columns) == list(CATEGORICAL_SCHEMA)
    assert len(loc) == len(inter) == len(exp) > 20 * len(SAMPLE_YEARS)  # several classes per site and year
    assert set(loc.site_id) == set(sites.ids) and sorted(loc.year.unique()) == SAMPLE_YEARS
    cols = ['area_ha', 'count', 'fraction']
    for other in (inter, exp):
        d = max_rel_diff(other, loc, CAT_KEYS, cols)
        assert d['area_ha'] <= AREA_TOL, d
        assert d['count'] <= AREA_TOL and d['fraction'] <= AREA_TOL, d
    # the two Earth Engine paths compute the same thing; the export's CSV round trip keeps every digit
    assert max(max_rel_diff(exp, inter, CAT_KEYS, cols).values()) <= 1e-12
    assert (inter.merge(exp, on=CAT_KEYS).pipe(lambda m: m.class_name_x == m.class_name_y)).all()


def test_categorical_warnings_agree(categorical):
    "Partial coverage and nodata gaps, reported in the same words by the local engine and the Earth Engine path."
    loc, inter = categorical['local'].warnings, categorical['interactive'].warnings
    assert [s for s, _ in loc] == ['site_07', 'site_12'] and 'nodata in 2019' in dict(loc)['site_12']
    assert inter == loc
    assert categorical['export'].warnings == inter  # the batch path: coverage rows in the chunk files, split out by collect
    assert '2 warnings' in repr(categorical['export'])


def test_categorical_areas_add_up_to_the_sites(categorical, sites):
    "Not only equal to each other: each site-year's class areas sum to the site's geodesic area where fully mapped."
    tot = categorical['export'].data.groupby(['site_id', 'year']).area_ha.sum()
    geo = {s.site_id: s.area_ha for s in sites}
    full = [(s, y) for s, y in tot.index if s != 'site_07' and not (s == 'site_12' and y == 2019)]
    rel = np.array([tot[k] / geo[k[0]] - 1 for k in full])
    assert np.abs(rel).max() < 0.02, np.abs(rel).max()  # pixel-edge effects only
    assert 0.3 < tot['site_07'].mean() / geo['site_07'] < 0.7  # half outside the raster
    assert tot[('site_12', 2019)] < tot[('site_12', 2018)]  # the 2019 sensor gap


def test_categorical_export_survived_its_faults(categorical):
    emu, res = categorical['emu'], categorical['export']
    assert categorical['ok'] and res.complete and res.duplicates_removed == 0
    leaves, splits = leaves_and_splits(categorical['manifest'])
    assert splits == {'0000': ['0000_1', '0000_2'], '0001': ['0001_1', '0001_2']}  # 8, 8, 4 sites: the 8s split
    assert leaves == {'0000_1': 'COMPLETED', '0000_2': 'COMPLETED', '0001_1': 'COMPLETED', '0001_2': 'COMPLETED',
                      '0002': 'COMPLETED'}
    failed = sorted(o.description for o in emu.ops.values() if o.state == 'FAILED')
    jid = Manifest.load(categorical['manifest']).job['job_id']  # every description and file name carries the job id
    assert failed == [f'gee_polygons_export_{jid}_cat_chunk_0000', f'gee_polygons_export_{jid}_cat_chunk_0001']
    assert {o.fail for o in emu.ops.values() if o.state == 'FAILED'} == {'User memory limit exceeded.'}
    assert rejected(emu, 'table:export') == 2 and rejected(emu, '/operations') == 3  # the 429s reached the server
    assert sorted(res.files_read) == [f'cat_{jid}_chunk_{k}.csv' for k in ('0000_1', '0000_2', '0001_1', '0001_2', '0002')]
    assert categorical['interactive_429s'] == 1 and categorical['interactive'].success_rate == 1


def test_categorical_export_rows_carry_the_job_and_the_table_its_provenance(categorical, tmp_path):
    "Every exported row says which job wrote it; collect checks and drops that column; the table's provenance names the job."
    emu, res, m = categorical['emu'], categorical['export'], Manifest.load(categorical['manifest'])
    files = sorted((Path(emu.out_dir) / 'gcs' / 'e2e-bucket' / 'runs').glob('*.csv'))
    assert len(files) == 5 and all(set(pd.read_csv(f).job_id) == {m.job['job_id']} for f in files)
    assert 'job_id' not in res.data.columns
    p = res.provenance
    assert (p['engine'], p['job_id'], p['manifest'], p['asset_id']) == ('export', m.job['job_id'], str(categorical['manifest']),
                                                                       SAMPLE_LAYER.asset_id)
    from gee_polygons.provenance import read_provenance
    assert read_provenance(res.to_parquet(tmp_path / 't.parquet')) == p == read_provenance(res.to_csv(tmp_path / 't.csv'))
    # a file of another job with the same name is refused by its rows' job id alone
    other = files[0].read_text().replace(m.job['job_id'], 'zz000000')
    (tmp_path / 'runs').mkdir(); [(tmp_path / 'runs' / f.name).write_text(f.read_text()) for f in files]
    (tmp_path / 'runs' / files[0].name).write_text(other)
    again = collect(categorical['manifest'], source=tmp_path / 'runs')
    assert list(again.bad_files) == [files[0].name] and 'belongs to another job' in again.bad_files[files[0].name]


def first_attempt(body:dict) -> bool:
    "A `fail_tasks` rule: the export of a chunk that was never split (its description ends in _chunk_NNNN)."
    return re.search(r'_chunk_\d{4}$', body.get('description', '')) is not None


# --- continuous ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def continuous(sites, evaluator, indices, tmp_path_factory):
    "The three continuous tables (yearly mean NDVI/EVI 2020-2021), and what the export left behind."
    tmp = tmp_path_factory.mktemp('cont')
    kw = dict(reducer='mean', frequency='yearly', progress=False)
    out = {'local': sites.extract_continuous(SAMPLE_INDICES, START, END, source=indices[1], **kw)}
    with Emulator(evaluate=evaluator) as emu:
        emu.connect()
        out['interactive'] = sites.extract_continuous(SAMPLE_INDICES, START, END, engine='ee', **kw, **ON_FILES)
    with Emulator(evaluate=evaluator, max_running=2, task_seconds=10, auto_advance=5, advance_on='/operations') as emu:
        emu.connect()
        emu.fail_http('table:export', 429, times=1, method='POST')
        emu.fail_http('/operations/', 429, times=2, method='GET')
        emu.fail_tasks(first_attempt, 'Computation timed out.')  # every chunk of 7, 7 and 6 sites is split once
        manifest = tmp / 'continuous_job.json'
        cfg = ExportConfig(chunk_size=7, max_concurrent=2, poll_interval_sec=0.001, manifest=str(manifest))
        dest = ExportDestination('drive', 'e2e_exports', 'cont', file_format='GeoJSON')
        job = sites.export_continuous(SAMPLE_INDICES, START, END, dest, 'mean', 'yearly', cfg, **ON_FILES)
        out['ok'] = job.wait(poll_interval_sec=0.001, progress=False)
        out['export'] = collect(job, source=Path(emu.out_dir) / 'drive')
        out['emu'], out['manifest'] = emu, manifest
    return out


def test_continuous_three_ways_agree(continuous, sites):
    loc, inter, exp = continuous['local'].data, continuous['interactive'].data, continuous['export'].data
    schema = continuous_schema(SAMPLE_INDICES.bands)
    for df in (loc, inter, exp): assert list(df.columns) == list(schema)
    assert len(loc) == len(inter) == len(exp) == 2 * len(sites)  # every site, both years
    cols = ['NDVI', 'EVI', 'valid_count']
    for other in (inter, exp):
        d = max_rel_diff(other, loc, CONT_KEYS, cols)
        assert d['NDVI'] <= 1e-6 and d['EVI'] <= 1e-6, d  # float32 composites on both sides
        assert d['valid_count'] <= AREA_TOL, d
    assert max(max_rel_diff(exp, inter, CONT_KEYS, cols).values()) <= 1e-12
    assert loc.NDVI.between(0.1, 0.9).all() and loc.NDVI.std() > 0.02  # real, varying values
    assert continuous['interactive'].warnings == continuous['local'].warnings == continuous['export'].warnings
    assert [s for s, _ in continuous['local'].warnings] == ['site_07']  # half outside the images


def test_continuous_export_survived_its_faults(continuous):
    emu, res = continuous['emu'], continuous['export']
    assert continuous['ok'] and res.complete
    leaves, splits = leaves_and_splits(continuous['manifest'])
    assert splits == {k: [f'{k}_1', f'{k}_2'] for k in ('0000', '0001', '0002')}  # 7, 7 and 6 sites: all over 4
    assert leaves == {f'{k}_{i}': 'COMPLETED' for k in ('0000', '0001', '0002') for i in (1, 2)}
    assert sorted(len(c.site_ids) for c in Manifest.load(continuous['manifest']).chunks.values() if c.state == 'COMPLETED') == [3, 3, 3, 3, 4, 4]
    assert {o.fail for o in emu.ops.values() if o.state == 'FAILED'} == {'Computation timed out.'}
    assert rejected(emu, 'table:export') == 1 and rejected(emu, '/operations') == 2
    assert all(f.endswith('.geojson') for f in res.files_read)
    assert json.loads(next((Path(emu.out_dir) / 'drive' / 'e2e_exports').glob('*.geojson')).read_text())['type'] == 'FeatureCollection'


# --- a single site too big for one task ----------------------------------------------------------------------------

def whole_site(site_id:str):
    "A `fail_tasks` rule: every export holding `site_id` whole (not one of its grid pieces, whose descriptions end _pN)."
    return lambda body: not re.search(r'_p\d+$', body.get('description', '')) and site_id in site_ids(body.get('expression', {}))


def tile_scales(body:dict) -> set:
    "The tileScale values in an export request's expression."
    found = set()
    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get('tileScale'), dict): found.add(x['tileScale'].get('constantValue'))
            for v in x.values(): walk(v)
        elif isinstance(x, list):
            for v in x: walk(v)
    walk(body.get('expression', {}))
    return found


@pytest.mark.parametrize('kind', ['categorical', 'continuous', 'transitions'])
def test_big_single_site_raises_tile_scale_then_is_cut_and_recombined(kind, sites, evaluator, tmp_path):
    "site_12 fails whole at every tileScale: after 1, 4 and 16 it is cut into grid pieces; collect adds them up exactly."
    if kind == 'categorical':
        run = lambda s: s.extract_categorical(SAMPLE_LAYER, SAMPLE_YEARS, engine='ee', progress=False)
        export = lambda s, dest, cfg: s.export_categorical(SAMPLE_LAYER, SAMPLE_YEARS, dest, cfg)
        keys, cols = CAT_KEYS, ['area_ha', 'count', 'fraction']
    elif kind == 'transitions':
        run = lambda s: s.extract_transitions(SAMPLE_LAYER, pairs=[(2016, 2019), (2018, 2019)], engine='ee', progress=False)
        export = lambda s, dest, cfg: s.export_transitions(SAMPLE_LAYER, pairs=[(2016, 2019), (2018, 2019)], destination=dest, config=cfg)
        keys, cols = ['site_id', 'year_from', 'year_to', 'class_from', 'class_to'], ['area_ha', 'count', 'fraction']
    else:
        run = lambda s: s.extract_continuous(SAMPLE_INDICES, START, END, engine='ee', progress=False, **ON_FILES)
        export = lambda s, dest, cfg: s.export_continuous(SAMPLE_INDICES, START, END, dest, config=cfg, **ON_FILES)
        keys, cols = CONT_KEYS, ['NDVI', 'EVI', 'valid_count']
    with Emulator(evaluate=evaluator) as emu:
        emu.connect(); unsplit = run(sites)
    with Emulator(evaluate=evaluator, max_running=2, task_seconds=10, auto_advance=5) as emu:
        emu.connect()
        emu.fail_tasks(whole_site('site_12'))
        cfg = ExportConfig(chunk_size=4, poll_interval_sec=0.001, manifest=str(tmp_path / 'job.json'))
        job = export(sites, ExportDestination('cloud_storage', 'e2e-bucket/big', 'big'), cfg)
        assert job.wait(poll_interval_sec=0.001, progress=False)
        res = collect(job, source=Path(emu.out_dir) / 'gcs' / 'e2e-bucket')
        ops = list(emu.ops.values())
    m = Manifest.load(tmp_path / 'job.json')
    alone = [c for c in m.chunks.values() if c.site_ids == ['site_12'] and not c.cut]
    assert len(alone) == 1 and alone[0].state == 'SPLIT' and alone[0].attempts == 3 and alone[0].tile_scale == 16
    tries = [tile_scales(o.body) for o in ops if o.description == alone[0].description]
    assert tries == [{1.0}, {4.0}, {16.0}] and all(o.state == 'FAILED' for o in ops if o.description == alone[0].description)
    pieces = [c for c in m.chunks.values() if c.cut]
    assert len(pieces) == 4 and {c.state for c in pieces} == {'COMPLETED'} and alone[0].children == [c.key for c in pieces]
    assert res.complete and res.n_sites == len(sites) and res.duplicates_removed == 0
    a, b = res.data, unsplit.data.reset_index(drop=True)
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    # areas and counts summed, fractions and means recomputed: equal but for float rounding (the emulator weighs pixels
    # cut by a piece's edge by their covered share, so the pieces' weights add up to the whole one's within ~1e-9)
    assert max(max_rel_diff(a, b, keys, cols).values()) <= 1e-8
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-8)  # same rows in the same order
    assert res.warnings == unsplit.warnings  # the pieces' coverage rows add up to the site's


# --- transitions ---------------------------------------------------------------------------------------------------

TR_KEYS = ['site_id', 'year_from', 'year_to', 'class_from', 'class_to']


def test_transitions_export_and_collect_equal_interactive(sites, evaluator, tmp_path):
    "export_transitions + wait + collect give extract_transitions' table (emulator), with its warnings; memory errors split chunks."
    from gee_polygons.result import TRANSITION_SCHEMA
    with Emulator(evaluate=evaluator) as emu:
        emu.connect()
        inter = sites.extract_transitions(SAMPLE_LAYER, SAMPLE_YEARS, engine='ee', progress=False)
    with Emulator(evaluate=evaluator, max_running=2, task_seconds=10, auto_advance=5) as emu:
        emu.connect()
        emu.fail_tasks(sites_over(5))
        cfg = ExportConfig(chunk_size=8, poll_interval_sec=0.001, manifest=str(tmp_path / 'tr.json'))
        job = sites.export_transitions(SAMPLE_LAYER, SAMPLE_YEARS, destination=ExportDestination('drive', 'tr', 'tr'), config=cfg)
        assert job.wait(poll_interval_sec=0.001, progress=False)
        res = collect(job, source=Path(emu.out_dir) / 'drive')
    assert res.kind == 'transitions' and res.complete and '_transitions_chunk_0000' in job.chunks[0].description
    a, b = res.data, inter.data.reset_index(drop=True)
    assert list(a.columns) == list(TRANSITION_SCHEMA) and len(a) == len(b) > 20 * (len(SAMPLE_YEARS) - 1)
    assert sorted({(r.year_from, r.year_to) for r in a.itertuples()}) == list(zip(SAMPLE_YEARS, SAMPLE_YEARS[1:]))
    d = max_rel_diff(a, b, TR_KEYS, ['area_ha', 'count', 'fraction'])
    assert max(d.values()) <= 0.005, d  # the brief's tolerance; in fact the CSV round trip keeps every digit
    assert max(d.values()) <= 1e-12, d
    assert a.fraction.between(0, 1).all()
    assert res.warnings == inter.warnings and [s for s, _ in res.warnings] == ['site_07', 'site_12']

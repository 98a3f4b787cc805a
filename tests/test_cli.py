"""The `gee-polygons` command: the README main job, help, one clear line per user error, and the batch commands against
the Earth Engine emulator (real client, real HTTP on 127.0.0.1)."""
import json, os, re, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
from matplotlib.image import imread
from gee_polygons import cli, gateway
from gee_polygons.cli import COMMANDS, main
from gee_polygons.emulator import Emulator
from gee_polygons.layers import CATEGORICAL_SCHEMA, tidy
from gee_polygons.sample_data import SAMPLE_LAYER, SAMPLE_YEARS, sample_raster_path, sample_sites_path
from gee_polygons.sites import SiteCollection
import gee_polygons.extract

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent/'gee-polygons'

@pytest.fixture(scope='module')
def truth():
    "The sample's table from the interactive path (local engine), and its errors."
    res = SiteCollection.from_file(sample_sites_path()).extract_categorical(SAMPLE_LAYER, SAMPLE_YEARS, source=sample_raster_path(),
                                                                             progress=False)
    return res

@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gateway.policy, 'sleep', lambda s: None)
    return tmp_path

def run(*args):
    "(status, stdout, stderr) of `gee-polygons *args` as a subprocess."
    env = {**os.environ, 'GEE_POLYGONS_NO_NETWORK': '1', 'MPLBACKEND': 'Agg',
           'PYTHONPATH': os.pathsep.join([str(ROOT/'.ci'/'netguard'), os.environ.get('PYTHONPATH', '')])}
    env.pop('GEE_POLYGONS_DEBUG', None)
    p = subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env, timeout=120)
    return p.returncode, p.stdout, p.stderr

def call(capsys, *args):
    "(status, stdout, stderr) of `gee-polygons *args` run in this process."
    code = main(list(map(str, args)))
    o, e = capsys.readouterr()
    return code, o, e

def read_areas(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={'site_id': str, 'class_name': str})

# ---- the README main job -------------------------------------------------------------------------------------------
def test_readme_main_job(in_tmp, truth):
    code, out, err = run('extract', '--sample', '--out', 'sample_areas.csv', '--chart', 'sample_areas.png')
    assert code == 0, err
    assert 'Traceback' not in err
    df = read_areas(in_tmp/'sample_areas.csv')
    assert list(df.columns) == list(CATEGORICAL_SCHEMA)
    outside = {s for s, m in truth.errors if m.startswith('outside the raster')}
    assert df.site_id.nunique() == 20 - len(outside) == 20
    t = tidy(df, CATEGORICAL_SCHEMA)
    assert t.dtypes.to_dict() == truth.data.dtypes.to_dict()
    pd.testing.assert_frame_equal(t, truth.data)
    img = imread(in_tmp/'sample_areas.png')
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400 and img[..., :3].std() > 0.05
    lines = out.splitlines()
    assert lines[0] == f'sample, local engine: 20 sites x 8 years: {len(truth.data)} rows for 20 sites'
    assert truth.errors == [] and lines[1] == f'{len(truth.warnings)} site warnings (rows cover part of the site):'
    assert lines[-2:] == ['wrote sample_areas.csv', 'wrote sample_areas.png']

def test_python_dash_m_lists_commands():
    p = subprocess.run([sys.executable, '-m', 'gee_polygons.cli', '--help'], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith('usage: gee-polygons <command>')
    assert [l.split()[0] for l in p.stdout.split('commands:\n')[1].split('\n\n')[0].splitlines()] == list(COMMANDS)

def test_parquet_output_and_year_subset(capsys, in_tmp):
    code, out, err = call(capsys, 'extract', '--sample', '--years', '2016,2020-2021', '--out', 'a.parquet', '--no-progress')
    assert code == 0 and err == ''
    df = pd.read_parquet(in_tmp/'a.parquet')
    assert sorted(df.year.unique()) == [2016, 2020, 2021]
    assert df.dtypes.astype(str).to_dict() == {'site_id': 'string', 'year': 'int64', 'class_value': 'int64', 'class_name': 'string',
                                               'count': 'float64', 'area_ha': 'float64', 'fraction': 'float64'}

# ---- help ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('args', [[], ['--help'], ['-h'], ['help']])
def test_main_help_lists_every_command(capsys, args):
    code, out, err = call(capsys, *args)
    assert code == 0 and err == ''
    for name, fn in COMMANDS.items(): assert f'  {name:<9}{fn.__doc__}' in out
    assert 'gee-polygons extract --sample --out sample_areas.csv --chart sample_areas.png' in out

@pytest.mark.parametrize('name', list(COMMANDS))
def test_every_command_has_help(capsys, name):
    code, out, err = call(capsys, name, '--help')
    assert code == 0 and err == ''
    assert out.startswith(f'usage: gee-polygons {name}') and COMMANDS[name].__doc__ in out
    parser = cli.command_parser(name)
    for a in parser._actions:
        if a.help != '==SUPPRESS==': assert a.help and a.help.strip(), f'{name} {a.option_strings} has no help'
    assert call(capsys, 'help', name)[1] == out

# ---- user errors: one line on stderr, no traceback, non-zero exit -------------------------------------------------
def one_line_error(code, out, err, *contains, status=1):
    assert code == status, (code, out, err)
    assert 'Traceback' not in err and out == ''
    assert len(err.splitlines()) == 1 and err.startswith('gee-polygons'), err
    for c in contains: assert c in err, err

USER_ERRORS = {
    'missing sites file': (('extract', '--sites', 'farms.geojson', '--layer', 'sample', '--source', 'x.tif', '--out', 'a.csv'),
                           ['Sites file not found: farms.geojson']),
    'unreadable years': (('extract', '--sample', '--years', '2016..2018', '--out', 'a.csv'), ["Cannot read --years '2016..2018'"]),
    'years out of range': (('extract', '--sample', '--years', '2010-2012', '--out', 'a.csv'), ['available years are 2016-2023']),
    'unknown layer': (('extract', '--sample', '--layer', 'mapbiomass', '--out', 'a.csv'), ["Unknown layer 'mapbiomass'", 'mapbiomas_lulc']),
    'bad bucket': (('export', '--sample', '--dest', 'gs://My_Bucket/runs', '--manifest', 'job.json'), ["Bucket name 'My_Bucket'"]),
    'google bucket': (('plan', '--sample', '--dest', 'gs://google-data'), ['must not start with "goog" or contain "google"']),
    'bad destination': (('export', '--sample', '--dest', 's3://bucket/x', '--manifest', 'job.json'), ['use drive:FOLDER or gs://bucket/prefix']),
    'missing manifest (status)': (('status', '--manifest', 'no_job.json'), ["No export manifest at 'no_job.json'"]),
    'missing manifest (wait)': (('wait', '--manifest', 'no_job.json'), ['No export manifest']),
    'missing manifest (cancel)': (('cancel', '--manifest', 'no_job.json'), ['No export manifest']),
    'missing manifest (retry)': (('retry', '--manifest', 'no_job.json'), ['No export manifest']),
    'missing manifest (collect)': (('collect', '--manifest', 'no_job.json', '--source', '.', '--out', 'a.csv'), ['No export manifest']),
    'no manifest given': (('status',), ['Give --manifest FILE.json']),
    'export without manifest': (('export', '--sample', '--dest', 'drive:x'), ['Give --manifest FILE.json']),
    'manifest folder missing': (('export', '--sample', '--dest', 'drive:x', '--manifest', 'no/dir/job.json'), ['does not exist']),
    'table suffix': (('extract', '--sample', '--out', 'areas.xlsx'), ['ending in .csv or .parquet']),
    'no output': (('extract', '--sample'), ['Give --out']),
    'output folder missing': (('extract', '--sample', '--out', 'no/dir/a.csv'), ['does not exist']),
    'chart suffix': (('extract', '--sample', '--out', 'a.csv', '--chart', 'a.jpg'), ['ending in .png']),
    'no sites': (('extract', '--layer', 'sample', '--source', 'x.tif', '--out', 'a.csv'), ['Give --sites FILE']),
    'missing raster': (('extract', '--sample', '--source', 'lulc.tif', '--out', 'a.csv'), ['lulc.tif']),
    'local engine without raster': (('extract', '--sample', '--layer', 'mapbiomas_lulc', '--engine', 'local', '--out', 'a.csv'), ['needs --source']),
    'unknown engine': (('extract', '--sample', '--engine', 'gpu', '--out', 'a.csv'), ["--engine must be 'local' or 'ee'"]),
    'missing table': (('chart', '--table', 'areas.csv', '--layer', 'sample', '--out', 'a.png'), ['Table not found: areas.csv']),
}

@pytest.mark.parametrize('case', list(USER_ERRORS))
def test_user_error_is_one_line(capsys, case):
    args, contains = USER_ERRORS[case]
    one_line_error(*call(capsys, *args), *contains)

@pytest.mark.parametrize('args,contains', [
    (('extract', '--sample', '--out', 'a.csv', '--workers', 'two'), ["gee-polygons extract: error: argument --workers: invalid int value: 'two'"]),
    (('wait', '--manifest', 'x.json', '--bogus'), ['gee-polygons wait: error: unrecognized arguments: --bogus']),
    (('extrakt',), ["unknown command 'extrakt'"]),
    (('help', 'extrakt'), ["unknown command 'extrakt'"])])
def test_malformed_command_line_is_one_line(capsys, args, contains):
    one_line_error(*call(capsys, *args), *contains, status=2)

def test_chart_errors_need_a_table(capsys, in_tmp, truth):
    truth.to_csv('areas.csv')
    one_line_error(*call(capsys, 'chart', '--table', 'areas.csv', '--out', 'a.png'), 'Give --layer NAME, one of:')
    one_line_error(*call(capsys, 'chart', '--table', 'areas.csv', '--layer', 'sample', '--out', 'a.png', '--transition', '2016'),
                   "Cannot read --transition '2016'")
    one_line_error(*call(capsys, 'chart', '--table', 'areas.csv', '--layer', 'sample', '--out', 'a.png', '--site', 'farm_9'),
                   "site_id ['farm_9'] not in the table")
    pd.DataFrame({'a': [1]}).to_csv('other.csv', index=False)
    one_line_error(*call(capsys, 'chart', '--table', 'other.csv', '--layer', 'sample', '--out', 'a.png'), 'Table lacks columns')

def test_corrupt_manifest_is_one_line(capsys, in_tmp):
    (in_tmp/'job.json').write_text('{"job": ')
    one_line_error(*call(capsys, 'status', '--manifest', 'job.json'), "'job.json' is not a gee_polygons export manifest")

def test_collect_missing_source_is_one_line(capsys, in_tmp, emu):
    manifest = export_sample(capsys, emu, 'drive:gee_exports', 'job.json')
    one_line_error(*call(capsys, 'collect', '--manifest', manifest, '--source', 'no_such_folder', '--out', 'a.csv'),
                   'Source folder not found: no_such_folder')
    one_line_error(*call(capsys, 'collect', '--manifest', manifest, '--out', 'a.csv'), "Google Drive folder 'gee_exports'")

def test_subprocess_user_error_has_no_traceback():
    code, out, err = run('extract', '--sample', '--years', '2030', '--out', 'a.csv')
    one_line_error(code, out, err, 'sample has no data for [2030]')

def test_missing_credentials_is_one_line(tmp_path):
    "With no stored credentials (an empty HOME), Earth Engine commands say how to authenticate."
    code, out, err = run_env({'HOME': str(tmp_path)}, 'extract', '--sample', '--engine', 'ee', '--project', 'my-project', '--out', 'a.csv')
    one_line_error(code, out, err, 'No Earth Engine credentials found: run `earthengine authenticate`')

def run_env(extra, *args):
    env = {k: v for k, v in os.environ.items() if k not in ('GOOGLE_APPLICATION_CREDENTIALS', 'EARTHENGINE_TOKEN', 'CLOUDSDK_CONFIG',
                                                           'GEE_POLYGONS_DEBUG')}
    env.update(extra, GEE_POLYGONS_NO_NETWORK='1', NO_GCE_CHECK='true', PYTHONPATH=str(ROOT/'.ci'/'netguard'))
    p = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120, cwd=extra.get('HOME'))
    return p.returncode, p.stdout, p.stderr

def test_debug_env_shows_traceback(capsys, monkeypatch):
    monkeypatch.setenv('GEE_POLYGONS_DEBUG', '1')
    with pytest.raises(ValueError, match='Give --out'): main(['extract', '--sample'])

# ---- batch exports against the emulator ----------------------------------------------------------------------------
def chunk_site_ids(expr) -> list:
    "Site ids inlined in a serialized export expression."
    found = []
    def walk(x):
        if isinstance(x, dict):
            v = x.get('constantValue')
            if isinstance(v, list) and v and all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) for r in v):
                found.extend(r[0] for r in v)
            for y in x.values(): walk(y)
        elif isinstance(x, list):
            for y in x: walk(y)
    walk(expr)
    return found

@pytest.fixture
def emu(truth, tmp_path):
    "An emulator whose exports hold the sample's rows (from the local engine) for each chunk's sites."
    rows = truth.data.astype(object)
    def evaluate(expr):
        years = {int(y) for y in re.findall(r'classification_(\d{4})', json.dumps(expr))}
        return rows[rows.site_id.isin(chunk_site_ids(expr)) & rows.year.isin(years)].to_dict('records')
    with Emulator(project='demo-project', max_running=3, task_seconds=10, auto_advance=5, evaluate=evaluate,
                  out_dir=tmp_path/'ee') as e:
        yield e

def ee_args(emu): return ['--project', 'demo-project', '--ee-url', emu.url]

def export_sample(capsys, emu, dest, manifest, *more):
    code, out, err = call(capsys, 'export', '--sample', '--dest', dest, '--manifest', manifest, '--chunk-size', '6',
                          '--poll', '0.001', '--no-progress', *ee_args(emu), *more)
    assert code == 0, err
    return manifest

def test_export_status_collect_to_drive(capsys, in_tmp, emu, truth):
    export_sample(capsys, emu, 'drive:gee_exports', 'job.json')
    m = json.loads((in_tmp/'job.json').read_text())
    assert [c['state'] for c in m['chunks']] == ['COMPLETED'] * 4
    assert [c['file_prefix'] for c in m['chunks']] == [f'job_chunk_{i:04d}' for i in range(4)]
    assert m['job']['cli'] == dict(sites=None, sample=True, layer='sample', years=SAMPLE_YEARS, id_field=None, reducer='mean', frequency='yearly')
    assert {o.description.rsplit('_chunk_')[0] for o in emu.ops.values()} == {'job_cat'}
    code, out, err = call(capsys, 'status', '--manifest', 'job.json', *ee_args(emu))
    assert code == 0 and out.splitlines()[1].split() == ['COMPLETED', '4', 'tasks', '20', 'sites']
    code, out, err = call(capsys, 'collect', '--manifest', 'job.json', '--source', emu.out_dir/'drive'/'gee_exports',
                          '--out', 'collected.parquet', '--no-progress')
    assert code == 0 and out.splitlines() == [f'{len(truth.data)} rows for 20/20 sites from 4 files', 'wrote collected.parquet']
    pd.testing.assert_frame_equal(pd.read_parquet(in_tmp/'collected.parquet'), truth.data)
    code, out, err = call(capsys, 'chart', '--table', 'collected.parquet', '--layer', 'sample', '--out', 'c.png', '--transition', '2016-2023')
    assert code == 0 and imread(in_tmp/'c.png').ndim == 3

def test_export_no_wait_then_wait_then_collect_from_bucket(capsys, in_tmp, emu, truth):
    export_sample(capsys, emu, 'gs://demo-bucket/runs/2024', 'job.json', '--no-wait', '--years', '2016-2017', '--file-format', 'geojson')
    assert {o.state for o in emu.ops.values()} != {'SUCCEEDED'}  # returned before the tasks finished
    code, out, err = call(capsys, 'wait', '--manifest', 'job.json', '--poll', '0.001', '--no-progress', *ee_args(emu))
    assert code == 0, err
    assert {o.state for o in emu.ops.values()} == {'SUCCEEDED'}
    files = sorted(p.name for p in (Path(emu.out_dir)/'gcs'/'demo-bucket'/'runs'/'2024').iterdir())
    assert files == [f'job_chunk_{i:04d}.geojson' for i in range(4)]
    (Path(emu.out_dir)/'gcs'/'demo-bucket'/'runs'/'2024'/'job_chunk_0003.geojson').write_text('{"type": "FeatureCollection", "feat')
    code, out, err = call(capsys, 'collect', '--manifest', 'job.json', '--source', Path(emu.out_dir)/'gcs'/'demo-bucket',
                          '--out', 'c.csv', '--missing', 'missing.csv', '--strict', '--no-progress')
    assert code == 1
    lines = out.splitlines()
    want = truth.data[truth.data.year.isin([2016, 2017]) & ~truth.data.site_id.isin(['site_19', 'site_20'])].reset_index(drop=True)
    assert lines[0] == f'{len(want)} rows for 18/20 sites from 3 files'
    assert lines[1] == 'unreadable files: 1'
    assert lines[2].startswith('  job_chunk_0003.geojson: not valid JSON (') and lines[2].endswith('): truncated or corrupt')
    assert lines[3:] == ['expected (site_id, year) pairs without rows: 4 (chunk file unreadable: 4)', 'wrote c.csv', 'wrote missing.csv']
    missing = pd.read_csv(in_tmp/'missing.csv', dtype=str)
    assert sorted(set(missing.site_id)) == ['site_19', 'site_20'] and set(missing.reason) == {'chunk file unreadable'}
    pd.testing.assert_frame_equal(tidy(read_areas(in_tmp/'c.csv'), CATEGORICAL_SCHEMA), want)

def test_plan_is_offline_and_matches_export(capsys, in_tmp, emu):
    code, out, err = call(capsys, 'plan', '--sample', '--chunk-size', '6', '--file-prefix', 'job')
    assert code == 0
    assert out.splitlines()[0].startswith('20 sites, sample, years 2016-2023: ExportPlan(n_tasks=4, sites/task=2-6, bytes/task=')
    planned = [int(l.split()[-1]) for l in out.splitlines()[2:]]
    export_sample(capsys, emu, 'drive:gee_polygons', 'job.json')
    assert [c['bytes'] for c in json.loads((in_tmp/'job.json').read_text())['chunks']] == planned

def test_failed_chunk_then_retry_from_manifest(capsys, in_tmp, emu, truth):
    fired = []
    def once(body):
        hit = body.get('description', '').endswith('chunk_0002') and not fired
        if hit: fired.append(1)
        return hit
    emu.fail_tasks(once, 'Asset is not readable.')
    code, out, err = call(capsys, 'export', '--sample', '--dest', 'drive:gee_exports', '--manifest', 'job.json', '--chunk-size', '6',
                          '--poll', '0.001', '--no-progress', *ee_args(emu))
    assert code == 1
    assert 'error x1: Asset is not readable.' in out and 'gee-polygons retry --manifest job.json' in out
    code, out, err = call(capsys, 'retry', '--manifest', 'job.json', '--poll', '0.001', '--no-progress', *ee_args(emu))
    assert code == 0, err
    chunks = json.loads((in_tmp/'job.json').read_text())['chunks']
    assert [c['state'] for c in chunks] == ['COMPLETED'] * 4 and chunks[2]['attempts'] == 2
    assert len(emu.ops) == 5
    code, out, err = call(capsys, 'collect', '--manifest', 'job.json', '--source', Path(emu.out_dir)/'drive', '--out', 'c.csv',
                          '--strict', '--no-progress')
    assert code == 0
    pd.testing.assert_frame_equal(tidy(read_areas(in_tmp/'c.csv'), CATEGORICAL_SCHEMA), truth.data)

def test_retry_without_recorded_inputs_asks_for_them(capsys, in_tmp, emu):
    export_sample(capsys, emu, 'drive:gee_exports', 'job.json')
    m = json.loads((in_tmp/'job.json').read_text()); del m['job']['cli']
    (in_tmp/'job.json').write_text(json.dumps(m))
    one_line_error(*call(capsys, 'retry', '--manifest', 'job.json', *ee_args(emu)), 'does not record its sites and layer')
    code, out, err = call(capsys, 'retry', '--manifest', 'job.json', '--sample', '--layer', 'sample', '--poll', '0.001',
                          '--no-progress', *ee_args(emu))
    assert code == 0, err
    one_line_error(*call(capsys, 'retry', '--manifest', 'job.json', '--sample', '--layer', 'sample', '--years', '2016',
                         *ee_args(emu)), 'records a different export job')

def test_cancel(capsys, in_tmp, truth):
    with Emulator(project='demo-project', max_running=2, task_seconds=1e6) as slow:
        code, out, err = call(capsys, 'export', '--sample', '--dest', 'drive:x', '--manifest', 'job.json', '--chunk-size', '5',
                              '--no-wait', *ee_args(slow))
        assert code == 0 and [o.state for o in slow.ops.values()] == ['RUNNING', 'RUNNING', 'PENDING', 'PENDING']
        code, out, err = call(capsys, 'cancel', '--manifest', 'job.json', *ee_args(slow))
        assert code == 0 and out.splitlines()[0] == 'cancel requested for 4 tasks'
        slow.tick()
        assert [o.state for o in slow.ops.values()] == ['CANCELLED'] * 4
        code, out, err = call(capsys, 'status', '--manifest', 'job.json', *ee_args(slow))
        assert out.splitlines()[1].split() == ['CANCELLED', '4', 'tasks', '20', 'sites']
        code, out, err = call(capsys, 'wait', '--manifest', 'job.json', '--poll', '0.001', '--no-progress', *ee_args(slow))
        assert code == 1  # finished, but not completed

def test_extract_with_earth_engine(capsys, in_tmp, emu, truth):
    "The ee engine through the emulator (computeFeatures) gives the same table."
    code, out, err = call(capsys, 'extract', '--sample', '--engine', 'ee', '--years', '2016-2018', '--out', 'ee.csv', '--no-progress',
                          *ee_args(emu))
    assert code == 0, err
    assert out.splitlines()[0].startswith('sample, ee engine: 20 sites x 3 years:')
    want = truth.data[truth.data.year <= 2018].reset_index(drop=True)
    pd.testing.assert_frame_equal(tidy(read_areas(in_tmp/'ee.csv'), CATEGORICAL_SCHEMA), want)
    assert any(e['path'].endswith('table:computeFeatures') for e in emu.log)

def test_interrupt_is_one_line(capsys, monkeypatch):
    from fastcore.script import call_parse
    @call_parse
    def wait(manifest:str=None): # the manifest
        "Wait."
        raise KeyboardInterrupt
    monkeypatch.setitem(cli.COMMANDS, 'wait', wait)
    code, out, err = call(capsys, 'wait', '--manifest', 'job.json')
    assert code == 130
    assert err == 'gee-polygons: error: interrupted; tasks already started keep running, and the manifest records them\n'

def test_unexpected_errors_keep_their_traceback(monkeypatch):
    from fastcore.script import call_parse
    @call_parse
    def status(manifest:str=None): # the manifest
        "Status."
        return 1 / 0
    monkeypatch.setitem(cli.COMMANDS, 'status', status)
    with pytest.raises(ZeroDivisionError): main(['status'])

"""The `gee-polygons` command: the README main job, help, one clear line per user error, and the batch commands against
the Earth Engine emulator (real client, real HTTP on 127.0.0.1)."""
import json, os, re, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
from matplotlib.image import imread
from gee_polygons import cli, gateway, export as gx
from gee_polygons.cli import COMMANDS, main
from gee_polygons.emulator import Emulator, site_ids
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
    assert lines[0] == f'sample, local engine: 20 sites x {len(SAMPLE_YEARS)} years: {len(truth.data)} rows for 20 sites'
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
    'years out of range': (('extract', '--sample', '--years', '1990-1992', '--out', 'a.csv'),
                           [f'available years are {SAMPLE_YEARS[0]}-{SAMPLE_YEARS[-1]}']),
    'unknown layer': (('extract', '--sample', '--layer', 'mapbiomass', '--out', 'a.csv'), ["Unknown layer 'mapbiomass'", 'mapbiomas_lulc']),
    'bad bucket': (('export', '--sample', '--dest', 'gs://My_Bucket/runs', '--manifest', 'job.json'), ["Bucket name 'My_Bucket'"]),
    'google bucket': (('plan', '--sample', '--dest', 'gs://google-data'), ['must not start with "goog" or contain "google"']),
    'bad destination': (('export', '--sample', '--dest', 's3://bucket/x', '--manifest', 'job.json'), ['use drive:FOLDER or gs://bucket/prefix']),
    'missing manifest (status)': (('status', '--manifest', 'no_job.json'), ["No export manifest at 'no_job.json'"]),
    'missing manifest (wait)': (('wait', '--manifest', 'no_job.json'), ['No export manifest']),
    'missing manifest (cancel)': (('cancel', '--manifest', 'no_job.json'), ['No export manifest']),
    'missing manifest (retry)': (('retry', '--manifest', 'no_job.json'), ['No export manifest']),
    'missing manifest (collect)': (('collect', '--manifest', 'no_job.json', '--source', '.', '--out', 'a.csv'), ['No export manifest']),
    'manifest folder missing': (('export', '--sample', '--dest', 'drive:x', '--manifest', 'no/dir/job.json'), ['does not exist']),
    'table suffix': (('extract', '--sample', '--out', 'areas.xlsx'), ['ending in .csv or .parquet']),
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
    (('status',), ['the following arguments are required: --manifest']),
    (('export', '--sample', '--dest', 'drive:x'), ['the following arguments are required: --manifest']),
    (('extract', '--sample'), ['the following arguments are required: --out']),
    (('chart', '--table', 'areas.csv', '--out', 'a.png'), ['the following arguments are required: --layer']),
    (('help', 'extrakt'), ["unknown command 'extrakt'"])])
def test_malformed_command_line_is_one_line(capsys, args, contains):
    one_line_error(*call(capsys, *args), *contains, status=2)

def test_chart_errors_need_a_table(capsys, in_tmp, truth):
    truth.to_csv('areas.csv')
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
    with pytest.raises(ValueError, match='ending in .csv or .parquet'): main(['extract', '--sample', '--out', 'a.xlsx'])

# ---- batch exports against the emulator ----------------------------------------------------------------------------
@pytest.fixture
def emu(truth, tmp_path):
    "An emulator whose exports hold the sample's rows (from the local engine) for each chunk's sites."
    rows = truth.data.astype(object)
    def evaluate(expr):
        years = {int(y) for y in re.findall(r'classification_(\d{4})', json.dumps(expr))}
        return rows[rows.site_id.isin(site_ids(expr)) & rows.year.isin(years)].to_dict('records')
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
    assert all(c['file_prefix'].startswith('job') and c['file_prefix'].endswith(f'_chunk_{i:04d}') for i, c in enumerate(m['chunks']))
    assert cli.recorded_meta(gx.Manifest.load('job.json')) == dict(sites=None, sample=True, layer='sample', years=SAMPLE_YEARS, reducer='mean',
                                                                   frequency='yearly', id_field=None, source_crs=None, make_valid=False, skip_invalid=False)
    assert all(o.description.startswith('job') for o in emu.ops.values())
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
    assert files == [c.file_prefix + '.geojson' for c in gx.ExportTask.load('job.json').leaves]
    (Path(emu.out_dir)/'gcs'/'demo-bucket'/'runs'/'2024'/files[3]).write_text('{"type": "FeatureCollection", "feat')
    code, out, err = call(capsys, 'collect', '--manifest', 'job.json', '--source', Path(emu.out_dir)/'gcs'/'demo-bucket',
                          '--out', 'c.csv', '--missing', 'missing.csv', '--strict', '--no-progress')
    assert code == 1
    lines = out.splitlines()
    want = truth.data[truth.data.year.isin([2016, 2017]) & ~truth.data.site_id.isin(['site_19', 'site_20'])].reset_index(drop=True)
    assert lines[0] == f'{len(want)} rows for 18/20 sites from 3 files'
    assert lines[1] == 'files not used: 1'
    assert lines[2].startswith(f'  {files[3]}: not valid JSON (') and lines[2].endswith('): truncated or corrupt')
    assert lines[3:] == ['expected (site_id, year) pairs without rows: 4 (chunk file unreadable: 4)', 'wrote c.csv', 'wrote missing.csv']
    missing = pd.read_csv(in_tmp/'missing.csv', dtype=str)
    assert sorted(set(missing.site_id)) == ['site_19', 'site_20'] and set(missing.reason) == {'chunk file unreadable'}
    pd.testing.assert_frame_equal(tidy(read_areas(in_tmp/'c.csv'), CATEGORICAL_SCHEMA), want)

def test_plan_is_offline_and_matches_export(capsys, in_tmp, emu):
    code, out, err = call(capsys, 'plan', '--sample', '--chunk-size', '6', '--file-prefix', 'job')
    assert code == 0
    assert out.splitlines()[0].startswith(f'20 sites, sample, years {SAMPLE_YEARS[0]}-{SAMPLE_YEARS[-1]}: ExportPlan(n_tasks=4, sites/task=2-6, bytes/task=')
    planned = [l.split() for l in out.splitlines()[2:-1]]
    export_sample(capsys, emu, 'drive:gee_polygons', 'job.json')
    m = json.loads((in_tmp/'job.json').read_text())
    assert [c['bytes'] for c in m['chunks']] == [int(l[-1]) for l in planned]
    job_id = m['job'].get('job_id')
    same = lambda s: s.replace(job_id, '{job_id}') if job_id else s  # the plan shows where the job's id goes
    assert [same(c['description']) for c in m['chunks']] == [l[1] for l in planned]
    first, last = (same(m['chunks'][i]['file_prefix']) for i in (0, -1))
    assert out.splitlines()[-1].startswith(f'files: drive://gee_polygons/{first}.csv ... {last}.csv')

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
    m = json.loads((in_tmp/'job.json').read_text()); m['job'].pop('cli', None); m['job'].pop('meta', None)
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
    want = truth.data[truth.data.year.between(2016, 2018)].reset_index(drop=True)
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
    with pytest.raises(ZeroDivisionError): main(['status', '--manifest', 'job.json'])

# ---- collect: never crashes, always writes --missing, exits 1 when incomplete (issue 9, point 5) ----------------------
def test_collect_failed_and_undownloaded_chunks(capsys, in_tmp, emu, truth):
    "One missing chunk FAILED, another simply not downloaded: a report (no TypeError), --missing written, exit 1."
    export_sample(capsys, emu, 'drive:gee_exports', 'job.json')
    m = gx.Manifest.load('job.json')
    leaves = sorted(m.chunks.values(), key=lambda c: c.start)
    leaves[1].state, leaves[1].error = 'FAILED', 'Computation timed out.'
    m.save()
    folder = Path(emu.out_dir)/'drive'/'gee_exports'
    for c in leaves[1:3]: (folder/f'{c.file_prefix}.csv').unlink()
    code, out, err = call(capsys, 'collect', '--manifest', 'job.json', '--source', folder, '--out', 'c.csv', '--missing', 'gaps.csv',
                          '--no-progress')
    assert code == 1 and 'Traceback' not in err
    lines = out.splitlines()
    assert lines[1:4] == ['chunk files missing: 2', f'  {leaves[1].file_prefix}.csv: task FAILED: Computation timed out.',
                          f'  {leaves[2].file_prefix}.csv: task COMPLETED (file not downloaded or synced?)']
    n = (leaves[1].n_sites + leaves[2].n_sites) * len(SAMPLE_YEARS)
    assert err.startswith(f'gee-polygons collect: the table is incomplete ({n} expected pairs without rows)') and '--allow-incomplete' in err
    gaps = pd.read_csv(in_tmp/'gaps.csv', dtype=str)
    assert len(gaps) == n and set(gaps.site_id) == set(leaves[1].site_ids + leaves[2].site_ids)
    code, out, err = call(capsys, 'collect', '--manifest', 'job.json', '--source', folder, '--out', 'c.csv', '--missing', 'gaps.csv',
                          '--allow-incomplete', '--no-progress')
    assert code == 0 and err == ''
    code, out, err = call(capsys, 'collect', '--manifest', 'job.json', '--source', folder, '--out', 'c.csv', '--strict', '--no-progress')
    assert code == 1  # --strict is still accepted

def test_collect_complete_writes_an_empty_missing_table(capsys, in_tmp, emu):
    export_sample(capsys, emu, 'drive:gee_exports', 'job.json')
    code, out, err = call(capsys, 'collect', '--manifest', 'job.json', '--source', Path(emu.out_dir)/'drive', '--out', 'c.csv',
                          '--missing', 'gaps.csv', '--no-progress')
    assert code == 0 and err == '' and out.splitlines()[-1] == 'wrote gaps.csv'
    assert list(pd.read_csv(in_tmp/'gaps.csv').columns) == ['site_id', 'year', 'chunk', 'reason'] and len(pd.read_csv(in_tmp/'gaps.csv')) == 0

def test_collect_reports_other_jobs_files_and_groups_repeated_errors(capsys, in_tmp, emu, truth):
    export_sample(capsys, emu, 'drive:gee_exports', 'job.json')
    folder = Path(emu.out_dir)/'drive'/'gee_exports'
    leaves = gx.ExportTask.load('job.json').leaves
    names = [folder/f'{c.file_prefix}.csv' for c in leaves]
    names[0].write_bytes(names[1].read_bytes())  # another chunk's rows
    for p in names[2:]: p.write_text(p.read_text()[:-7])  # three truncated downloads
    code, out, err = call(capsys, 'collect', '--manifest', 'job.json', '--source', folder, '--out', 'c.csv', '--no-progress')
    assert code == 1
    lines = out.splitlines()
    assert lines[1] == 'files not used: 3'
    assert lines[2] == f'  2 files ({names[2].name}, {names[3].name}): truncated: the last line is incomplete'
    assert lines[3].startswith(f'  {names[0].name}: belongs to another job: ')
    assert 'chunk file belongs to another job' in lines[4]

def test_hand_edited_manifest_is_one_line(capsys, in_tmp, emu):
    export_sample(capsys, emu, 'drive:gee_exports', 'job.json')
    good = json.loads((in_tmp/'job.json').read_text())
    args = [('status', '--manifest', 'job.json', *ee_args(emu)), ('retry', '--manifest', 'job.json', *ee_args(emu)),
            ('collect', '--manifest', 'job.json', '--source', Path(emu.out_dir)/'drive', '--out', 'c.csv')]
    edits = [lambda m: m['chunks'][0].update(colour='red'), lambda m: m['job'].pop('config'), lambda m: m['job'].pop('destination')]
    for edit in edits:
        m = json.loads(json.dumps(good)); edit(m); (in_tmp/'job.json').write_text(json.dumps(m))
        for a in args:
            code, out, err = call(capsys, *a)
            assert code == 1 and 'Traceback' not in err and len(err.splitlines()) == 1 and 'job.json' in err, (a, err)
    m = json.loads(json.dumps(good)); m['chunks'].pop(1); (in_tmp/'job.json').write_text(json.dumps(m))
    one_line_error(*call(capsys, *args[2]), "anifest 'job.json' does not cover the job's 20 sites exactly once")

# ---- one line, never a traceback (issue 9, point 8) --------------------------------------------------------------------
@pytest.fixture(scope='module')
def bad_rasters(tmp_path_factory):
    import rasterio
    d = tmp_path_factory.mktemp('rasters')
    (d/'text.tif').write_text('not a raster at all')
    raw = Path(sample_raster_path()).read_bytes(); (d/'cut.tif').write_bytes(raw[:len(raw) // 2])
    with rasterio.open(sample_raster_path()) as s: prof, px = {k: v for k, v in s.profile.items() if k != 'crs'}, s.read()
    with rasterio.open(d/'no_crs.tif', 'w', **prof) as dst: dst.write(px)
    i = SAMPLE_YEARS.index(2016)
    with rasterio.open(d/'unnamed.tif', 'w', **{**prof, 'crs': 'EPSG:4326', 'count': 3}) as dst: dst.write(px[i:i + 3])  # 2016-2018, unnamed
    return d

@pytest.mark.parametrize('name', ['text.tif', 'cut.tif', 'no_crs.tif'])
def test_bad_raster_is_one_line(bad_rasters, name):
    code, out, err = run('extract', '--sample', '--source', bad_rasters/name, '--out', 'a.csv', '--no-progress')
    one_line_error(code, out, err, name)

def test_chart_errors_are_one_line(capsys, in_tmp, truth):
    truth.to_csv('areas.csv')
    one_line_error(*call(capsys, 'chart', '--table', 'areas.csv', '--layer', 'sample', '--out', 'a.png', '--dpi', '100000'),
                   '--dpi must be between 10 and 600')
    pd.DataFrame(dict(site_id=['a'], period=['2020'], NDVI=[0.5], valid_count=[3.0])).to_csv('ndvi.csv', index=False)
    one_line_error(*call(capsys, 'chart', '--table', 'ndvi.csv', '--layer', 'sample', '--out', 'a.png'), 'ndvi.csv is a continuous table')

def test_chart_layer_mismatch_warns_and_uses_the_tables_names(capsys, in_tmp, truth):
    truth.to_csv('areas.csv')
    code, out, err = call(capsys, 'chart', '--table', 'areas.csv', '--layer', 'dynamic_world', '--out', 'a.png')
    assert code == 0 and out == 'wrote a.png\n'
    assert err.startswith("gee-polygons chart: warning: The table's classes do not match --layer dynamic_world") and len(err.splitlines()) == 1
    code, out, err = call(capsys, 'chart', '--table', 'areas.csv', '--layer', 'sample', '--out', 'b.png')
    assert code == 0 and err == ''

def test_manifest_locked_is_a_user_error():
    jobs = pytest.importorskip('gee_polygons.jobs')
    if not hasattr(jobs, 'ManifestLockedError'): pytest.skip('gee_polygons.jobs has no ManifestLockedError yet')
    assert cli.is_user_error(jobs.ManifestLockedError("Manifest 'job.json' is in use by pid 12@host"))

def test_unreachable_ee_url_is_one_line(in_tmp, truth):
    "An --ee-url nobody answers: one line, quickly (gateway.init's message)."
    import socket, time
    s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()
    t = time.monotonic()
    code, out, err = run('extract', '--sample', '--engine', 'ee', '--out', 'a.csv', '--ee-url', f'http://127.0.0.1:{port}')
    assert code == 1 and 'Traceback' not in err and len(err.splitlines()) == 1, err
    assert time.monotonic() - t < 60

# ---- the command line a newcomer expects (issue 11, section 4) -------------------------------------------------------
def test_help_reads_right(capsys):
    for name in ('export', 'retry', 'wait', 'extract', 'collect'):
        code, out, err = call(capsys, name, '--help')
        flat = ' '.join(out.split())
        assert '--no-progress hide' in flat and '(default: True)' not in flat and '(default: False)' not in flat, out
    assert '--no-wait return once all are submitted (default: wait until every task has finished)' in ' '.join(call(capsys, 'export', '--help')[1].split())
    for name, opts in cli.REQUIRED.items():
        usage = call(capsys, name, '--help')[1].split('\n\n')[0]
        for o in opts: assert f'[--{o.replace("_", "-")} ' not in usage and f'--{o.replace("_", "-")} ' in usage, (name, o)

def test_messages_speak_cli(capsys, in_tmp):
    one_line_error(*call(capsys, 'plan', '--sample', '--chunk-size', '0'), '--chunk-size must be')
    one_line_error(*call(capsys, 'export', '--sample', '--dest', '', '--manifest', 'job.json'), 'Give --dest drive:FOLDER')
    code, out, err = call(capsys, 'export', '--sample', '--dest', '', '--manifest', 'job.json')
    assert 'None' not in err and 'chunk_size' not in err

def sample_features():
    return json.loads(Path(sample_sites_path()).read_text())

def test_site_fixes_the_messages_name_exist(capsys, in_tmp):
    "The options the messages name (--make-valid, --skip-invalid, --source-crs) exist and work."
    d = sample_features()
    ring = d['features'][0]['geometry']['coordinates'][0]
    (x0, y0), (x1, y1) = ring[0], ring[len(ring) // 2]
    d['features'][0]['geometry'] = {'type': 'Polygon', 'coordinates': [[[x0, y0], [x1, y1], [x1, y0], [x0, y1], [x0, y0]]]}  # a bow tie
    Path('bowtie.geojson').write_text(json.dumps(d))
    base = ('extract', '--sites', 'bowtie.geojson', '--layer', 'sample', '--source', sample_raster_path(), '--out', 'a.csv', '--no-progress')
    code, out, err = call(capsys, *base)
    one_line_error(code, out, err, '--make-valid', '--skip-invalid')
    assert 'make_valid' not in err and 'on_invalid' not in err
    code, out, err = call(capsys, *base, '--skip-invalid')
    assert code == 0 and read_areas('a.csv').site_id.nunique() == 19 and 'warning' in err
    code, out, err = call(capsys, *base, '--make-valid')
    assert code == 0 and read_areas('a.csv').site_id.nunique() == 20

def test_source_crs_option(capsys, in_tmp, truth):
    from pyproj import Transformer
    d, tr = sample_features(), Transformer.from_crs('EPSG:4326', 'EPSG:5880', always_xy=True)
    move = lambda c: list(tr.transform(*c)) if isinstance(c[0], (int, float)) else [move(x) for x in c]
    for f in d['features']: f['geometry']['coordinates'] = move(f['geometry']['coordinates'])
    Path('metres.geojson').write_text(json.dumps(d))
    base = ('extract', '--sites', 'metres.geojson', '--layer', 'sample', '--source', sample_raster_path(), '--out', 'a.csv', '--no-progress')
    code, out, err = call(capsys, *base)
    one_line_error(code, out, err, '--source-crs')
    assert 'source_crs' not in err
    code, out, err = call(capsys, *base, '--source-crs', 'EPSG:5880')
    assert code == 0, err
    assert read_areas('a.csv').site_id.nunique() == 20

def test_band_years_option(capsys, in_tmp, bad_rasters):
    base = ('extract', '--sample', '--source', bad_rasters/'unnamed.tif', '--out', 'a.csv', '--no-progress')
    one_line_error(*call(capsys, *base, '--years', '2017'), '--band-years')
    code, out, err = call(capsys, *base, '--years', '2017')
    assert 'band_years' not in err
    code, out, err = call(capsys, *base, '--band-years', '2016-2018', '--years', '2017')
    assert code == 0, err
    assert set(read_areas('a.csv').year) == {2017}

def test_extract_says_which_engine_and_why(tmp_path):
    "Without --source nor a project nor credentials, extract says it chose Earth Engine because no --source was given."
    code, out, err = run_env({'HOME': str(tmp_path)}, 'extract', '--sample', '--layer', 'mapbiomas_lulc', '--out', 'a.csv')
    one_line_error(code, out, err, 'No --source raster was given, so extract uses Earth Engine', '--source RASTER')
    assert 'gee_polygons.init' not in err

def test_status_groups_failures_by_error(capsys, in_tmp, emu):
    emu.fail_tasks(lambda body: body.get('description', '').endswith(('chunk_0001', 'chunk_0003')), 'Asset is not readable.')
    emu.fail_tasks(lambda body: body.get('description', '').endswith('chunk_0002'), "Image.load: Image asset 'x' not found.")
    code, out, err = call(capsys, 'export', '--sample', '--dest', 'drive:x', '--manifest', 'job.json', '--chunk-size', '6',
                          '--poll', '0.001', '--no-progress', *ee_args(emu))
    assert code == 1
    code, out, err = call(capsys, 'status', '--manifest', 'job.json', *ee_args(emu))
    assert code == 0
    lines = out.splitlines()
    i = lines.index('failed tasks by error (3):')
    assert lines[i + 1:] == ['  2 tasks, 8 sites: Asset is not readable. (chunks 0001, 0003)',
                             "  1 tasks, 6 sites: Image.load: Image asset 'x' not found. (chunks 0002)",
                             'retry them: gee-polygons retry --manifest job.json']

# ---- retry after a crash during submission (issue 9, point 9) -----------------------------------------------------
def test_retry_after_a_crash_during_submission(capsys, in_tmp, emu, truth):
    from gee_polygons.emulator import SimulatedCrash, crash_after
    if not cli._accepts_meta(): pytest.skip('the export functions do not take job_meta= yet (H1)')
    with crash_after(2), pytest.raises(SimulatedCrash):
        main(['export', '--sample', '--dest', 'drive:gee_exports', '--manifest', 'job.json', '--chunk-size', '6', '--poll', '0.001',
              '--no-progress', *ee_args(emu)])
    capsys.readouterr()
    assert cli.recorded_meta(gx.Manifest.load('job.json'))['sample'] is True  # recorded before the first task started
    code, out, err = call(capsys, 'retry', '--manifest', 'job.json', '--poll', '0.001', '--no-progress', *ee_args(emu))
    assert code == 0, err
    chunks = json.loads((in_tmp/'job.json').read_text())['chunks']
    assert [c['state'] for c in chunks] == ['COMPLETED'] * 4 and len(emu.ops) == 4  # nothing submitted twice
    code, out, err = call(capsys, 'collect', '--manifest', 'job.json', '--source', Path(emu.out_dir)/'drive', '--out', 'c.csv', '--no-progress')
    assert code == 0
    pd.testing.assert_frame_equal(tidy(read_areas(in_tmp/'c.csv'), CATEGORICAL_SCHEMA), truth.data)

# ---- emulator and verify -----------------------------------------------------------------------------------------------
def test_emulator_command_serves_until_ctrl_c(tmp_path, truth):
    import signal, urllib.request
    from gee_polygons import testing
    if not hasattr(testing, 'offline'): pytest.skip('gee_polygons.testing.offline does not exist yet (H4)')
    env = {**os.environ, 'GEE_POLYGONS_NO_NETWORK': '1', 'PYTHONPATH': str(ROOT/'.ci'/'netguard')}
    p = subprocess.Popen([str(SCRIPT), 'emulator', '--folder', 'emu'], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    try:
        lines = []
        while not lines or not lines[-1].startswith('press Ctrl-C'): lines.append(p.stdout.readline().rstrip('\n'))
        url = re.search(r'serving at (\S+)', lines[0])[1]
        assert f'pass --ee-url {url}' in lines[1] and f'exported files are written under {tmp_path/"emu"}' in '\n'.join(lines)
        code, out, err = run('export', '--sample', '--dest', 'drive:gee_exports', '--manifest', tmp_path/'job.json', '--chunk-size', '10',
                             '--poll', '0.01', '--no-progress', '--ee-url', url)
        assert code == 0, err
        assert len(list((tmp_path/'emu'/'drive'/'gee_exports').iterdir())) == 2
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and 'emulator stopped' in out and 'Traceback' not in err

def test_verify_command(capsys, monkeypatch):
    v = pytest.importorskip('gee_polygons.verify')
    from gee_polygons import testing
    if hasattr(testing, 'offline'):
        with testing.offline() as o:
            code, out, err = call(capsys, 'verify', '--ee-url', o.url, '--no-progress')
            ok = v.verify(ee_url=o.url, progress=False).ok
        assert code == (0 if ok else 1) and out.strip() and 'Traceback' not in err
    class Report:
        ok, rows = False, []
        def __str__(self): return 'check  found  assumed  ok'
    monkeypatch.setattr(v, 'verify', lambda **kw: Report())
    code, out, err = call(capsys, 'verify', '--no-progress')
    assert (code, out) == (1, 'check  found  assumed  ok\n')


# ---- layers, map, transitions, collect's exit code (issue 12; issue 9 leftovers) ---------------------------------------
def test_layers_lists_asset_ids_years_and_when_checked(capsys):
    from gee_polygons.datasets.registry import LAYERS
    code, out, err = call(capsys, 'layers')
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ['layer', 'kind', 'years', 'checked', 'asset', 'id']
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    for name, lay in LAYERS.items():
        asset = getattr(lay, 'asset_id', None) or lay.collection_id
        assert rows[name][2:] == [f'{lay.years[0]}-{lay.years[-1]}', lay.checked, asset], name
    assert rows['mapbiomas_lulc'][2:] == ['1985-2025', LAYERS['mapbiomas_lulc'].checked,
                                          'projects/mapbiomas-public/assets/brazil/lulc/collection11/mapbiomas_brazil_collection11_coverage_v3']


def test_cli_functions_do_not_clash_with_library_names():
    from gee_polygons._modidx import d
    names = lambda mod: {k.removeprefix(mod + '.').split('.')[-1] for k in d['syms'][mod]}
    ours = {n for n in names('gee_polygons.cli') if not n.startswith('_')}
    others = set().union(*(names(m) for m in d['syms'] if m != 'gee_polygons.cli'))
    assert not ours & others, ours & others
    assert all(f.__name__ == f'{n}_command' for n, f in COMMANDS.items())
    text = (ROOT/'pyproject.toml').read_text()
    assert 'gee-polygons = "gee_polygons.cli:main"' in text and callable(cli.main)


def test_map_draws_a_site_locally_and_from_earth_engine(capsys, in_tmp):
    from PIL import Image
    from gee_polygons.evaluator import sample_evaluator
    code, out, err = call(capsys, 'map', '--sample', '--site', 'site_20', '--years', '2020', '--out', 'local.png')
    assert code == 0 and out.strip() == 'wrote local.png' and imread(in_tmp/'local.png').ndim == 3
    code, out, err = call(capsys, 'map', '--sample', '--site', 'site_20', '--years', '2010,2016,2023', '--out', 'strip.png')
    assert code == 0 and imread(in_tmp/'strip.png').shape[1] > imread(in_tmp/'local.png').shape[1]
    code, out, err = call(capsys, 'map', '--sample', '--site', 'site_20', '--years', '2010-2013', '--out', 'a.gif', '--dpi', '40')
    with Image.open(in_tmp/'a.gif') as g: assert code == 0 and g.n_frames == 4
    with Emulator(evaluate=sample_evaluator(), out_dir=in_tmp/'ee') as e:
        code, out, err = call(capsys, 'map', '--sample', '--site', 'site_20', '--years', '2020', '--engine', 'ee', '--out', 'ee.png',
                              '--ee-url', e.url)
        assert code == 0, err
        assert [x['path'].rsplit('/', 1)[-1].split(':')[-1] for x in e.log if 'thumbnails' in x['path']] == ['thumbnails', 'getPixels']
    assert imread(in_tmp/'ee.png').ndim == 3
    one_line_error(*call(capsys, 'map', '--sample', '--site', 'nope', '--out', 'x.png'), "No site 'nope' in the sites file")
    one_line_error(*call(capsys, 'map', '--sample', '--site', 'site_20', '--out', 'x.tif'), 'Give --out FILE.png')
    one_line_error(*call(capsys, 'map', '--sample', '--site', 'site_20', '--years', '1990', '--out', 'x.png'), 'no data for [1990]')


def test_extract_and_chart_transitions(capsys, in_tmp):
    from gee_polygons.result import TRANSITION_SCHEMA
    code, out, err = call(capsys, 'extract', '--sample', '--years', '2010,2016,2023', '--transitions', '--out', 'moves.parquet',
                          '--chart', 'flows.png', '--no-progress')
    assert code == 0, err
    tt = pd.read_parquet(in_tmp/'moves.parquet')
    assert list(tt.columns) == list(TRANSITION_SCHEMA) and sorted(set(zip(tt.year_from, tt.year_to))) == [(2010, 2016), (2016, 2023)]
    res = SiteCollection.from_file(sample_sites_path()).extract_transitions(SAMPLE_LAYER, [2010, 2016, 2023], source=sample_raster_path(),
                                                                           progress=False)
    pd.testing.assert_frame_equal(tidy(tt, TRANSITION_SCHEMA), res.data)
    from gee_polygons.provenance import read_provenance
    untimed = lambda p: p and {k: v for k, v in p.items() if k != 'created'}
    assert untimed(read_provenance(in_tmp/'moves.parquet')) == untimed(getattr(res, 'provenance', None))  # the result's record, in the file
    assert imread(in_tmp/'flows.png').ndim == 3
    for args in (('--pair', '2016,2023', '--share'), ('--site', 'site_20')):
        code, out, err = call(capsys, 'chart', '--table', 'moves.parquet', '--layer', 'sample', '--out', 'm.png', '--transitions', *args)
        assert code == 0 and imread(in_tmp/'m.png').ndim == 3, err
    one_line_error(*call(capsys, 'chart', '--table', 'moves.parquet', '--layer', 'sample', '--out', 'm.png'), 'add --transitions')
    one_line_error(*call(capsys, 'extract', '--sample', '--years', '2016', '--transitions', '--out', 'm.csv'), 'at least two --years')


def test_sites_without_pixels_are_warnings_not_missing_data():
    from types import SimpleNamespace as NS
    missing = pd.DataFrame({'site_id': ['a', 'b', 'c'], 'year': [2020] * 3, 'chunk': ['0'] * 3,
                            'reason': ['no rows in the chunk file', 'no rows in the chunk file', 'chunk file missing']})
    res = NS(missing=missing, warnings=[('a', 'no classified pixels in 2020')])
    assert cli.real_missing(res).site_id.tolist() == ['b', 'c']  # 'a' is reported as a warning, not as lost rows


def test_collect_missing_says_why_when_the_manifest_is_refused(capsys, in_tmp, emu):
    export_sample(capsys, emu, 'drive:gee_exports', 'job.json')
    m = json.loads((in_tmp/'job.json').read_text()); m['chunks'].pop(1); (in_tmp/'job.json').write_text(json.dumps(m))
    code, out, err = call(capsys, 'collect', '--manifest', 'job.json', '--source', Path(emu.out_dir)/'drive', '--out', 'c.csv',
                          '--missing', 'gaps.csv')
    one_line_error(code, out, err, 'No --missing list was written')
    assert not (in_tmp/'gaps.csv').exists()

def test_other_libraries_deprecation_notes_are_not_the_users_warnings(capsys, in_tmp):
    "Other libraries' deprecation notes and ResourceWarnings are for developers: the CLI shows them to nobody; ours still show."
    import warnings
    def noisy(argv):
        warnings.warn_explicit('Use `@` matmul instead of `*` mul operator', PendingDeprecationWarning, 'windows.py', 1, module='rasterio.windows')
        warnings.warn_explicit('Implicitly cleaning up <TemporaryDirectory>', ResourceWarning, 'tempfile.py', 1, module='tempfile')
        warnings.warn_explicit('old spelling', DeprecationWarning, 'layers.py', 1, module='gee_polygons.layers')
        return 0
    old = cli.run_command
    cli.run_command = lambda name, argv: noisy(argv)
    try: assert cli._run('map', []) == 0
    finally: cli.run_command = old
    err = capsys.readouterr().err
    assert 'matmul' not in err and 'Implicitly' not in err and 'gee-polygons map: warning: old spelling' in err

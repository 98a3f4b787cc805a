"Tests of gee_polygons.testing.offline(): the design's example runs verbatim inside it, and nothing waits forever."
import contextlib, io, os, shutil, subprocess, sys, textwrap, time
from pathlib import Path
import pandas as pd, pytest
import ee
from gee_polygons.testing import offline, OfflineService, restore_client
from gee_polygons.sample_data import sample_sites_path, preset_sources, SAMPLE_YEARS

# The example of the design this project implements, character for character.
DESIGN_EXAMPLE = '''
sites = SiteCollection.from_geojson('all_sites.geojson', lazy=True)
dest = ExportDestination(type='drive', folder='mapbiomas_exports')
config = ExportConfig(chunk_size=100, max_concurrent=3)
tasks = sites.export_categorical(MAPBIOMAS_LULC, years=range(2010, 2024), destination=dest, config=config)
print(f"Submitted {len(tasks.task_ids)} export tasks")
tasks.wait(timeout_minutes=120)
print(tasks.summary())
print(tasks.results_info())
'''
# ... with the imports its docstrings name (gee-polygons 0.0.4: gee_polygons.export, gee_polygons.datasets.mapbiomas).
IMPORTS = '''
from gee_polygons import SiteCollection
from gee_polygons.export import ExportDestination, ExportConfig
from gee_polygons.datasets.mapbiomas import MAPBIOMAS_LULC
'''

@pytest.fixture
def trial(tmp_path, monkeypatch):
    "A working folder holding the sample sites as all_sites.geojson, made the current directory."
    shutil.copy(sample_sites_path(), tmp_path / 'all_sites.geojson')
    monkeypatch.chdir(tmp_path)
    restore_client()
    return tmp_path

def run_example(svc) -> tuple:
    "Run the design's example verbatim; (its namespace, what it printed, seconds taken)."
    ns, out, t0 = {}, io.StringIO(), time.monotonic()
    exec(IMPORTS, ns)
    with contextlib.redirect_stdout(out): exec(DESIGN_EXAMPLE, ns)
    return ns, out.getvalue(), time.monotonic() - t0

def test_design_example_runs_verbatim_and_never_hangs(trial):
    with offline() as svc:
        ns, printed, secs = run_example(svc)
        files = sorted((svc.folder / 'drive' / 'mapbiomas_exports').glob('*.csv'))
        rows = pd.concat(pd.read_csv(f) for f in files)
    assert printed.splitlines()[0] == 'Submitted 1 export tasks'
    assert secs < 60, f'the example took {secs:.0f} s: wait() should end at its first polls offline'
    assert len(files) == 1 and sorted(rows['year'].unique()) == list(range(2010, 2024))
    assert set(rows['site_id']) <= set(ns['sites'].ids) and len(set(rows['site_id'])) >= 19  # site_07 is half outside
    classes = rows[rows['class_value'].notna()]  # the files also carry one coverage row per site and year (site_ha, ...)
    assert (classes['area_ha'] >= 0).all() and classes['fraction'].between(0, 1 + 1e-6).all()

def test_design_example_prints_what_it_promises(trial):
    with offline() as svc: ns, printed, _ = run_example(svc)
    tasks = ns['tasks']
    assert tasks.summary() == {'COMPLETED': 1}
    info = tasks.results_info()
    assert set(info) == set(tasks.task_ids)
    assert all({'destination_uris', 'chunk', 'output_url'} <= set(v) and v['chunk'] == (0, 20) for v in info.values())

def test_many_chunks_finish_within_the_throttle(trial):
    "Seven chunks, three at a time: wait() keeps submitting and still ends at once on the emulated clock."
    from gee_polygons import SiteCollection
    from gee_polygons.export import ExportDestination, ExportConfig
    from gee_polygons.sample_data import SAMPLE_LAYER
    sites = SiteCollection.from_geojson('all_sites.geojson')
    with offline() as svc:
        t0 = time.monotonic()
        tasks = sites.export_categorical(SAMPLE_LAYER, [2016, 2023], ExportDestination('cloud_storage', 'trial-bucket/runs'),
                                         ExportConfig(chunk_size=3, max_concurrent=3, poll_interval_sec=0.05))
        ok = tasks.wait(timeout_minutes=2, poll_interval_sec=0.05, progress=False)
        assert ok and time.monotonic() - t0 < 60
        assert svc.emulator.max_active <= 3
        assert len(list((svc.folder / 'gcs' / 'trial-bucket' / 'runs').glob('*.csv'))) == 7

def test_wait_gives_up_at_its_deadline(trial):
    "Tasks that would run for a year of emulated time: wait() returns False at its (real) deadline, it does not hang."
    from gee_polygons import SiteCollection
    from gee_polygons.export import ExportDestination, ExportConfig
    from gee_polygons.sample_data import SAMPLE_LAYER
    sites = SiteCollection.from_geojson('all_sites.geojson')
    with offline(task_seconds=3e7):
        tasks = sites.export_categorical(SAMPLE_LAYER, [2016], ExportDestination('drive', 'slow'), ExportConfig(chunk_size=10))
        t0 = time.monotonic()
        assert tasks.wait(timeout_minutes=0.02, poll_interval_sec=0.2, progress=False) is False
        assert time.monotonic() - t0 < 30

def test_service_object_folder_and_reset(tmp_path):
    out = tmp_path / 'exports'
    with offline(folder=out) as svc:
        assert isinstance(svc, OfflineService) and svc.url.startswith('http://127.0.0.1:') and svc.folder == out
        assert ee.data.is_initialized() and svc.emulator.url == svc.url
        assert set(svc.evaluator.assets) == set(preset_sources())
    assert out.is_dir() and not ee.data.is_initialized()
    with offline() as svc: tmp = svc.folder
    assert not tmp.exists()  # the default folder is temporary

def test_interactive_extraction_of_every_preset(trial):
    "Every preset answers offline: categorical ones as class areas, continuous ones as band statistics."
    from gee_polygons import SiteCollection
    from gee_polygons.datasets.registry import LAYERS
    sites = SiteCollection.from_geojson('all_sites.geojson')[:3]
    with offline():
        for name in ('mapbiomas_lulc', 'mapbiomas_deforestation', 'dynamic_world'):
            res = sites.extract_categorical(LAYERS[name], [2016, 2020], progress=False)
            assert len(res) > 0 and set(res['year']) == {2016, 2020} and not res.errors, (name, res.errors)
        for name, (a, b) in (('satellite_embedding', ('2020-01-01', '2022-01-01')), ('sentinel2', ('2020-01-01', '2021-01-01'))):
            res = sites.extract_continuous(LAYERS[name], a, b, progress=False)
            assert len(res) > 0 and not res.errors, (name, res.errors[:1])

def test_another_process_can_use_the_url(trial):
    "The url is a real server: a second process connects to it with gee_polygons.emulator.connect_client."
    code = textwrap.dedent('''
        import sys, ee
        from gee_polygons.emulator import connect_client
        connect_client(sys.argv[1], 'offline-project')
        print(len(ee.data.listOperations()))''')
    with offline() as svc:
        out = subprocess.run([sys.executable, '-c', code, svc.url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == '0'

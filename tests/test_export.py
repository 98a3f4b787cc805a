"Batch exports through the Earth Engine emulator: the real earthengine-api client, real HTTP on 127.0.0.1."
import json, os, subprocess, sys, time
from collections import Counter
import pytest
import ee
from gee_polygons import gateway, export as gx
from gee_polygons.emulator import Emulator, SimulatedCrash, crash_after, sites_over
from gee_polygons.export import ExportConfig, ExportDestination, ExportTask
from gee_polygons.layers import CategoricalLayer, ContinuousLayer
from gee_polygons.sites import Site, SiteCollection
from gee_polygons.testing import block_sockets, NetworkBlockedError
from gee_polygons.sample_data import square_sites  # tiny square sites

block_sockets()
LAYER = CategoricalLayer('projects/example/assets/lulc', {3: 'Forest', 15: 'Pasture'}, {3: '#1f8d49', 15: '#edde8e'},
                         years=range(2015, 2025), name='example')
DEST = ExportDestination('cloud_storage', 'my-bucket/exports')

def cfg(**kw) -> ExportConfig: return ExportConfig(**{'poll_interval_sec': 0.001, **kw})

def completed_ids(job) -> list:
    "Site ids of every COMPLETED chunk, in order."
    return [i for c in job.leaves if c.state == 'COMPLETED' for i in c.site_ids]

@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch):
    monkeypatch.setattr(gateway.policy, 'sleep', lambda s: None)

def test_sockets_blocked():
    with pytest.raises(NetworkBlockedError): __import__('socket').create_connection(('192.0.2.1', 443), timeout=1)

# ---- 40,000 sites, 800 tasks ---------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def big_job():
    "40,000 sites in 800 chunks of 50, max 10 concurrent; the emulator would run 50 at once, and its clock moves 5 s per poll."
    sites = square_sites(40_000)
    with Emulator(max_running=50, task_seconds=10, auto_advance=5, advance_on='/operations') as emu:
        emu.connect()
        t = time.perf_counter()
        job = sites.export_categorical(LAYER, [2020, 2021], DEST, cfg(chunk_size=50, max_concurrent=10))
        ok = job.wait(poll_interval_sec=0.001, progress=False)
        print(f'\n40,000 sites / 800 tasks exported in {time.perf_counter() - t:.1f} s')
        yield sites, emu, job, ok

def test_40k_never_more_than_10_active_and_all_complete(big_job):
    sites, emu, job, ok = big_job
    assert ok and len(job.leaves) == 800
    assert emu.max_active == 10  # the throttle filled, never overflowed, the 10 slots
    assert max(e['active'] for e in emu.log) <= 10
    assert Counter(o.state for o in emu.ops.values()) == {'SUCCEEDED': 800}
    assert sorted(Counter(o.description for o in emu.ops.values()).values()) == [1] * 800
    assert completed_ids(job) == sites.ids
    assert {o.n_features for o in emu.ops.values()} == {50}

def test_polls_ask_only_about_unfinished_tasks(big_job):
    sites, emu, job, ok = big_job
    n = len(emu.log)
    states = job.status()
    assert len(states) == 800 and len(emu.log) == n  # every task finished: a poll asks nothing
    # during the run: no listing pass at all (its cost grows with the project), only GETs of this job's own tasks
    assert not [e for e in emu.log if e['path'].endswith('/operations')]
    gets = [e['path'].rsplit('/', 1)[-1] for e in emu.log if e['method'] == 'GET' and '/operations/' in e['path']]
    assert set(gets) == set(job.task_ids)

# ---- crash and resume ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('when', ['after_start', 'before_start'])
def test_resume_after_crash_submits_no_chunk_twice(emulator, tmp_path, when):
    sites, path = square_sites(200), tmp_path/'job.json'
    c = cfg(chunk_size=10, max_concurrent=5, manifest=str(path))
    with pytest.raises(SimulatedCrash), crash_after(7, when=when):
        sites.export_categorical(LAYER, [2020], DEST, c)
    assert len(emulator.ops) == 7
    recorded = [ch for ch in ExportTask.load(path).leaves if ch.task_id]
    assert len(recorded) == (6 if when == 'after_start' else 7)  # the 7th start never reached the manifest
    job = sites.export_categorical(LAYER, [2020], DEST, c)
    assert job.wait(poll_interval_sec=0.001, progress=False)
    assert sorted(Counter(o.description for o in emulator.ops.values()).values()) == [1] * 20
    assert len(emulator.ops) == 20 and completed_ids(job) == sites.ids
    assert {ch.attempts for ch in job.leaves} == {1}
    assert set(job.task_ids) == set(emulator.ops)

def test_resume_of_finished_job_submits_nothing(emulator, tmp_path):
    sites, c = square_sites(30), cfg(chunk_size=10, manifest=str(tmp_path/'job.json'))
    assert sites.export_categorical(LAYER, [2020], DEST, c).wait(poll_interval_sec=0.001, progress=False)
    n = sum('table:export' in e['path'] for e in emulator.log)
    job = sites.export_categorical(LAYER, [2020], DEST, c)
    assert sum('table:export' in e['path'] for e in emulator.log) == n == 3
    assert dict(job.summary()) == {'COMPLETED': 3}

def test_load_in_a_new_process(emulator, tmp_path):
    sites, path = square_sites(30), tmp_path/'job.json'
    job = sites.export_categorical(LAYER, [2020], DEST, cfg(chunk_size=10, manifest=str(path)))
    assert job.wait(poll_interval_sec=0.001, progress=False)
    code = ('from gee_polygons.testing import block_sockets; block_sockets()\n'
            'from gee_polygons.emulator import connect_client; from gee_polygons.export import ExportTask\n'
            f'connect_client({emulator.url!r}, {emulator.project!r})\n'
            f'job = ExportTask.load({str(path)!r}); print(job.status()); print(repr(job))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == 'ExportTask(n=3, COMPLETED=3, RUNNING=0)'
    assert eval(out.stdout.splitlines()[0]) == {t: 'COMPLETED' for t in job.task_ids}

# ---- failures --------------------------------------------------------------------------------------------------------
def test_memory_errors_split_until_the_job_completes(emulator, tmp_path):
    emulator.fail_tasks(sites_over(12), 'User memory limit exceeded.')
    sites = square_sites(150)
    job = sites.export_categorical(LAYER, [2020], DEST, cfg(chunk_size=50, max_concurrent=10, manifest=str(tmp_path/'m.json')))
    assert job.wait(poll_interval_sec=0.001, progress=False)
    assert completed_ids(job) == sites.ids
    done = [o for o in emulator.ops.values() if o.state == 'SUCCEEDED']
    assert max(o.n_features for o in done) <= 12 and sum(o.n_features for o in done) == 150
    failed = [o for o in emulator.ops.values() if o.state == 'FAILED']
    assert sorted(o.n_features for o in failed) == [13] * 6 + [25] * 6 + [50] * 3  # 50 -> 25 -> 12 + 13 -> 6 + 7
    chunks = gx.Manifest.load(tmp_path/'m.json').chunks  # the lineage, as written to disk
    assert sorted(k for k, c in chunks.items() if c.state == 'SPLIT') == sorted(
        [f'{i:04d}{s}' for i in range(3) for s in ('', '_1', '_2', '_1_2', '_2_2')])
    for ch in chunks.values():
        if ch.state == 'SPLIT': assert [chunks[k].parent for k in ch.children] == [ch.key] * 2
        if ch.state == 'SPLIT': assert sum((chunks[k].site_ids for k in ch.children), []) == ch.site_ids
        else: assert ch.state == 'COMPLETED' and ch.error is None

def test_single_site_failure_is_reported_not_retried_forever(emulator):
    "A site failing at every size: tileScale 1, 4, 16, then 4 pieces, then 4 pieces of each; then reported, and no more tasks."
    emulator.fail_tasks(lambda body: 's00003' in json.dumps(body['expression']), 'User memory limit exceeded.')
    job = square_sites(8).export_categorical(LAYER, [2020], DEST, cfg(chunk_size=4))
    assert job.wait(poll_interval_sec=0.001, progress=False) is False
    failed = job.chunk_details(['FAILED'])
    assert len(failed) == 16 and {(tuple(f['site_ids']), f['error']) for f in failed} == {(('s00003',), 'User memory limit exceeded.')}
    assert [f['chunk'] for f in failed] == [f'0000_2_2_p{i}_p{j}' for i in range(4) for j in range(4)]
    assert job.failed_tasks() == [f['task_id'] for f in failed]
    assert failed[0]['eecu_seconds'] > 0
    s = job.summary()
    assert (s['FAILED'], s.errors) == (16, {'User memory limit exceeded.': 16}) and s.eecu_seconds > 0
    site_tasks = [o for o in emulator.ops.values() if 's00003' in json.dumps(o.body['expression'])]
    assert len(site_tasks) == 1 + 1 + 3 + 4 + 16  # its chunks of 4 and 2 sites, the site at 3 tileScales, 4 + 16 pieces

def test_transient_failures_are_retried_up_to_max_retries(emulator):
    emulator.fail_tasks(lambda body: body['description'].endswith('chunk_0001'), 'An internal error has occurred.')
    job = square_sites(20).export_categorical(LAYER, [2020], DEST, cfg(chunk_size=10, max_retries=2))
    assert job.wait(poll_interval_sec=0.001, progress=False) is False
    ch = job.manifest.chunks['0001']
    assert (ch.state, ch.attempts, len(set(ch.task_ids))) == ('FAILED', 3, 3)
    job.retry()  # a manual retry ignores max_retries
    assert job.manifest.chunks['0001'].attempts == 4

def test_http_faults_never_free_a_slot_or_duplicate_a_task(emulator):
    emulator.max_running = 2
    emulator.fail_http('/operations/', 503, times=6)
    emulator.fail_http('/operations/', 429, times=6)
    emulator.fail_http('table:export$', 500, times=3)
    job = square_sites(100).export_categorical(LAYER, [2020], DEST, cfg(chunk_size=10, max_concurrent=3))
    assert job.wait(poll_interval_sec=0.001, progress=False)
    assert emulator.max_active <= 3
    assert sorted(Counter(o.description for o in emulator.ops.values()).values()) == [1] * 10
    assert [r['fired'] for r in emulator.http_faults] == [6, 6, 3]

def test_full_project_queue_waits_and_completes(emulator):
    emulator.max_running, emulator.queue_limit = 1, 3
    job = square_sites(80).export_categorical(LAYER, [2020], DEST, cfg(chunk_size=10, max_concurrent=8))
    assert job.wait(poll_interval_sec=0.001, progress=False)
    refused = [e for e in emulator.log if e['status'] == 429]
    assert refused and len(emulator.ops) == 8

def test_wait_times_out(emulator):
    emulator.task_seconds = 10_000
    job = square_sites(20).export_categorical(LAYER, [2020], DEST, cfg(chunk_size=10))
    t = time.perf_counter()
    with pytest.warns(gx.ExportDeadlineWarning, match='stopped at its 0-minute deadline'):
        assert job.wait(timeout_minutes=0, poll_interval_sec=0.001, progress=False) is False
    assert time.perf_counter() - t < 5 and set(job.status().values()) == {'RUNNING'}

# ---- cancel ----------------------------------------------------------------------------------------------------------
def test_cancel_reaches_every_active_task(emulator):
    emulator.max_running, emulator.task_seconds = 3, 10_000
    job = square_sites(100).export_categorical(LAYER, [2020], DEST, cfg(chunk_size=10, max_concurrent=10))
    assert Counter(job.status().values()) == {'RUNNING': 3, 'READY': 7}
    cancelled = job.cancel()
    asked = {e['path'].rsplit('/', 1)[-1].removesuffix(':cancel') for e in emulator.log if e['path'].endswith(':cancel')}
    assert {t for t, ok in cancelled.items() if ok} == asked == set(emulator.ops) and len(asked) == 10
    emulator.advance(0)
    assert set(job.status().values()) == {'CANCELLED'}
    assert job.wait(poll_interval_sec=0.001, progress=False) is False

# ---- files and formats -----------------------------------------------------------------------------------------------
def test_files_land_where_results_info_says(emulator):
    dest = ExportDestination('drive', 'my_exports', file_prefix='lulc', file_format='GeoJSON')
    layer = ContinuousLayer('COPERNICUS/S2_SR_HARMONIZED', ['B4', 'B8'], scale=10)
    job = square_sites(25).export_continuous(layer, '2020-01-01', '2021-01-01', dest, config=cfg(chunk_size=10))
    assert job.wait(poll_interval_sec=0.001, progress=False)
    info = job.results_info()
    assert [i['output_url'] for i in info.values()] == [[f'drive://my_exports/lulc_{job.job_id}_chunk_{i:04d}.geojson'] for i in range(3)]
    assert [i['chunk'] for i in info.values()] == [(0, 10), (10, 20), (20, 25)]
    for tid, i in info.items():
        op = emulator.ops[tid]
        assert op.path.name == i['output_url'][0].rsplit('/', 1)[-1] and op.path.exists()
        assert op.body['selectors'] == ['site_id', 'period', 'B4', 'B8', 'valid_count', 'site_n', 'ever_n', 'job_id']  # coverage, job id
        assert op.body['fileExportOptions']['fileFormat'] == 'GEO_JSON'
        assert i['destination_uris'] == op.uris and i['state'] == 'COMPLETED'

def test_dry_run_submits_nothing(emulator):
    plan = square_sites(120).export_categorical(LAYER, [2020, 2021], DEST, cfg(chunk_size=50), dry_run=True)
    assert (plan.n_tasks, plan.sites_per_task) == (3, [50, 50, 20])
    assert plan.bytes_per_task[0] > plan.bytes_per_task[2] > 0
    assert not [e for e in emulator.log if e['method'] == 'POST']

def test_oversized_chunks_are_split_before_submission(emulator, monkeypatch):
    sites = square_sites(40)
    full = sites.export_categorical(LAYER, [2020], DEST, cfg(chunk_size=40), dry_run=True).bytes_per_task[0]
    monkeypatch.setattr(gx, 'MAX_REQUEST_BYTES', full - 1)
    job = sites.export_categorical(LAYER, [2020], DEST, cfg(chunk_size=40))
    assert job.wait(poll_interval_sec=0.001, progress=False)
    assert [c.n_sites for c in job.leaves] == [20, 20] and all(c.bytes < full for c in job.leaves)
    assert job.manifest.chunks['0000'].error == f'Request of {full:,} bytes exceeds the 10 MB limit.'
    assert [e['summary']['features'] for e in emulator.log if e['path'].endswith('table:export')] == [20, 20]

# ---- every bad value gets its own clear error ----------------------------------------------------------------------------
BAD = [(lambda: ExportDestination('s3', 'b'), "type must be 'drive' or 'cloud_storage', not 's3'"),
       (lambda: ExportDestination('drive', ''), 'folder is empty: give a Drive folder name'),
       (lambda: ExportDestination('cloud_storage', ''), "folder is empty: give 'bucket/optional/prefix'"),
       (lambda: ExportDestination('cloud_storage', 'UPPER/x'), "has characters ['E', 'P', 'R', 'U']"),
       (lambda: ExportDestination('cloud_storage', 'ab'), 'must be 3-63 characters long'),
       (lambda: ExportDestination('cloud_storage', '_bucket'), 'must start and end with a letter or digit'),
       (lambda: ExportDestination('cloud_storage', '10.0.0.1'), 'must not look like an IP address'),
       (lambda: ExportDestination('cloud_storage', 'google-data'), 'must not start with "goog" or contain "google"'),
       (lambda: ExportDestination('cloud_storage', 'bkt//x'), 'empty path segment'),
       (lambda: ExportDestination('drive', '../x'), "Drive folder '../x' has a '..' segment"),
       (lambda: ExportDestination('cloud_storage', 'bkt/a/../../b'), "Cloud Storage folder 'bkt/a/../../b' has a '..' segment"),
       (lambda: ExportDestination('drive', '/home/me'), "Drive folder '/home/me' is an absolute path"),
       (lambda: ExportDestination('drive', 'a\\b'), 'has a backslash'),
       (lambda: ExportDestination('drive', 'a\tb'), 'has control characters'),
       (lambda: ExportDestination('drive', 'f', file_prefix='a/b'), "file_prefix 'a/b' has characters ['/']"),
       (lambda: ExportDestination('drive', 'f', file_prefix=''), 'file_prefix is empty'),
       (lambda: ExportDestination('drive', 'f', file_format='SHP'), "file_format must be 'CSV' or 'GeoJSON', not 'SHP'"),
       (lambda: ExportConfig(chunk_size=0), 'chunk_size must be a whole number at least 1, not 0'),
       (lambda: ExportConfig(max_concurrent=True), 'max_concurrent must be a whole number between 1 and 3000, not True'),
       (lambda: ExportConfig(max_pending=5000), 'max_pending must be a whole number between 10 and 3000, not 5000'),
       (lambda: ExportConfig(max_retries=-2), 'max_retries must be a whole number at least 0, not -2'),
       (lambda: ExportConfig(description_prefix='a b'), 'description_prefix must be 1-60'),
       (lambda: ExportConfig(poll_interval_sec=-1), 'poll_interval_sec must be a positive number of seconds, not -1'),
       (lambda: ExportConfig(split_on_failure=None), 'split_on_failure must be True or False, not None'),
       (lambda: ExportConfig(manifest='/nonexistent/dir/m.json'), "manifest '/nonexistent/dir/m.json' does not exist")]

@pytest.mark.parametrize('make,message', BAD)
def test_bad_value_has_its_own_clear_error(make, message):
    with pytest.raises((ValueError, FileNotFoundError)) as e: make()
    assert message in str(e.value)
    assert '\n' not in str(e.value)

def test_bad_value_messages_are_distinct():
    msgs = []
    for make, _ in BAD:
        try: make()
        except (ValueError, FileNotFoundError) as e: msgs.append(str(e))
    assert len(set(msgs)) == len(BAD)

def test_manifest_of_another_job_is_refused(emulator, tmp_path):
    c = cfg(chunk_size=10, manifest=str(tmp_path/'job.json'))
    square_sites(20).export_categorical(LAYER, [2020], DEST, c)
    with pytest.raises(ValueError, match=r"different export job \(differs in \['years'\]\)"):
        square_sites(20).export_categorical(LAYER, [2021], DEST, c)
    (tmp_path/'junk.json').write_text('not json')
    with pytest.raises(ValueError, match='is not a gee_polygons export manifest'): ExportTask.load(tmp_path/'junk.json')

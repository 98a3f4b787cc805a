"Export jobs that never mix, double or hang (issue 9): the real client over real HTTP against the emulator, real processes."
import json, os, socket, subprocess, sys, time
from collections import Counter
from pathlib import Path
import pytest
from gee_polygons.sample_data import square_sites
from gee_polygons import gateway, export as gx
from gee_polygons.emulator import Emulator, SimulatedCrash, crash_after
from gee_polygons.export import ExportConfig, ExportDestination, ExportTask, ExportDeadlineWarning
from gee_polygons.jobs import Manifest, ManifestLock, ManifestLockedError, check_coverage
from gee_polygons.layers import CategoricalLayer
from gee_polygons.sites import SiteCollection
from gee_polygons.testing import block_sockets

block_sockets()
TESTS = Path(__file__).resolve().parent
LAYER = CategoricalLayer('projects/example/assets/lulc', {3: 'Forest', 15: 'Pasture'}, {3: '#1f8d49', 15: '#edde8e'},
                         years=range(2015, 2025), name='example')

def cfg(**kw) -> ExportConfig: return ExportConfig(**{'poll_interval_sec': 0.001, **kw})

def exports(emu) -> list:
    "Descriptions of every export request the server accepted."
    return [o.description for o in emu.ops.values()]

@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch):
    monkeypatch.setattr(gateway.policy, 'sleep', lambda s: None)

# ---- a job in a child process ------------------------------------------------------------------------------------------
CHILD = r'''
import json, os, sys
from gee_polygons.testing import block_sockets; block_sockets()
from gee_polygons.emulator import connect_client
from gee_polygons import export as gx, gateway
sys.path.insert(0, {tests!r}); from test_jobs import LAYER
from gee_polygons.sample_data import square_sites
gateway.policy.sleep = lambda s: None
a = json.loads(sys.argv[1])
connect_client(a['url'])
if a.get('die_after'):  # die for real (no cleanup) right after this many starts, before the manifest records the last
    n = [0]
    def hook(point, chunk):
        if point == 'after_start':
            n[0] += 1
            if n[0] == a['die_after']: os._exit(137)
    gx._checkpoints.append(hook)
cfg = gx.ExportConfig(chunk_size=a['chunk'], max_concurrent=a.get('max_concurrent', 10), poll_interval_sec=0.001,
                      manifest=a['manifest'])
try:
    job = square_sites(a['n'], a.get('prefix', 's')).export_categorical(LAYER, a.get('years', [2020]),
                                                                   gx.ExportDestination('drive', a.get('folder', 'shared')), cfg)
    ok = job.wait(timeout_minutes=a.get('timeout', 5), poll_interval_sec=0.001, progress=False)
except gx.ManifestLockedError as e:
    print(e, file=sys.stderr); sys.exit(3)
print(json.dumps(dict(ok=ok, job_id=job.job_id)))
sys.exit(0 if ok else 1)
'''

def child(**args) -> subprocess.Popen:
    "Start an export job in a fresh process (see CHILD for `args`)."
    return subprocess.Popen([sys.executable, '-c', CHILD.format(tests=str(TESTS)), json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def until(cond, timeout=60):
    "Wait until `cond()` is true (or fail after `timeout` seconds)."
    t = time.monotonic()
    while not cond():
        if time.monotonic() - t > timeout: raise TimeoutError('condition not met')
        time.sleep(0.02)

# ---- job identity ----------------------------------------------------------------------------------------------------------
def test_two_jobs_in_one_folder_never_collide_and_collect_keeps_each_jobs_rows(tmp_path):
    from gee_polygons.results import collect
    from gee_polygons.testing import sample_evaluator
    from gee_polygons.sample_data import SAMPLE_LAYER, SAMPLE_YEARS, sample_sites_path
    sites, dest = SiteCollection.from_file(sample_sites_path()), ExportDestination('drive', 'shared')  # default file_prefix
    with Emulator(evaluate=sample_evaluator(), out_dir=tmp_path/'out', max_running=4, task_seconds=10, auto_advance=5) as emu:
        emu.connect()
        jobs = [sites.export_categorical(SAMPLE_LAYER, ys, dest, cfg(chunk_size=5), manifest=tmp_path/f'job{i}.json')
                for i, ys in enumerate([SAMPLE_YEARS[:2], SAMPLE_YEARS[2:4]])]
        assert all(j.wait(poll_interval_sec=0.001, progress=False) for j in jobs)
    a, b = jobs
    assert a.job_id != b.job_id and len(set(exports(emu))) == 8
    files = sorted(p.name for p in (tmp_path/'out'/'drive'/'shared').iterdir())
    assert len(files) == 8 and {f.split('_')[1] for f in files} == {a.job_id, b.job_id}  # extraction_<job id>_chunk_...
    for job, ys in zip(jobs, [SAMPLE_YEARS[:2], SAMPLE_YEARS[2:4]]):
        res = collect(job, source=tmp_path/'out'/'drive'/'shared')
        assert res.complete and sorted(res.data['year'].unique()) == list(ys)
        assert sorted(res.data['site_id'].unique()) == sorted(sites.ids)

def test_descriptions_carry_the_job_id_and_stay_within_100_characters(emulator):
    job = square_sites(3).export_categorical(LAYER, [2020], ExportDestination('drive', 'f', 'lulc'),
                                        cfg(chunk_size=1, description_prefix='p' * 60))
    assert job.wait(poll_interval_sec=0.001, progress=False)
    descs = exports(emulator)
    assert all(len(d) <= 100 and f'_{job.job_id}_cat_chunk_' in d for d in descs) and len(set(descs)) == 3
    assert [c.file_prefix for c in job.leaves] == [f'lulc_{job.job_id}_chunk_{i:04d}' for i in range(3)]

# ---- crash recovery adopts only this job's tasks -------------------------------------------------------------------------
def test_resume_adopts_only_its_own_orphan_with_another_jobs_orphan_present(emulator, tmp_path):
    sites, dest = square_sites(40), ExportDestination('drive', 'shared')
    c = lambda name: cfg(chunk_size=10, max_concurrent=4, manifest=str(tmp_path/name))  # same description prefix for both
    for name, years in (('b.json', [2021]), ('a.json', [2020])):
        with pytest.raises(SimulatedCrash), crash_after(2):  # the 2nd task is started but never recorded
            sites.export_categorical(LAYER, years, dest, c(name))
    b_id, a_id = (Manifest.load(tmp_path/n).job['job_id'] for n in ('b.json', 'a.json'))
    orphans = {o.id: o.description for o in emulator.ops.values()}
    assert len(orphans) == 4
    a = sites.export_categorical(LAYER, [2020], dest, c('a.json'))
    adopted = a.manifest.chunks['0001']
    assert adopted.attempts == 1 and a_id in orphans[adopted.task_id]  # its own orphan
    assert all(b_id not in orphans.get(t, a_id) for t in a.task_ids)  # never the other job's
    b = sites.export_categorical(LAYER, [2021], dest, c('b.json'))
    assert a.wait(poll_interval_sec=0.001, progress=False) and b.wait(poll_interval_sec=0.001, progress=False)
    assert sorted(Counter(exports(emulator)).values()) == [1] * 8  # 4 chunks per job, each started once
    assert set(a.task_ids) | set(b.task_ids) == set(emulator.ops) and not set(a.task_ids) & set(b.task_ids)

def test_recovery_does_not_depend_on_listing_order(tmp_path):
    for order in ('newest', 'oldest', 'random'):
        with Emulator(max_running=10, task_seconds=10, auto_advance=5, list_order=order) as emu:
            emu.connect()
            c = cfg(chunk_size=5, manifest=str(tmp_path/f'{order}.json'))
            with pytest.raises(SimulatedCrash), crash_after(3): square_sites(20).export_categorical(LAYER, [2020], DEST_F, c)
            job = square_sites(20).export_categorical(LAYER, [2020], DEST_F, c)
            assert job.wait(poll_interval_sec=0.001, progress=False)
            assert len(emu.ops) == 4 and job.manifest.chunks['0002'].task_id in emu.ops

DEST_F = ExportDestination('drive', 'f')

# ---- one writer per manifest -------------------------------------------------------------------------------------------------
def test_second_process_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path):
    path = tmp_path/'job.json'
    with Emulator(max_running=0, task_seconds=10, auto_advance=5) as emu:  # nothing runs until max_running is raised
        holder = child(url=emu.url, manifest=str(path), n=30, chunk=5, max_concurrent=2, timeout=5)
        try:
            until(lambda: len(emu.ops) == 2 and Path(f'{path}.owner').exists())  # submitting, and blocked on the throttle
            second = child(url=emu.url, manifest=str(path), n=30, chunk=5, max_concurrent=2)
            out, err = second.communicate(timeout=120)
            assert second.returncode == 3, err
            assert err.strip().splitlines()[-1:] == [f"Manifest '{path}' is in use by another process (pid {holder.pid} on "
                                                f"{socket.gethostname()} since {json.loads(Path(f'{path}.owner').read_text())['since']}): "
                                                'let it finish or stop it, then run this again.']
            assert len(emu.ops) == 2  # the second process never reached the service
        finally: holder.kill(); holder.wait()
        assert json.loads(Path(f'{path}.owner').read_text())['pid'] == holder.pid  # the dead holder's record remains
        emu.max_running = 10
        emu.connect()
        job = square_sites(30).export_categorical(LAYER, [2020], ExportDestination('drive', 'shared'),
                                             cfg(chunk_size=5, max_concurrent=2, manifest=str(path)))  # takes the lock over
        assert job.wait(poll_interval_sec=0.001, progress=False)
        assert sorted(Counter(exports(emu)).values()) == [1] * 6 and not Path(f'{path}.owner').exists()

def test_status_reads_without_the_lock_and_never_overwrites_the_writer(emulator, tmp_path):
    path = tmp_path/'job.json'
    emulator.max_running = 0
    job = square_sites(20).export_categorical(LAYER, [2020], DEST_F, cfg(chunk_size=5, max_concurrent=4, manifest=str(path)))
    hold = ('import sys, time; from gee_polygons.jobs import ManifestLock\n'
            'lk = ManifestLock(sys.argv[1]); lk.acquire(); print("holding", flush=True); time.sleep(120)')
    writer = subprocess.Popen([sys.executable, '-c', hold, str(path)], stdout=subprocess.PIPE, text=True)
    try:  # another process holds the manifest
        assert writer.stdout.readline().strip() == 'holding'
        reader, before = ExportTask.load(path), path.read_text()
        assert set(reader.status().values()) == {'READY'}  # reads fine
        assert path.read_text() == before and not reader.manifest.save()  # but never writes
        n = len(emulator.log)
        with pytest.raises(ManifestLockedError, match=f'pid {writer.pid} on '): reader.cancel()
        assert len(emulator.log) == n
    finally: writer.kill(); writer.wait()

# ---- nothing hangs ---------------------------------------------------------------------------------------------------------
def test_deadline_during_submission_returns_false_with_the_manifest_saved(emulator, tmp_path):
    path, sites = tmp_path/'job.json', square_sites(50)
    emulator.max_running = 0  # tasks never start: the throttle would wait forever
    with pytest.warns(ExportDeadlineWarning, match='stopped at its 0.02-minute deadline with 8 chunks not submitted and 2 unfinished'):
        job = sites.export_categorical(LAYER, [2020], DEST_F, cfg(chunk_size=5, max_concurrent=2, manifest=str(path)),
                                       timeout_minutes=0.02)
    on_disk = Counter(c.state for c in Manifest.load(path).chunks.values())
    assert on_disk == {'UNSUBMITTED': 8, 'READY': 2} == Counter(c.state for c in job.leaves)
    with pytest.warns(ExportDeadlineWarning, match=f"manifest '{path}' is saved"):
        assert job.wait(timeout_minutes=0.02, poll_interval_sec=0.001, progress=False) is False
    emulator.max_running = 10
    assert job.wait(poll_interval_sec=0.001, progress=False) and len(emulator.ops) == 10

def test_finished_operations_dropping_out_of_the_listing_change_nothing(tmp_path):
    with Emulator(max_running=10, task_seconds=10, auto_advance=5, list_retention=0) as emu:
        emu.connect()
        c = cfg(chunk_size=5, manifest=str(tmp_path/'job.json'))
        with pytest.raises(SimulatedCrash), crash_after(3): square_sites(30).export_categorical(LAYER, [2020], DEST_F, c)
        job = square_sites(30).export_categorical(LAYER, [2020], DEST_F, c)
        assert job.wait(poll_interval_sec=0.001, progress=False)
        emu.forget()  # every finished operation leaves the listing
        again = square_sites(30).export_categorical(LAYER, [2020], DEST_F, c)  # resuming a finished job
        assert dict(again.summary()) == {'COMPLETED': 6} and len(emu.ops) == 6

def test_a_task_forgotten_by_get_too_is_lost_and_resubmitted_with_its_lineage(emulator, tmp_path):
    emulator.max_running = 0
    job = square_sites(20).export_categorical(LAYER, [2020], DEST_F, cfg(chunk_size=5, max_concurrent=4, manifest=str(tmp_path/'j.json')))
    first = job.manifest.chunks['0001'].task_id
    emulator.forget([first], get=True)
    assert job.status()[first] == 'LOST'
    assert job.summary(refresh=False)['LOST'] == 1 and job.chunk_details(['LOST'], refresh=False)[0]['task_ids'] == [first]
    emulator.max_running = 10
    assert job.wait(poll_interval_sec=0.001, progress=False)
    ch = job.manifest.chunks['0001']
    assert ch.task_ids[0] == first and len(ch.task_ids) == 2 and ch.state == 'COMPLETED'
    emulator.forget(get=True)  # forgetting finished tasks, even from GET, changes nothing now
    assert set(job.status().values()) == {'COMPLETED'}

# ---- what the manifest must hold ----------------------------------------------------------------------------------------------
def test_job_meta_is_on_disk_before_the_first_start(emulator, tmp_path):
    path = tmp_path/'job.json'
    with pytest.raises(SimulatedCrash), crash_after(0, when='before_start'):
        square_sites(10).export_categorical(LAYER, [2020], DEST_F, cfg(chunk_size=5, manifest=str(path)),
                                       job_meta={'cli': {'sites': 'farms.gpkg', 'layer': 'example'}})
    assert Manifest.load(path).job['meta'] == {'cli': {'sites': 'farms.gpkg', 'layer': 'example'}} and not emulator.ops

@pytest.mark.parametrize('edit,message', [
    (lambda d: d['chunks'][0].update(colour='red'), "chunk 0 has unknown fields ['colour']"),
    (lambda d: d['chunks'][1].pop('end'), "chunk 1 lacks the fields ['end']"),
    (lambda d: d['chunks'][0].update(attempts='1'), 'chunk 0 has a attempts of the wrong type'),
    (lambda d: d['job'].pop('config'), 'its job has no "config" object'),
    (lambda d: d['job']['config'].update(max_concurrent=0), "job's settings are refused (max_concurrent must be"),
    (lambda d: d['job']['destination'].update(folder='../x'), "job's settings are refused (Drive folder '../x'"),
    (lambda d: d.update(chunks={}), 'it has no "job" object and "chunks" list')])
def test_hand_edited_manifest_is_one_line(emulator, tmp_path, edit, message):
    path = tmp_path/'job.json'
    square_sites(10).export_categorical(LAYER, [2020], DEST_F, cfg(chunk_size=5, manifest=str(path)))
    d = json.loads(path.read_text()); edit(d); path.write_text(json.dumps(d))
    with pytest.raises(ValueError) as e: ExportTask.load(path)
    assert message in str(e.value) and '\n' not in str(e.value) and str(path) in str(e.value)

@pytest.mark.parametrize('edit,message', [
    (lambda d: d['chunks'].pop(1), 'sites 5-9 are in no chunk'),
    (lambda d: d['chunks'].append(dict(d['chunks'][0], key='0009')), 'sites 0-4 are in more than one chunk (0000 and 0009)'),
    (lambda d: d['chunks'][0]['site_ids'].reverse(), "their site ids differ from the job's")])
def test_chunks_must_cover_the_sites_exactly_once(emulator, tmp_path, edit, message):
    path = tmp_path/'job.json'
    square_sites(10).export_categorical(LAYER, [2020], DEST_F, cfg(chunk_size=5, manifest=str(path)))
    check_coverage(Manifest.load(path))
    d = json.loads(path.read_text()); edit(d); path.write_text(json.dumps(d))
    with pytest.raises(ValueError) as e: check_coverage(Manifest.load(path))
    assert str(e.value) == (f"Manifest '{path}' does not cover the job's 10 sites exactly once: {message}. "
                            'Restore the manifest, or export again with a new manifest path.')

def test_contract_of_the_seed_api(emulator):
    import dataclasses
    assert all(dataclasses.is_dataclass(c) for c in (ExportDestination, ExportConfig, ExportTask))
    assert [f.name for f in dataclasses.fields(ExportTask)][:4] == ['task_ids', 'destination', 'config', 'chunk_mapping']
    job = square_sites(20).export_categorical(LAYER, [2020], DEST_F, cfg(chunk_size=10))
    assert job.wait(poll_interval_sec=0.001, progress=False) is True
    watch = ExportTask(job.task_ids, DEST_F, cfg(), job.chunk_mapping)
    assert watch.status() == {t: 'COMPLETED' for t in job.task_ids} and watch.summary() == {'COMPLETED': 2}
    assert watch.completed_tasks() == job.task_ids and watch.failed_tasks() == watch.running_tasks() == []
    info = job.results_info()
    assert [(i['chunk'], len(i['destination_uris']), len(i['output_url'])) for i in info.values()] == [((0, 10), 1, 1), ((10, 20), 1, 1)]
    assert watch.cancel() == {t: False for t in job.task_ids}

"""Soak test (issue 9): two export jobs of 400 tasks each (800 in all) run at once in one emulated project and one shared
folder, each in its own process, under 429/503 request faults, transient task failures and memory failures (which split
chunks); each process is killed once, right after starting a task and before recording it, and resumed. The server's
own records must show: no site lost, no chunk run twice, never more than max_concurrent active tasks per job, and
every collected row in its own job's table."""
import json, re, subprocess, sys
from collections import Counter, defaultdict
import pytest
from gee_polygons.emulator import Emulator, site_ids
from gee_polygons.testing import block_sockets
from test_jobs import child  # the child process runs test_jobs.CHILD
from gee_polygons.sample_data import square_sites

block_sockets()
N_SITES, CHUNK, MAX_CONCURRENT = 1600, 4, 10  # 400 chunks per job

def rows(expression) -> list:
    "One Forest row per site of the request: cheap, and enough to tell every site and job apart."
    return [dict(site_id=s, year=2020, class_value=3, class_name='Forest', count=1, area_ha=0.05, fraction=1.0)
            for s in site_ids(expression)]

def first_attempt_of(every:int, seen=None):
    "A `fail_tasks` rule: the first task of every `every`-th chunk fails (its retry succeeds)."
    seen = set() if seen is None else seen
    def rule(body):
        m = re.search(r'_chunk_(\d{4})$', body['description'])
        if not m or int(m[1]) % every or body['description'] in seen: return False
        seen.add(body['description']); return True
    return rule

def most_active(ops) -> int:
    "The most operations active at once, from their creation and end times on the server's clock."
    events = sorted([(o.created, 1) for o in ops] + [(o.ended, -1) for o in ops if o.ended is not None], key=lambda e: (e[0], e[1]))
    n = peak = 0
    for _, d in events: n += d; peak = max(peak, n)
    return peak

@pytest.fixture(scope='module')
def soak(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('soak')
    emu = Emulator(max_running=2 * MAX_CONCURRENT, task_seconds=10, auto_advance=2, evaluate=rows, out_dir=tmp/'out')
    with emu:
        emu.fail_http('/operations/', 'unavailable', times=40, method='GET')
        emu.fail_http('table:export$', 'quota', times=20)
        emu.fail_http('table:export$', 'unavailable', times=20)
        emu.fail_tasks(first_attempt_of(23), 'unavailable')  # transient: retried unchanged
        emu.fail_tasks(lambda b: int(re.search(r'_chunk_(\d{4})', b['description'])[1]) % 37 == 5
                       and len(site_ids(b['expression'])) > 1, 'memory')  # split down to single sites
        args = {p: dict(url=emu.url, manifest=str(tmp/f'{p}.json'), n=N_SITES, chunk=CHUNK, prefix=p, max_concurrent=MAX_CONCURRENT,
                        timeout=10) for p in 'ab'}
        killed = {p: child(**args[p], die_after=k) for p, k in (('a', 120), ('b', 170))}
        died = {p: proc.wait(timeout=600) for p, proc in killed.items()}
        resumed = {p: child(**args[p]) for p in 'ab'}
        done = {p: proc.communicate(timeout=600) + (proc.returncode,) for p, proc in resumed.items()}
        yield emu, tmp, died, done

def test_both_jobs_were_killed_and_resumed_to_completion(soak):
    emu, tmp, died, done = soak
    assert died == {'a': 137, 'b': 137}
    for p, (out, err, code) in done.items(): assert code == 0, err[-2000:]
    assert sum(1 for o in emu.ops.values()) >= 800
    assert {r['fired'] for r in emu.http_faults} == {40, 20}

def test_no_chunk_ran_twice(soak):
    emu, *_ = soak
    done = Counter(o.description for o in emu.ops.values() if o.state == 'SUCCEEDED')
    assert max(done.values()) == 1
    by_desc = defaultdict(list)
    for o in emu.ops.values(): by_desc[o.description].append(o)
    assert all(most_active(v) == 1 for v in by_desc.values())  # never two tasks of one chunk at once

def test_throttle_never_exceeded_per_job(soak):
    emu, tmp, died, done = soak
    ids = {p: json.loads((tmp/f'{p}.json').read_text())['job']['job_id'] for p in 'ab'}
    for p, jid in ids.items():
        mine = [o for o in emu.ops.values() if f'_{jid}_' in o.description]
        assert most_active(mine) <= MAX_CONCURRENT
    assert sum(f'_{ids["a"]}_' in o.description or f'_{ids["b"]}_' in o.description for o in emu.ops.values()) == len(emu.ops)

def test_no_site_lost_and_every_row_belongs_to_its_job(soak):
    from gee_polygons.results import collect
    emu, tmp, died, done = soak
    for p in 'ab':
        res = collect(tmp/f'{p}.json', source=tmp/'out'/'drive'/'shared')
        assert res.complete
        assert sorted(res.data['site_id']) == square_sites(N_SITES, p).ids  # every site once, none of the other job's

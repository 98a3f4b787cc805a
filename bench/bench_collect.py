#!/usr/bin/env python3
"""Benchmark: `results.collect` of a batch export's chunk files into the tidy table, with its completeness report.

Usage: python bench/bench_collect.py [--sizes 10000,40000] [--years 14] [--chunk-size 50] [--repeat 3] [--no-write]

Writes, for each size, an export job as `export_categorical` leaves it: a manifest (chunks of --chunk-size sites) and
one CSV per chunk in bench/out/collect_<n>/ with about 6 classes per site and year (Earth Engine's row format, the
`selectors` columns). One chunk file is then removed and one truncated, so the report has work to do. `collect` runs in
a fresh subprocess per repeat, so peak RSS (ru_maxrss) belongs to it alone. Writes the section
"## Collecting exports (bench/bench_collect.py)" of BENCHMARKS.md.
"""
import argparse, json, platform, re, statistics, subprocess, sys, time
from pathlib import Path
import numpy as np
from report import write_section

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT/'bench'/'out'
SECTION = '## Collecting exports (bench/bench_collect.py)'
CLASSES = {3: 'Forest Formation', 4: 'Savanna Formation', 12: 'Grassland', 15: 'Pasture', 21: 'Mosaic of Uses',
           24: 'Urban Area', 33: 'River, Lake and Ocean', 39: 'Soybean', 41: 'Other Temporary Crops'}

def make_job(n:int, years:list, chunk_size:int, seed=1) -> Path:
    "Write the manifest and chunk CSVs of an `n`-site job; return the folder."
    from gee_polygons import export as gx
    from gee_polygons.earthengine import CATEGORICAL_COLUMNS, COVERAGE_COLUMNS
    folder = OUT/f'collect_{n}'
    files = folder/'files'; files.mkdir(parents=True, exist_ok=True)
    for f in files.iterdir(): f.unlink()
    ids = [f'site_{i:06d}' for i in range(n)]
    dest, cfg = gx.ExportDestination('drive', 'bench', 'bench'), gx.ExportConfig(chunk_size=chunk_size)
    cols = CATEGORICAL_COLUMNS + COVERAGE_COLUMNS[2:] + ['job_id']  # what export_categorical asks for now
    job = gx._job('cat', ids, dict(layer='bench', years=years, opts={}), cols, dest, cfg)
    jid = job['job_id']
    chunks = gx.make_chunks(ids, chunk_size, 'bench_cat', 'bench')
    rng, codes = np.random.default_rng(seed), np.array(list(CLASSES))
    for c in chunks:
        c.state = 'COMPLETED'
        lines = [','.join(cols)]
        for s in c.site_ids:
            area = rng.uniform(1, 500)
            mapped = area * (0.8 if rng.random() < 0.05 else 1.0)  # 1 site in 20 is partly outside the layer: a warning
            for y in years:
                k = rng.integers(3, 9)
                cls, w = np.sort(rng.choice(codes, k, replace=False)), rng.dirichlet(np.ones(k))
                lines += [f'{s},{y},{v},"{CLASSES[v]}",{a / 0.09:.6f},{a:.6f},{f:.9f},,,,{jid}' for v, a, f in zip(cls, w * mapped, w)]
                lines.append(f'{s},{y},,,,,,{area:.6f},{mapped:.6f},{mapped:.6f},{jid}')  # the site-year's coverage row
        (files/f'{c.file_prefix}.csv').write_text('\n'.join(lines) + '\n')
    gx.Manifest(folder/'job.json', job, chunks).save()
    (files/f'{chunks[1].file_prefix}.csv').unlink()  # one chunk never arrived
    t = files/f'{chunks[2].file_prefix}.csv'; t.write_bytes(t.read_bytes()[:-10])  # one was cut short
    return folder

CHILD = r'''
import json, re, sys, time
def hwm_mb():  # this process's own peak (VmHWM); ru_maxrss can carry the peak of the process that started it
    return int(re.search(r'VmHWM:\s+(\d+)', open('/proc/self/status').read()).group(1)) / 1024
t0 = time.perf_counter()
from gee_polygons.results import collect
t1 = time.perf_counter()
res = collect(sys.argv[1] + '/job.json', sys.argv[1] + '/files')
t2 = time.perf_counter()
print(json.dumps(dict(import_s=t1 - t0, collect_s=t2 - t1, rows=len(res.data), files=len(res.files_read),
                      missing=len(res.missing), bad=len(res.bad_files), warnings=len(res.warnings), rss_mb=hwm_mb())))
'''

# The reference, measured in the same run: the same files read by plain pandas and concatenated (no checks at all)
PLAIN = r'''
import glob, json, re, sys, time
import pandas as pd
t0 = time.perf_counter()
df = pd.concat([pd.read_csv(f, dtype={'site_id': str, 'class_name': str}) for f in sorted(glob.glob(sys.argv[1] + '/files/*.csv'))])
t1 = time.perf_counter()
print(json.dumps(dict(plain_s=t1 - t0, plain_rss_mb=int(re.search(r'VmHWM:\s+(\d+)', open('/proc/self/status').read()).group(1)) / 1024)))
'''

def _child(code:str, folder:Path) -> dict:
    "The JSON line a fresh Python process running `code` on `folder` prints last."
    out = subprocess.run([sys.executable, '-c', code, str(folder)], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])

def measure(folder:Path, repeat:int) -> dict:
    "Median figures of `repeat` fresh-process runs of collect, each followed by a run of the plain-pandas reference."
    runs = [{**_child(CHILD, folder), **_child(PLAIN, folder)} for _ in range(repeat)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}

def report(res:dict, years:int, chunk:int, cmd:str) -> str:
    lines = [SECTION, '', f'Command: `{cmd}`  ',
             f'Machine: {platform.machine()}, Python {platform.python_version()}, {platform.system()}. Medians of the runs, '
             'each in a fresh subprocess (import time excluded from collect time).', '',
             f'Input: a manifest and one CSV per chunk ({chunk} sites per chunk, {years} years, 3-8 classes per site and year), '
             'one chunk file removed and one truncated. Each file also holds a coverage row per site and year (1 site in 20 '
             'partly covered, so reported in `warnings`) and the `job_id` column, as exports write them now.', '',
             'Reference, measured in the same run: the same files read by `pd.read_csv` and concatenated, with no checks '
             '(the floor of any collect). Peak RSS is each process\'s own VmHWM.', '',
             '| sites | files | rows | collect (s) | plain read_csv (s) | collect vs plain | rows/s | µs/site | peak RSS (MB) | plain RSS (MB) | missing pairs | bad files | warnings |',
             '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for n, r in res.items():
        lines.append(f"| {n:,} | {r['files']:,.0f} | {r['rows']:,.0f} | {r['collect_s']:.2f} | {r['plain_s']:.2f} | {r['collect_s'] / r['plain_s']:.2f}x | "
                     f"{r['rows'] / r['collect_s']:,.0f} | {1e6 * r['collect_s'] / n:,.0f} | {r['rss_mb']:,.0f} | {r['plain_rss_mb']:,.0f} | {r['missing']:,.0f} | {r['bad']:.0f} | {r['warnings']:,.0f} |")
    return '\n'.join(lines)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', default='10000,40000')
    ap.add_argument('--years', type=int, default=14)
    ap.add_argument('--chunk-size', type=int, default=50)
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--no-write', action='store_true', help='print the section without updating BENCHMARKS.md')
    a = ap.parse_args()
    years, res = list(range(2024 - a.years, 2024)), {}
    for n in sorted(int(s) for s in a.sizes.split(',')):
        t = time.perf_counter(); folder = make_job(n, years, a.chunk_size)
        print(f'{n} sites: files written in {time.perf_counter() - t:.1f} s', file=sys.stderr)
        res[n] = measure(folder, a.repeat); print(n, res[n], file=sys.stderr)
    text = report(res, a.years, a.chunk_size, 'python bench/bench_collect.py' + ''.join(f' {x}' for x in sys.argv[1:]))
    print(text)
    if not a.no_write: write_section(text)

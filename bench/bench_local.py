"""Benchmark of the local engine against a plain exactextract call and rasterstats, on the pinned input of bench_input.py.

    python bench/bench_local.py                    # print the markdown section
    python bench/bench_local.py --write            # ...and put it in BENCHMARKS.md under "## Local engine (bench/bench_local.py)"
    python bench/bench_local.py --sizes 10000 40000 --layouts gdal project
    python bench/bench_local.py --pairs 5                  # transitions against class areas, 5 alternating rounds

Input (bench/bench_input.py, seeded): 10,000 polygons (4-60 vertices, 1-500 ha, 10% multipolygons, 10% with holes) over
a 10,000 x 10,000, 14-band uint8 GeoTIFF, in GDAL's default layout (256-px tiles, pixel-interleaved, DEFLATE) and in
the project's layout (512-px tiles, band-interleaved). Task: class areas of every site for all 14 years.
Sites are loaded packed, from a GeoDataFrame, as users with thousands of them load them. Transitions (the 13
consecutive pairs) are measured `--pairs` times, each right after class areas, and reported as median ratios.

Every measurement runs in a fresh subprocess. Its peak memory is measured three ways: the process's own ru_maxrss
(a fresh process inherits no larger parent), the workers' ru_maxrss (spawned, so fresh interpreters too), and the
largest sum of the RSS of the process and all its children sampled every 50 ms ("total"). CPU time is user + system
of the process and its workers: on a shared machine it is steadier than wall time.
With --check, the 1-process run's table is compared with bench/out/baseline/bench_<layout>.parquet (today's engine).
"""
import argparse, importlib, json, os, platform, resource, statistics, subprocess, sys, threading, time
from pathlib import Path
import numpy as np
from report import write_section
import bench_input as B

HERE = Path(__file__).resolve().parent
BASELINE = B.OUT / 'baseline'


def cpu_seconds():
    "CPU time (user + system) of this process and its finished children (the pool's workers)."
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def vm_hwm_mb(pid='self'):
    "Peak RSS of a process's own address space (VmHWM): unlike ru_maxrss it does not carry the peak of the process it was forked from."
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmHWM:'): return int(line.split()[1]) / 1024
    return float('nan')


class TreePeak:
    "Samples the RSS of this process and all its children every 50 ms: `.peak_mb` the largest sum, `.kid_mb` the largest child."
    def __init__(self):
        import psutil
        self.me, self.peak_mb, self.kid_mb, self.stop = psutil.Process(), 0.0, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True); self.thread.start()
    def _run(self):
        while not self.stop.is_set():
            try:
                kids = [p.memory_info().rss for p in self.me.children(recursive=True)]
                rss = self.me.memory_info().rss + sum(kids)
            except Exception: continue
            self.kid_mb = max([self.kid_mb] + [k / 2**20 for k in kids])
            self.peak_mb = max(self.peak_mb, rss / 2**20); self.stop.wait(0.05)
    def close(self): self.stop.set(); self.thread.join(); return self.peak_mb


def sites(n):
    "The n sites as users with thousands of them load them: packed from a GeoDataFrame (lazy above 5,000 sites)."
    import geopandas as gpd
    from gee_polygons.sites import SiteCollection
    return SiteCollection.from_geodataframe(gpd.GeoDataFrame({'site_id': [f's{i}' for i in range(n)]}, geometry=B.polygons(n), crs=4326))


def run_local(n, layout, workers, transitions=False):
    "`local_categorical` of all 14 years, or (transitions) `local_transitions` of the 13 consecutive pairs."
    from gee_polygons.layers import CategoricalLayer
    from gee_polygons.local import local_categorical, local_transitions
    sc = sites(n)
    lyr = CategoricalLayer('bench', {int(c): str(c) for c in B.CLASSES}, {}, B.YEARS, name='bench')
    c, t = cpu_seconds(), time.perf_counter()
    if transitions:
        res = local_transitions(sc, lyr, list(zip(B.YEARS, B.YEARS[1:])), B.RASTERS[layout], workers=workers, progress=False)
        return time.perf_counter() - t, cpu_seconds() - c, len(res.data)
    res = local_categorical(sc, lyr, B.YEARS, B.RASTERS[layout], workers=workers, progress=False)
    secs, cpu = time.perf_counter() - t, cpu_seconds() - c
    if n == 10_000 and workers == 1: res.data.to_parquet(B.OUT / f'local_{layout}_{n}.parquet')
    return secs, cpu, len(res.data)


def baseline_module(rev):
    "The engine of git revision `rev` (gee_polygons/local.py there) as an importable module in bench/out/baseline."
    BASELINE.mkdir(parents=True, exist_ok=True)
    path = BASELINE / f'local_{rev}.py'
    src = subprocess.run(['git', 'show', f'{rev}:gee_polygons/local.py'], capture_output=True, text=True, check=True,
                         cwd=HERE.parent).stdout
    path.write_text(src.replace('from .', 'from gee_polygons.'))
    return path.stem


def run_today(n, layout, workers, rev=None):
    "The engine of the baseline revision (`--baseline`), for a same-run ratio; its 1-process table is kept for --check."
    sys.path.insert(0, str(BASELINE))
    today = importlib.import_module(f'local_{rev or os.environ["BENCH_BASELINE"]}')
    from gee_polygons.layers import CategoricalLayer
    sc = sites(n)
    lyr = CategoricalLayer('bench', {int(c): str(c) for c in B.CLASSES}, {}, B.YEARS, name='bench')
    c, t = cpu_seconds(), time.perf_counter()
    res = today.local_categorical(sc, lyr, B.YEARS, B.RASTERS[layout], workers=workers, progress=False)
    secs, cpu = time.perf_counter() - t, cpu_seconds() - c
    if n == 10_000 and workers == 1: res.data.to_parquet(BASELINE / f'bench_{layout}_{os.environ["BENCH_BASELINE"]}.parquet')
    return secs, cpu, len(res.data)


def run_plain(n, layout, _):
    "The plain call: exact_extract(tif, gdf, ['unique', 'frac']) over all 14 bands."
    import geopandas as gpd
    from exactextract import exact_extract
    gdf = gpd.GeoDataFrame({'site_id': [f's{i}' for i in range(n)]}, geometry=B.polygons(n), crs=4326)
    c, t = cpu_seconds(), time.perf_counter()
    df = exact_extract(str(B.RASTERS[layout]), gdf, ['unique', 'frac'], include_cols=['site_id'], output='pandas')
    return time.perf_counter() - t, cpu_seconds() - c, len(df)


def run_rasterstats(n, layout, _):
    "rasterstats zonal_stats(categorical=True), band by band (pixel-centre counts, no areas)."
    from rasterstats import zonal_stats
    polys = B.polygons(n)
    c, t = cpu_seconds(), time.perf_counter()
    rows = sum(len(zonal_stats(polys, str(B.RASTERS[layout]), band=b, categorical=True, nodata=0))
               for b in range(1, len(B.YEARS) + 1))
    return time.perf_counter() - t, cpu_seconds() - c, rows


def child(method, n, layout, arg):
    peak = TreePeak()
    trans = lambda n, layout, w: run_local(n, layout, w, transitions=True)
    secs, cpu, rows = dict(local=run_local, trans=trans, today=run_today, plain=run_plain, rasterstats=run_rasterstats)[method](n, layout, int(arg or 0))
    total = peak.close()
    print(json.dumps(dict(seconds=secs, cpu=cpu, rows=rows, rss_mb=vm_hwm_mb(), worker_rss_mb=peak.kid_mb, total_mb=total)))


def measure(method, n, layout, arg=''):
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    if method in ('local', 'trans'):  # numba's disk cache is invalidated whenever local.py is rewritten: compile it first
        subprocess.run([sys.executable, '-c', 'import gee_polygons.local as L; L._warm_up()'], env=env, check=True)
    out = subprocess.run([sys.executable, __file__, '--child', method, str(n), layout, str(arg)], capture_output=True,
                         text=True, env=env)
    if out.returncode: raise SystemExit(f'{method} {n} {layout} failed:\n{out.stderr[-3000:]}')
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r.update(method=method, n=n, layout=layout, arg=arg, sites_per_s=n / r['seconds'], cpu_ms=1000 * r['cpu'] / n,
             load=os.getloadavg()[0])
    print(f"  {method:11s} {layout:7s} {arg!s:2s} n={n:6d}: {r['seconds']:7.2f} s {r['sites_per_s']:7.0f} sites/s "
          f"cpu {r['cpu_ms']:5.2f} ms/site, peak {r['rss_mb']:.0f} MB + workers {r['worker_rss_mb']:.0f} MB, "
          f"total {r['total_mb']:.0f} MB, load {r['load']:.1f}", file=sys.stderr)
    return r


def exact_counts(n_sites, layout, year_index=0):
    "Pixel counts per (site, class) of one year from GEOS's exact intersection of each site with each cell: the reference."
    import pandas as pd, shapely, rasterio
    from gee_polygons.local import to_raster_crs
    with rasterio.open(B.RASTERS[layout]) as ds:
        t, rows = ds.transform, []
        for i, g in enumerate(to_raster_crs(B.polygons(n_sites), ds.crs)):
            c0, r0, c1, r1 = [int(np.floor(v)) for v in (~t * (g.bounds[0], g.bounds[3]))] + \
                             [int(np.ceil(v)) for v in (~t * (g.bounds[2], g.bounds[1]))]
            vals = ds.read(year_index + 1, window=rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0))
            rr, cc = np.mgrid[r0:r1, c0:c1]  # cells in units of one cell, from the window's corner (for precision)
            g = shapely.transform(g, lambda xy: (xy - (t.c + c0 * t.a, t.f + r0 * t.e)) / (t.a, t.e))
            x, y = cc.ravel() - c0, rr.ravel() - r0
            frac = shapely.area(shapely.intersection(g, shapely.box(x, y, x + 1, y + 1)))
            rows.append(pd.DataFrame(dict(site_id=f's{i}', class_value=vals.ravel().astype(int), count=frac)))
    df = pd.concat(rows)
    return df[(df['count'] > 0) & (df.class_value != 0)].groupby(['site_id', 'class_value'])['count'].sum()


def check(layout, rev, n_exact=50):
    "The 10,000-site 1-process table against the baseline's (same rows? largest differences) and against GEOS's exact areas."
    import pandas as pd
    old, new = BASELINE / f'bench_{layout}_{rev}.parquet', B.OUT / f'local_{layout}_10000.parquet'
    if not (old.exists() and new.exists()): return None
    a, b = pd.read_parquet(old), pd.read_parquet(new)
    keys = ['site_id', 'year', 'class_value', 'class_name']
    if len(a) != len(b) or not a[keys].equals(b[keys]): return dict(same_rows=False)
    site_px = b.groupby(['site_id', 'year'])['count'].transform('sum')
    d = (a['count'] - b['count']).abs()
    exact, year = exact_counts(n_exact, layout), B.YEARS[0]
    err = lambda t: (t[t.year == year].set_index(['site_id', 'class_value'])['count'].reindex(exact.index).fillna(0) - exact).abs()
    px = exact.groupby(level=0).transform('sum')
    return dict(same_rows=True, rows=len(a), max_rel_row=float((d / a['count']).max()), max_px=float(d.max()),
                max_of_site=float((d / site_px).max()), exact_sites=n_exact, exact_px_new=float(err(b).max()),
                exact_px_old=float(err(a).max()), exact_of_site_new=float((err(b) / px).max()),
                exact_of_site_old=float((err(a) / px).max()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--write', action='store_true')
    ap.add_argument('--check', action='store_true', help="compare the 1-process table with the baseline's and with GEOS's exact areas")
    ap.add_argument('--baseline', default='331215d', help='git revision whose engine is measured as "before this change"')
    ap.add_argument('--sizes', type=int, nargs='+', default=[10_000, 40_000])
    ap.add_argument('--layouts', nargs='+', default=['gdal', 'project'])
    ap.add_argument('--rasterstats-sample', type=int, default=200)
    ap.add_argument('--pairs', type=int, default=3, help='times transitions and class areas are measured side by side')
    ap.add_argument('--report', action='store_true', help='only rebuild the section from bench/out/bench_local_results.json')
    args = ap.parse_args()
    if args.report:
        saved = json.loads((B.OUT / 'bench_local_results.json').read_text())
        vars(args).update(saved['meta']); section = report(saved['results'], args); print(section)
        if args.write: write_section(section)
        return
    B.make_rasters()
    args.uptime0 = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
    results, args.load0, args.t0 = [], os.getloadavg(), time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    small, big = args.sizes[0], args.sizes[1:]
    os.environ['BENCH_BASELINE'] = baseline_module(args.baseline)[len('local_'):]
    results += [measure('today', small, layout, 1) for layout in args.layouts]
    for layout in args.layouts:  # the methods side by side, per layout
        results += [measure('local', small, layout, 2), measure('local', small, layout, 1), measure('plain', small, layout)]
    for k in range(args.pairs):  # transitions against class areas, alternating: the machine's speed drifts
        for w in (2, 1): results += [dict(measure(m, small, args.layouts[0], w), pair=k) for m in ('local', 'trans')]
    results.append(measure('rasterstats', args.rasterstats_sample, args.layouts[0]))
    for n in big: results.append(measure('local', n, args.layouts[0], 2))  # is the cost per site flat?
    args.load1, args.diffs = os.getloadavg(), {l: check(l, args.baseline) for l in args.layouts} if args.check else {}
    args.uptime = [args.uptime0, subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()]
    meta = dict(t0=args.t0, baseline=args.baseline, pairs=args.pairs, sizes=args.sizes, layouts=args.layouts, diffs=args.diffs, rasterstats_sample=args.rasterstats_sample,
                uptime=args.uptime)
    (B.OUT / 'bench_local_results.json').write_text(json.dumps(dict(meta=meta, results=results), indent=1))
    section = report(results, args)
    print(section)
    if args.write: write_section(section)
    bad = {l: d for l, d in args.diffs.items() if not accurate(d)}
    if args.check and bad: raise SystemExit(f'tables differ from the baseline or from the exact areas: {bad}')


def accurate(d) -> bool:
    "The check: the baseline's rows; within 1e-9 of each site's area of GEOS's exact areas; within 1e-5 pixel of the baseline."
    return bool(d) and d['same_rows'] and d['exact_of_site_new'] <= 1e-9 and d['max_px'] <= 1e-5  # baseline: float32 fractions


def report(results, args):
    import exactextract, rasterio, numba
    get = lambda m, n, l, a='': next(r for r in results if (r['method'], r['n'], r['layout'], str(r['arg'])) == (m, n, l, str(a))
                                     and 'pair' not in r)
    ram = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
    small = args.sizes[0]
    names = {'gdal': "GDAL default (256 tiles, pixel-interleaved)", 'project': 'project (512 tiles, band-interleaved)'}
    lines = ['## Local engine (bench/bench_local.py)', '',
             f'Command: `python bench/bench_local.py --write --check` (defaults: `--sizes 10000 40000 --layouts gdal project '
             f'--rasterstats-sample {args.rasterstats_sample}`)  ',
             f'Machine: {os.cpu_count()} cores, {ram:.0f} GB RAM, {platform.machine()} Linux, Python {platform.python_version()}, '
             f'exactextract {exactextract.__version__}, rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__}), '
             f'numba {numba.__version__}.  ',
             f'Date: {args.t0}. Load: the 1-minute load average was '
             f"{min(r['load'] for r in results):.1f}–{max(r['load'] for r in results):.1f} during the runs (2 fills the "
             'machine; other sessions share it, so wall times move with them). The ratios between methods measured in the '
             'same run, and CPU time, are the steadier figures.' + (f" `uptime` before: `{args.uptime[0]}`; after: `{args.uptime[1]}`."
                                                             if getattr(args, 'uptime', None) else ''), '',
             'Input: `bench/bench_input.py` (seeded): polygons of 4–60 vertices, 1–500 ha, 10% multipolygons, 10% with holes, '
             'over a SYNTHETIC MapBiomas-like 10,000 × 10,000 px, 14-band uint8 GeoTIFF (EPSG:4326, 30 m, DEFLATE, 5% pixel '
             'speckle) in two layouts. Task: class areas of every site for all 14 years. Each row is a fresh process.', '',
             'Memory: "process" is the measuring process\'s own peak (VmHWM, which a forked process does not inherit, unlike '
             'ru_maxrss), "worker" the largest RSS sampled (every 50 ms) of the worker, "total" the largest sampled sum of the '
             'process and all its workers.', '',
             f'| method ({small:,} sites × 14 years) | raster layout | sites/s | CPU ms/site | vs plain call (wall) | '
             'vs plain call (CPU) | peak RSS: process + largest worker (total sampled) |', '|---|---|---:|---:|---:|---:|---:|']
    mem = lambda r: (f"{r['rss_mb']:.0f} MB" + (f" + worker ≤{r['worker_rss_mb']:.0f} MB" if str(r['arg']) == '2' else '')
                     + f" ({r['total_mb']:.0f} MB)")
    for layout in args.layouts:
        plain = get('plain', small, layout)
        for m, a, label in [('local', 2, '`local_categorical`, 2 processes (this one and a worker)'), ('local', 1, '`local_categorical`, 1 process'),
                            ('plain', '', "plain `exact_extract(tif, gdf, ['unique', 'frac'])`")]:
            r = get(m, small, layout, a)
            lines.append(f"| {label} | {names[layout]} | {r['sites_per_s']:,.0f} | {r['cpu_ms']:.2f} | "
                         f"{r['sites_per_s'] / plain['sites_per_s']:.2f}× | {plain['cpu_ms'] / r['cpu_ms']:.2f}× | {mem(r)} |")
    rs, plain0 = next(r for r in results if r['method'] == 'rasterstats'), get('plain', small, args.layouts[0])
    today = [r for r in results if r['method'] == 'today']
    for r in today:
        plain = get('plain', small, r['layout'])
        lines.append(f"| the engine before this change (git {args.baseline}), 1 process | {names[r['layout']]} | "
                     f"{r['sites_per_s']:,.0f} | {r['cpu_ms']:.2f} | {r['sites_per_s'] / plain['sites_per_s']:.2f}× | "
                     f"{plain['cpu_ms'] / r['cpu_ms']:.2f}× | {mem(r)} |")
    lines.append(f"| rasterstats `zonal_stats(categorical=True)` per band, on the first {rs['n']:,} sites | {names[rs['layout']]} | "
                 f"{rs['sites_per_s']:,.1f} | {rs['cpu_ms']:.1f} | {rs['sites_per_s'] / plain0['sites_per_s']:.2f}× | "
                 f"{plain0['cpu_ms'] / rs['cpu_ms']:.2f}× | {mem(rs)} |")
    tr = [r for r in results if r['method'] == 'trans']
    if tr:
        lines += ['', f'Transitions (issue 12): `local_transitions` of the 13 consecutive pairs of the 14 years, same sites and raster '
                  f'({names[args.layouts[0]]}), against `local_categorical` of the 14 years (target: at most 1.5× its cost), '
                  f'measured {len(tr) // 2} times each way, transitions right after class areas:', '',
                  '| processes | transitions sites/s | CPU ms/site | rows | wall vs class areas: median (range) | '
                  'CPU vs class areas: median (range) | peak RSS total (sampled) |', '|---|---:|---:|---:|---:|---:|---:|']
        for w in ('2', '1'):
            ts = [r for r in tr if str(r['arg']) == w]
            cs = [next(c for c in results if c['method'] == 'local' and c.get('pair') == t['pair'] and str(c['arg']) == w) for t in ts]
            wall, cpu = ([t[k] / c[k] for t, c in zip(ts, cs)] for k in ('seconds', 'cpu'))
            spread = lambda v: f'{statistics.median(v):.2f}× ({min(v):.2f}–{max(v):.2f})'
            lines.append(f"| {'2 processes' if w == '2' else '1 process'} | {statistics.median(t['sites_per_s'] for t in ts):,.0f} | "
                         f"{statistics.median(t['cpu_ms'] for t in ts):.2f} | {ts[0]['rows']:,} | {spread(wall)} | {spread(cpu)} | "
                         f"{max(t['total_mb'] for t in ts):.0f} MB |")
    base = get('local', small, args.layouts[0], 2)
    lines += ['', f'Cost per site as the collection grows (`local_categorical`, 2 processes, {names[args.layouts[0]]}):', '',
              '| sites | sites/s | CPU ms/site | CPU per site vs 10,000 | peak RSS total (sampled) |', '|---:|---:|---:|---:|---:|']
    for r in [base] + [get('local', n, args.layouts[0], 2) for n in args.sizes[1:]]:
        lines.append(f"| {r['n']:,} | {r['sites_per_s']:,.0f} | {r['cpu_ms']:.2f} | {r['cpu_ms'] / base['cpu_ms']:.2f} | "
                     f"{r['total_mb']:.0f} MB |")
    for l, d in (args.diffs or {}).items():
        if not d: lines += ['', f'Accuracy ({names[l]}): no baseline table.']; continue
        if not d['same_rows']: lines += ['', f'Accuracy ({names[l]}): the rows differ from the baseline.']; continue
        lines += ['', f"Accuracy ({names[l]}), the 1-process table against the baseline's ({d['rows']:,} rows, the same "
                  f"sites, years and classes in the same order): the largest difference of a row is {d['max_px']:.1e} pixel, "
                  f"{d['max_of_site']:.1e} of its site's area (largest relative difference of a row: {d['max_rel_row']:.1e}, "
                  f"on a sliver row). Against GEOS's exact intersection of each of the first {d['exact_sites']} sites with "
                  f"each cell (first year): this engine is off by at most {d['exact_px_new']:.1e} pixel "
                  f"({d['exact_of_site_new']:.1e} of the site), the baseline by {d['exact_px_old']:.1e} "
                  f"({d['exact_of_site_old']:.1e}): exactextract computes its fractions in float32. The check (`--check`) "
                  "asks for the same rows, at most 1e-9 of each site's area from the exact areas, and at most 1e-5 pixel "
                  f"per row from the baseline (its own float32 error): {'passed' if accurate(d) else 'FAILED'}."]
    for r in today:
        now = get('local', small, r['layout'], 1)
        lines += ['', f"Same run, same input ({names[r['layout']]}), 1 process: this engine takes {now['cpu_ms']:.2f} CPU ms "
                  f"per site against {r['cpu_ms']:.2f} before ({r['cpu_ms'] / now['cpu_ms']:.2f}× less CPU)."]
    return '\n'.join(lines + ['', LEVERS, ''])


LEVERS = """Which lever did what (2026-12-02; 10,000 sites, GDAL-default layout; cProfile, process_time and in-process
timings on the shared machine; the figures below are one process unless said).

Third session:

- **A transition tally with no tests in its loop.** The pair tally tested each pair's classes for nodata and recorded
  each entry it touched. It now adds to every pair's (from, to) entry unconditionally and, per site, visits only the
  entries whose classes are present in both layers (known from each layer's class areas, which it sums anyway for
  `fraction`), dropping nodata classes there: 4.3 to 2.2 s for 10,000 sites and 13 pairs, with identical rows,
  counts and areas (`fraction` within 3e-14, its denominator summed in another order).
- **Unsigned indices in the kernels.** numba checks every signed index for a negative value, to wrap it; unsigned
  indices skip the check. On the tallies' captured inputs (best of 6): the class tally 25% faster, the old pair
  tally 16%; in the engine the class tally went from 1.77 to 1.47 s.
- **Rows put in site order by runs, class codes numbered by a table.** `_site_order` sorts the 10,000 runs of a site's
  rows instead of the 2.8 million rows; `_dense_codes` numbers class codes with a `bincount` table instead of
  `np.unique`'s sort. The transitions table: 0.56 to 0.25 s once its memory is mapped (see the last point).
- **Compact piece rows.** A piece kept the tally's float64 block alive behind views, plus int64 copies: 64 bytes a
  row. It now keeps int32 codes and its own float64 count and area: 28 bytes. 40,000 sites' class areas peaked at
  959 MB in this process instead of 1,053 MB (618 instead of 725 before the table).
- **Sites loaded the way users load thousands.** The benchmark builds its `SiteCollection` with `from_geodataframe`
  (packed arrays) instead of from 40,000 `Site` objects holding GeoJSON dicts: that path left 475 MB in the process,
  this one 306 MB.
- **Tried, not adopted:** a shortcut for cells whose class never changes (one entry instead of 13): 10% on the old
  tally, not tried on top of the new one. Merging runs of identical cells: slower (the comparison costs more than
  it saves on this input's speckle). Deriving the unchanged area as class area minus the changes: no faster, and a
  difference of sums is less exact.
- **This virtual machine's memory.** Memory the guest has not touched for a while costs 13–17 µs a page to fault in
  (1 GB: 2.9 s the first time, 0.15 s right after). A one-shot table of millions of rows spends most of its time
  there: the same transitions table takes 1.1 s the first time in a process and 0.25 s the second.

Second session:

- **Exact coverage compiled (the largest).** exactextract's Python binding cost about 250 ns per covered cell: 7.4 s of
  16.8 s CPU (0.74 ms per site), most of it in its C++ `process` call. `local.grid_coverage` computes the same exact
  fractions with a numba kernel (signed area of each ring edge, column by column, plus one pass down each column over
  the bounding cells): 0.31–0.36 s for the 10,000 sites, about 25× less. Its fractions are float64; exactextract's are
  float32, which is why tables differ from the baseline's by up to about 1e-6 pixel per row (see Accuracy). It agrees
  with GEOS's exact intersection areas to about 1e-11 of a pixel per cell. `polygon_coverage` (exactextract) stays as
  the independent reference: the Earth Engine emulator measures with it, and the tests compare the two cell by cell.
- **Buffers reused, not allocated.** On this virtual machine a fresh page costs about 17 µs to fault in. Writing the
  coverage into fresh arrays cost 126 µs per site; into buffers kept from piece to piece, 17 µs.
- **Tile planes padded.** A slot held each layer's 256 × 256 plane exactly 64 KB after the previous one, so a cell's
  14 pixels fell in one L1 cache set and evicted each other: 64 bytes of padding after each plane took the tally from
  220 to 151 µs per site (one run of 250 sites).
- **Tiles kept across runs.** Each process keeps twice a run's tiles and reuses those the next run needs (least
  recently used first out): 1,713 tiles decoded instead of 2,428, for a raster of 1,600.
- **This process measures too.** With `workers=2` one worker is spawned and this process takes pieces from the front
  of the Hilbert order while the worker takes them from the back. A spawned worker's first result arrives 1.7–2.2 s
  after it starts (imports, numba's cached kernels, fresh pages), so at 10,000 sites two processes gain little over
  one on this machine; the gain grows with the collection.
- **Tables without copies.** `tidy` copied and consolidated every table (2.6 s for the 2.8 million rows of a
  transitions table); it now keeps columns that already have their dtype. The engine's frames are built with
  `copy=False` (0.27 s less for class areas). Validity is checked for all polygons in one call.
- **Tried, not adopted:** tiles read pixel-interleaved (a cell's 14 pixels adjacent): GDAL's decoding into that layout
  was slower (1.4–2.2 against 1.0–1.5 ms per tile). A layer-by-layer tally: slower (271 against 209 µs per site).
  Workers started by `fork`: the first result came 0.3 s sooner, not worth a start method that is unsafe once a
  thread runs (tqdm's monitor, Jupyter's kernel).
- **Not done:** a worker still imports pandas (0.3 s) though it builds no table; a fork server would start workers
  in milliseconds after the first call of a session, but not in a fresh process like these measurements.
- Earlier sessions: the compiled class tally, tiles decoded once per run, the GDAL block cache capped at 16 MB, the
  table built column by column, string columns by `take`, honest per-process memory (VmHWM, not `ru_maxrss`).
- Numba compiles the kernels once into its disk cache (`__pycache__`); rewriting `gee_polygons/local.py` (any
  `nbdev-export`) invalidates it, so this benchmark compiles them (`_warm_up()`) before each run of the engine."""


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--child': child(*sys.argv[2:3], int(sys.argv[3]), *sys.argv[4:6])
    else: main()

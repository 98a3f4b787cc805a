"""Benchmark of the local engine against a bare exactextract call and rasterstats.

    python bench/bench_local.py            # print the markdown section
    python bench/bench_local.py --write    # ...and put it in BENCHMARKS.md under "## Local engine (bench/bench_local.py)"

A synthetic MapBiomas-like raster (EPSG:4326, 30 m pixels, 10,000 x 10,000, 14 yearly uint8 bands, tiled 512,
DEFLATE, band-interleaved) is generated once into bench/out/. Polygons: star-shaped, 5-40 vertices, 1-500 ha
(uniform), seeded. Every measurement runs in a fresh subprocess so that peak RSS and GDAL's cache are its own.
"""
import argparse, json, os, platform, resource, subprocess, sys, time
from pathlib import Path
import numpy as np
from report import write_section

HERE = Path(__file__).resolve().parent
OUT = HERE / 'out'
RASTER = OUT / 'bench_lulc_10k.tif'
SIZE, RES, ORIGIN, YEARS = 10_000, 0.00027, (-50.0, -10.0), list(range(2010, 2024))
CLASSES = np.array([3, 4, 12, 15, 21, 24, 33], np.uint8)


def make_raster(path=RASTER):
    "Write the benchmark raster (about a minute): blocky fractal patches, yearly change and 3% speckle."
    import rasterio
    from rasterio.transform import from_origin
    sys.path.insert(0, str(HERE.parent))
    from gee_polygons.sample_data import fractal_noise
    rng, lo = np.random.default_rng(0), SIZE // 4
    nat, moist, press, mos = (fractal_noise(rng, (lo, lo), c, 5).astype(np.float32) for c in (8, 16, 8, 32))
    water = np.abs(fractal_noise(rng, (lo, lo), 6, 5) - 0.5) < 0.006
    base = np.where(nat > 0.47, np.where(moist > 0.52, 3, np.where(moist > 0.42, 4, 12)), np.where(mos > 0.55, 21, 15))
    base = base.astype(np.uint8)
    prof = dict(driver='GTiff', width=SIZE, height=SIZE, count=len(YEARS), dtype='uint8', nodata=0, crs='EPSG:4326',
                transform=from_origin(*ORIGIN, RES, RES), tiled=True, blockxsize=512, blockysize=512,
                compress='deflate', interleave='band', num_threads='all_cpus', bigtiff='if_safer')
    OUT.mkdir(exist_ok=True)
    tmp = path.with_suffix('.tmp.tif')
    with rasterio.open(tmp, 'w', **prof) as dst:
        cls = base.copy()
        for i, y in enumerate(YEARS, 1):
            t = y - YEARS[0]
            cls[np.isin(cls, (3, 4)) & (press > 0.75 - 0.012 * t)] = 15
            cls[(cls == 15) & (mos > 0.62 - 0.008 * t)] = 21
            cls[water] = 33
            full = np.repeat(np.repeat(cls, 4, axis=0), 4, axis=1)
            speck = rng.integers(0, 100, size=full.shape, dtype=np.uint8) < 3
            full[speck] = CLASSES[rng.integers(0, len(CLASSES), size=int(speck.sum()))]
            dst.write(full, i)
            dst.set_band_description(i, f'classification_{y}')
            del full, speck
    tmp.rename(path)


def polygons(n, seed=1):
    "n star-shaped polygons, 5-40 vertices, 1-500 ha, inside the raster."
    import shapely
    rng = np.random.default_rng(seed)
    x0, y1 = ORIGIN; x1, y0 = x0 + SIZE * RES, y1 - SIZE * RES
    out = []
    for _ in range(n):
        k, ha = int(rng.integers(5, 41)), rng.uniform(1, 500)
        cx, cy = rng.uniform(x0 + 0.05, x1 - 0.05), rng.uniform(y0 + 0.05, y1 - 0.05)
        ang = (np.arange(k) + rng.uniform(0, 0.9, k)) * 2 * np.pi / k
        rad = rng.uniform(0.7, 1.3, k)
        unit = 0.5 * np.sum(rad * np.cos(ang) * np.roll(rad * np.sin(ang), -1) - np.roll(rad * np.cos(ang), -1) * rad * np.sin(ang))
        r = np.sqrt(ha * 1e4 / unit) / 111_320
        out.append(shapely.Polygon(np.c_[cx + r * rad * np.cos(ang) / np.cos(np.radians(cy)), cy + r * rad * np.sin(ang)]))
    return out


def cpu_seconds():
    "CPU time (user + system) of this process and its finished children, e.g. the pool's workers."
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# --- the three ways, each run in its own subprocess -------------------------------------------------------------
def run_local(n, workers):
    from gee_polygons.sites import Site, SiteCollection
    from gee_polygons.layers import CategoricalLayer
    from gee_polygons.local import local_categorical
    sites = SiteCollection([Site(f's{i}', p) for i, p in enumerate(polygons(n))], lazy=False)
    lyr = CategoricalLayer('bench', {int(c): str(c) for c in CLASSES}, {}, YEARS, name='bench')
    c, t = cpu_seconds(), time.perf_counter()
    res = local_categorical(sites, lyr, YEARS, RASTER, workers=workers, progress=False)
    return time.perf_counter() - t, cpu_seconds() - c, len(res.data), len(res.errors)


def _bare_ops(src):
    from exactextract import Operation
    return [Operation('unique', 'u', src), Operation('frac', 'f', src), Operation('count', 'n', src),
            Operation('count', 'a', src, options={'coverage_weight': 'area_spherical_m2'})]


def run_exactextract(n, hilbert):
    "One exact_extract call: unique, frac, count and area-weighted count for each of the 14 bands."
    import geopandas as gpd, rasterio
    from exactextract import exact_extract
    from exactextract.raster import RasterioRasterSource
    gdf = gpd.GeoDataFrame({'site_id': [f's{i}' for i in range(n)]}, geometry=polygons(n), crs=4326)
    if hilbert: gdf = gdf.iloc[np.argsort(gdf.geometry.hilbert_distance().to_numpy(), kind='stable')]
    c, t = cpu_seconds(), time.perf_counter()
    with rasterio.open(RASTER) as ds:
        srcs = [RasterioRasterSource(ds, b, name=f'b{b}') for b in range(1, ds.count + 1)]
        ops = [op for s in srcs for op in _bare_ops(s)]
        df = exact_extract(srcs, gdf, ops, include_cols=['site_id'], output='pandas')
    return time.perf_counter() - t, cpu_seconds() - c, len(df), 0


def run_rasterstats(n):
    "rasterstats zonal_stats(categorical=True), band by band (pixel-centre counts, no areas)."
    from rasterstats import zonal_stats
    polys = polygons(n)
    c, t = cpu_seconds(), time.perf_counter()
    rows = sum(len(zonal_stats(polys, str(RASTER), band=b, categorical=True, nodata=0)) for b in range(1, len(YEARS) + 1))
    return time.perf_counter() - t, cpu_seconds() - c, rows, 0


def child(method, n, arg):
    fn = dict(local=lambda: run_local(n, int(arg)), exactextract=lambda: run_exactextract(n, arg == 'hilbert'),
              rasterstats=lambda: run_rasterstats(n))[method]
    secs, cpu, rows, errs = fn()
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps(dict(seconds=secs, cpu=cpu, rows=rows, errors=errs, rss_mb=me.ru_maxrss / 1024,
                          child_rss_mb=kids.ru_maxrss / 1024)))


def measure(method, n, arg=''):
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    out = subprocess.run([sys.executable, __file__, '--child', method, str(n), str(arg)], capture_output=True,
                         text=True, env=env, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r.update(method=method, n=n, arg=arg, sites_per_s=n / r['seconds'], cpu_per_k=1000 * r['cpu'] / n)
    print(f"  {method:13s} {arg!s:8s} n={n:6d}: {r['seconds']:7.2f} s  {r['sites_per_s']:8.1f} sites/s  "
          f"cpu {r['cpu_per_k']:6.1f} s/1000 sites  "
          f"peak {r['rss_mb']:.0f} MB (workers {r['child_rss_mb']:.0f} MB)", file=sys.stderr)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--write', action='store_true')
    ap.add_argument('--sizes', type=int, nargs='+', default=[1000, 10000])
    ap.add_argument('--rasterstats-sample', type=int, default=100)
    args = ap.parse_args()
    if not RASTER.exists():
        t = time.perf_counter(); make_raster(); print(f'raster written in {time.perf_counter() - t:.0f} s', file=sys.stderr)
    results, load0 = [], os.getloadavg()[0]
    for n in args.sizes:
        results += [measure('local', n, 2), measure('local', n, 1), measure('exactextract', n, 'input'),
                    measure('exactextract', n, 'hilbert')]
    results.append(measure('rasterstats', args.rasterstats_sample))
    args.load = (load0, os.getloadavg()[0])
    (OUT / 'bench_local_results.json').write_text(json.dumps(results, indent=1))
    section = report(results, args)
    print(section)
    if args.write: write_section(section)


def report(results, args):
    import exactextract, rasterio
    get = lambda m, n, a: next(r for r in results if (r['method'], r['n'], str(r['arg'])) == (m, n, str(a)))
    rs = next(r for r in results if r['method'] == 'rasterstats')
    mb = RASTER.stat().st_size / 2**20
    ram = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
    lines = ['## Local engine (bench/bench_local.py)', '',
             f'Command: `.venv/bin/python bench/bench_local.py --write` on {os.cpu_count()} cores, {ram:.0f} GB RAM '
             f'({platform.machine()}; shared with other jobs: load average {args.load[0]:.1f} at the start, '
             f'{args.load[1]:.1f} at the end, so absolute figures are pessimistic), Python {platform.python_version()}, '
             f'exactextract {exactextract.__version__}, rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__}).', '',
             f'Raster: SYNTHETIC MapBiomas-like, EPSG:4326, 30 m (0.00027°), {SIZE:,} × {SIZE:,} px, {len(YEARS)} yearly uint8 '
             f'bands, tiled 512, DEFLATE, band-interleaved ({mb:.0f} MB). Polygons: star-shaped, 5–40 vertices, '
             '1–500 ha (uniform). Task: per-site class areas for all 14 years. Each row is a fresh process. '
             'Because the machine is shared, the CPU time (user + system, workers included) is given next to the '
             'wall-clock time: it is the steadier basis for comparing methods.', '',
             '| method | sites | wall s | sites/s | vs bare (wall) | CPU s / 1,000 sites | vs bare (CPU) | peak RSS MB (worker) |',
             '|---|---|---|---|---|---|---|---|']
    row = lambda label, r, bare, n: (f"| {label} | {n} | {r['seconds']:.1f} | {r['sites_per_s']:.0f} | "
                                     f"{r['sites_per_s'] / bare['sites_per_s']:.2f}× | {r['cpu_per_k']:.1f} | "
                                     f"{bare['cpu_per_k'] / r['cpu_per_k']:.2f}× | {r['rss_mb']:.0f}"
                                     + (f" ({r['child_rss_mb']:.0f})" if r['child_rss_mb'] > 1 else '') + ' |')
    for n in args.sizes:
        bare = get('exactextract', n, 'input')
        for m, a, label in [('local', 2, 'local engine, 2 workers'), ('local', 1, 'local engine, 1 process'),
                            ('exactextract', 'input', 'bare exactextract, input order'),
                            ('exactextract', 'hilbert', 'bare exactextract, Hilbert-sorted')]:
            lines.append(row(label, get(m, n, a), bare, f'{n:,}'))
    big = args.sizes[-1]
    best, bare = get('local', big, 2), get('exactextract', big, 'input')
    lines.append(row('rasterstats zonal_stats(categorical=True), per band', rs, bare, f"{rs['n']:,} (sample)"))
    lines += ['', f"At {big:,} sites the local engine (2 workers) runs at {best['sites_per_s'] / bare['sites_per_s']:.2f}× "
              f"the throughput of a bare exactextract call (target ≥ 0.8×; {bare['cpu_per_k'] / best['cpu_per_k']:.2f}× by CPU "
              f"time) and {best['sites_per_s'] / rs['sites_per_s']:.0f}× rasterstats (target ≥ 10×; "
              f"{rs['cpu_per_k'] / best['cpu_per_k']:.0f}× by CPU time; rasterstats measured on a sample, per site).",
              '', 'Notes: the bare exactextract call computes unique/frac/count/area-weighted count per band (array '
              'cells, no tidy table); the local engine time includes reprojection, validation, Hilbert sorting and '
              'building the tidy table. rasterstats counts whole pixels by centre and gives no areas. With 2 workers '
              'the CPU time includes starting two spawned Python processes (about 1–2 CPU s).', '']
    return '\n'.join(lines)


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--child': child(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else '')
    else: main()

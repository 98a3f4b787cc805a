"""Benchmark: building and serializing the categorical Earth Engine expression, against the naive pattern.

    python bench/bench_expressions.py [--sizes 1000 10000 40000] [--naive-sites 1000] [--chunk 50]

For each size, sites (5-40 vertex polygons, full-precision coordinates) are cut in chunks of `--chunk` sites and
`earthengine.categorical_table(layer, 14 years, chunk)` is built and serialized (`ee.serializer.toJSON`, the bytes the
client sends) for every chunk. The naive reference builds, per chunk, one `reduceRegion` per site and year (the grouped
pixelArea sum over an `ee.Geometry` of the site) wrapped in `ee.Feature(None, {...})`. The naive pattern is timed on
the first `--naive-sites` sites only and scaled linearly (its cost per chunk is constant). Runs offline
(`gee_polygons.testing.offline_init`); no request is sent.
"""
import argparse, gc, json, math, os, platform, statistics, sys, time
import numpy as np
import ee
from gee_polygons import earthengine as E
from gee_polygons.layers import CategoricalLayer
from gee_polygons.sites import Site
from gee_polygons.testing import offline_init

LAYER = CategoricalLayer('projects/mapbiomas-public/assets/brazil/lulc/collection10/mapbiomas_brazil_collection10_coverage_v2',
                         {c: f'class {c}' for c in (3, 4, 5, 6, 9, 11, 12, 15, 20, 21, 23, 24, 25, 29, 30, 31, 33, 39, 40, 41)},
                         {}, range(1985, 2025), name='mapbiomas')
YEARS = list(range(2010, 2024))  # 14 years

def make_sites(n:int, seed:int=0) -> list:
    "`n` star-shaped lon/lat polygons of 5-40 vertices in Brazil, 1-500 ha-ish, closed rings."
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(5, 41))
        lon, lat, r = rng.uniform(-60, -40), rng.uniform(-25, -3), rng.uniform(0.0006, 0.012)
        ang = (np.arange(k) + rng.uniform(0, 0.9, k)) * 2 * np.pi / k
        rad = r * rng.uniform(0.5, 1, k)
        ring = np.c_[lon + rad * np.cos(ang), lat + rad * np.sin(ang)].tolist()
        out.append(Site(f'site_{i:06d}', {'type': 'Polygon', 'coordinates': [ring + ring[:1]]}))
    return out

def raw_bytes(sites) -> int:
    "Compact GeoJSON bytes of the sites' coordinates (the floor for any request carrying them)."
    return sum(len(json.dumps(s.geometry['coordinates'], separators=(',', ':'))) for s in sites)

def naive_table(sites, years):
    "Reference naive pattern: one reduceRegion per site and year, each wrapped in ee.Feature(None, {...})."
    img = ee.Image(LAYER.asset_id)
    feats = []
    for s in sites:
        geom = ee.Geometry(s.geometry)
        for y in years:
            stats = ee.Image.pixelArea().addBands(img.select(LAYER.band_name(y))).reduceRegion(
                reducer=ee.Reducer.sum().group(groupField=1, groupName='class'), geometry=geom, scale=30, maxPixels=1e13)
            feats.append(ee.Feature(None, {'site_id': s.site_id, 'year': y, 'groups': stats.get('groups')}))
    return ee.FeatureCollection(feats)

def run(build, chunks, frozen=False) -> dict:
    "Build and serialize every chunk: CPU seconds (stable on a shared machine), wall seconds, payload sizes."
    if frozen: gc.collect(); gc.freeze()  # the sites (and everything before) leave the collector's generations
    try:
        t0, w0, sizes = time.process_time(), time.perf_counter(), []
        for c in chunks: sizes.append(len(ee.serializer.toJSON(build(c))))
        seconds, wall = time.process_time() - t0, time.perf_counter() - w0
    finally:
        if frozen: gc.unfreeze()
    return dict(seconds=seconds, wall=wall, sizes=sizes, raws=[raw_bytes(c) for c in chunks])

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--sizes', type=int, nargs='+', default=[1000, 10000, 40000])
    p.add_argument('--naive-sites', type=int, default=1000)
    p.add_argument('--chunk', type=int, default=50)
    a = p.parse_args()
    offline_init()
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
    print(f'Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, earthengine-api {ee.__version__}')
    ours = lambda c: E.categorical_table(LAYER, YEARS, c)
    naive_sites = make_sites(a.naive_sites, seed=1)
    naive_chunks = [naive_sites[i:i + a.chunk] for i in range(0, len(naive_sites), a.chunk)]
    run(ours, naive_chunks[:1]); run(lambda c: naive_table(c, YEARS), naive_chunks[:1])  # warm up
    nv = run(lambda c: naive_table(c, YEARS), naive_chunks)
    ov = run(ours, naive_chunks)
    naive_per_site = nv['seconds'] / len(naive_sites)
    print(f'\nSame {len(naive_sites):,} sites, chunks of {a.chunk} (CPU s): ours {ov["seconds"]:.2f} s, naive {nv["seconds"]:.2f} s '
          f'({nv["seconds"] / ov["seconds"]:.0f}x); payload per chunk median ours {statistics.median(ov["sizes"]) / 1e3:.1f} KB, '
          f'naive {statistics.median(nv["sizes"]) / 1e3:.1f} KB ({statistics.median(n / o for n, o in zip(nv["sizes"], ov["sizes"])):.1f}x); '
          f'max naive request {max(nv["sizes"]) / 1e6:.2f} MB')
    print('\n| sites | chunks | build+serialize, CPU s (wall s) | µs/site | naive, scaled (CPU s) | speed-up | payload/chunk median (KB) '
          '| max request (KB) | payload / raw coords, median (max) | naive payload / ours | total payload (MB) |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for n in a.sizes:
        sites = make_sites(n)
        chunks = [sites[i:i + a.chunk] for i in range(0, n, a.chunk)]
        r = run(ours, chunks)
        ratios = [s / w for s, w in zip(r['sizes'], r['raws'])]
        naive_s = naive_per_site * n
        naive_ratio = statistics.median(nv['sizes']) / statistics.median(ov['sizes'])
        print(f'| {n:,} | {len(chunks):,} | {r["seconds"]:.2f} ({r["wall"]:.2f}) | {r["seconds"] / n * 1e6:.0f} | {naive_s:.1f} | '
              f'{naive_s / r["seconds"]:.0f}x | {statistics.median(r["sizes"]) / 1e3:.1f} | {max(r["sizes"]) / 1e3:.1f} | '
              f'{statistics.median(ratios):.2f} ({max(ratios):.2f}) | {naive_ratio:.1f}x | {sum(r["sizes"]) / 1e6:.1f} |')
        assert max(r['sizes']) < E.MAX_REQUEST_BYTES
        last = (n, r, run(ours, chunks, frozen=True))
    n, r, f = last
    print(f'\nWith gc.freeze() before building ({n:,} sites): {f["seconds"] / n * 1e6:.0f} µs/site against {r["seconds"] / n * 1e6:.0f} '
          f'({r["seconds"] / f["seconds"]:.2f}x). Target: under 120 µs/site at {n:,} sites: '
          f'{"met" if r["seconds"] / n * 1e6 < 120 else "NOT met"} as the library runs today'
          f'{", met with the collector frozen" if f["seconds"] / n * 1e6 < 120 else ""}.')

if __name__ == '__main__': main()

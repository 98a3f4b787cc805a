"""Benchmark: building and serializing the categorical Earth Engine expression, against the naive pattern.

    python bench/bench_expressions.py [--sizes 1000 10000 40000] [--naive-sites 1000] [--chunk 50] [--no-write]

For each size, sites (5-40 vertex polygons, full-precision coordinates) are cut in chunks of `--chunk` sites and
`earthengine.categorical_table(layer, 14 years, chunk)` is built and serialized (`ee.serializer.toJSON`, the bytes the
client sends) for every chunk. The naive reference builds, per chunk, one `reduceRegion` per site and year (the grouped
pixelArea sum over an `ee.Geometry` of the site) wrapped in `ee.Feature(None, {...})`. The naive pattern is timed on
the first `--naive-sites` sites only and scaled linearly (its cost per chunk is constant). Runs offline
(`gee_polygons.testing.offline_init`); no request is sent. Writes the section "## Earth Engine expressions
(bench/bench_expressions.py)" of BENCHMARKS.md unless --no-write.
"""
import argparse, gc, json, math, os, platform, statistics, sys, time
import numpy as np
import ee
from gee_polygons import earthengine as E
from gee_polygons.layers import CategoricalLayer
from gee_polygons.sites import Site
from gee_polygons.testing import offline_init
from report import write_section
from bench_sites import loadavg

SECTION = '## Earth Engine expressions (bench/bench_expressions.py)'

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

WHY = """What makes it fast: the chunk's sites travel as one constant table (`earthengine.ConstantList`, serialized by one
`json.dumps` instead of value by value, which cost ~2 ms per site); band names, years and the legend are constants
too (`ConstantList`, `ConstantDictionary`: the request written out in place is the same as with plain `ee.List` and
`ee.Dictionary`, in a third fewer serializer nodes); the server functions and, for an image layer, the stacked image
and chained reducer do not depend on the sites and are built once and reused (`earthengine.server_function`,
`earthengine._reused`). earthengine-api's serializer keys every node by the md5 of its JSON text and then writes the
request out again for the body, which formatted the sites' coordinates twice (about 35 µs per site each time);
`ConstantList` enters its data in the serializer's table of shared values itself, keyed by the md5 of its pickle
(about 7 µs per site), so the coordinates are formatted once, in the body (`earthengine._shared_constant`; the bytes
sent are identical). On 2026-12-02 10:17 UTC (load 0.6-0.8), alternating in one process on 40,000 sites, three rounds:
119, 117, 122 µs/site before that change and 86, 85, 92 after, with identical request bodies. Pausing the garbage
collector while building (`sites._gc_paused`) was measured and gained nothing (the expression outlives the build, so
the collector scans it after the pause). What remains: formatting the coordinates once for the body, and walking the
~110 nodes of the fixed part of every request, about 2 ms per chunk, which only more sites per chunk amortize."""

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[1000, 10000, 40000])
    p.add_argument('--naive-sites', type=int, default=1000)
    p.add_argument('--chunk', type=int, default=50)
    p.add_argument('--no-write', action='store_true', help='print the section without updating BENCHMARKS.md')
    a = p.parse_args()
    offline_init()
    load0 = loadavg()
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
    ours = lambda c: E.categorical_table(LAYER, YEARS, c)
    naive_sites = make_sites(a.naive_sites, seed=1)
    naive_chunks = [naive_sites[i:i + a.chunk] for i in range(0, len(naive_sites), a.chunk)]
    run(ours, naive_chunks[:1]); run(lambda c: naive_table(c, YEARS), naive_chunks[:1])  # warm up
    nv = run(lambda c: naive_table(c, YEARS), naive_chunks)
    ov = run(ours, naive_chunks)
    naive_per_site = nv['seconds'] / len(naive_sites)
    rows = []
    for n in a.sizes:
        sites = make_sites(n)
        chunks = [sites[i:i + a.chunk] for i in range(0, n, a.chunk)]
        r = run(ours, chunks)
        assert max(r['sizes']) < E.MAX_REQUEST_BYTES
        rows.append((n, len(chunks), r))
        last = (n, r, run(ours, chunks, frozen=True), run(E.sites_fc, chunks))
        print(n, f'{r["seconds"] / n * 1e6:.0f} µs/site', file=sys.stderr)
    text = report(a, cpu, load0, loadavg(), nv, ov, naive_sites, naive_per_site, rows, last)
    print(text)
    if not a.no_write: write_section(text)

def report(a, cpu, load0, load1, nv, ov, naive_sites, naive_per_site, rows, last) -> str:
    "The markdown section."
    med = statistics.median
    naive_ratio = med(nv['sizes']) / med(ov['sizes'])
    cmd = 'python bench/bench_expressions.py' + ''.join(f' {x}' for x in sys.argv[1:])
    lines = [SECTION, '',
        f'Command: `{cmd}`  ',
        f'Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, earthengine-api {ee.__version__}, '
        'offline client (`offline_init`; nothing is sent).  ',
        f'Date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}. Load average (1, 5, 15 min) {load0} at the start, {load1} at the end '
        '(2 fills the machine).', '',
        f'Sites: star-shaped polygons of 5-40 vertices with full-precision coordinates, {len(YEARS)} years '
        f'({YEARS[0]}-{YEARS[-1]}) of the MapBiomas layer, chunks of {a.chunk} sites. "Build+serialize" is '
        '`earthengine.categorical_table(...)` plus `ee.serializer.toJSON` (the exact request body) for every chunk, in '
        'process CPU seconds. The naive reference, measured in the same run (one `reduceRegion` of the grouped pixelArea '
        'sum per site and year over an `ee.Geometry` of the site, wrapped in `ee.Feature(None, {...})`), was timed on '
        f'{len(naive_sites):,} sites and scaled linearly (its cost per chunk is constant).', '',
        f'On the same {len(naive_sites):,} sites: ours {ov["seconds"]:.2f} CPU s, naive {nv["seconds"]:.2f} CPU s '
        f'({nv["seconds"] / ov["seconds"]:.0f}x); median request per chunk {med(ov["sizes"]) / 1e3:.1f} KB against '
        f'{med(nv["sizes"]) / 1e3:.1f} KB for the naive pattern ({naive_ratio:.1f}x smaller).', '',
        '| sites | chunks | build+serialize, CPU s (wall s) | µs/site | naive, scaled (CPU s) | speed-up | payload/chunk median (KB) '
        '| max request (KB) | payload / raw coords, median (max) | total payload (MB) |',
        '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for n, k, r in rows:
        ratios = [s / w for s, w in zip(r['sizes'], r['raws'])]
        naive_s = naive_per_site * n
        lines.append(f'| {n:,} | {k:,} | {r["seconds"]:.2f} ({r["wall"]:.2f}) | {r["seconds"] / n * 1e6:.0f} | {naive_s:.1f} | '
                     f'{naive_s / r["seconds"]:.0f}x | {med(r["sizes"]) / 1e3:.1f} | {max(r["sizes"]) / 1e3:.1f} | '
                     f'{med(ratios):.2f} ({max(ratios):.2f}) | {sum(r["sizes"]) / 1e6:.1f} |')
    n, r, f, sfc = last
    us, fus, sus = r['seconds'] / n * 1e6, f['seconds'] / n * 1e6, sfc['seconds'] / n * 1e6
    ok = lambda c: 'met' if c else '**NOT met**'
    speedups = [naive_per_site * m / q['seconds'] for m, _, q in rows]
    ratios = [s / w for _, _, q in rows for s, w in zip(q['sizes'], q['raws'])]
    per = [q['seconds'] / m * 1e6 for m, _, q in rows]
    lines += ['', f'With `gc.freeze()` before building ({n:,} sites): {fus:.0f} µs/site against {us:.0f} ({us / fus:.2f}x). '
        f'The sites\' own table (`earthengine.sites_fc` alone, built and serialized) costs {sus:.0f} µs/site of the {us:.0f}; '
        f'the rest ({us - sus:.0f} µs/site, {(us - sus) * a.chunk / 1e3:.1f} ms per chunk) is the image, reducer and flattening, '
        'the same in every request.', '',
        'Targets:',
        f'- at least 20x faster on the client than the naive pattern: {min(speedups):.0f}-{max(speedups):.0f}x ({ok(min(speedups) >= 20)});',
        f'- each chunk\'s payload at most 1.5x the raw coordinate bytes: worst chunk {max(ratios):.2f}x ({ok(max(ratios) <= 1.5)});',
        f'- no request above 10 MB: the largest is {max(max(q["sizes"]) for _, _, q in rows) / 1e3:.1f} KB (met);',
        f'- cost linear in sites: {", ".join(f"{x:.0f}" for x in per)} µs/site at {", ".join(f"{m:,}" for m, _, _ in rows)} sites '
        f'({ok(max(per) / min(per) < 1.5)});',
        f'- under 120 µs/site at {n:,} sites: {us:.0f} µs/site ({ok(us < 120)}).', '',
        WHY]
    return '\n'.join(lines)

if __name__ == '__main__': main()

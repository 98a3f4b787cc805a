"""Speed of the evaluator (gee_polygons.evaluator), the emulator's stand-in for Earth Engine's computation.

    python bench/bench_evaluator.py

1. The shipped sample: the categorical table of 20 sites x 8 years (the expression `categorical_table` sends), cold
   (a fresh Evaluator: opening the raster, exactextract, the graph) and warm (rows cached, as for computeFeatures
   pages), against `local_categorical` on the same data. Target: well under 1-2 s cold.
2. If bench/bench_local.py has made bench/out/bench_lulc_10k.tif (10,000 x 10,000 px, 14 years): one chunk of 100 of
   its sites (1-500 ha) x 14 years, the size of an interactive chunk, read window by window.
Medians of 3 runs in this process (the first cold run also pays imports).
"""
import statistics, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def timed(fn, n=3):
    out = []
    for _ in range(n):
        t0 = time.perf_counter(); res = fn(); out.append(time.perf_counter() - t0)
    return statistics.median(out), res


def main():
    from gee_polygons.testing import offline_init
    offline_init()
    from gee_polygons import earthengine as E
    from gee_polygons.evaluator import Evaluator, sample_evaluator
    from gee_polygons.local import local_categorical
    from gee_polygons.layers import CategoricalLayer
    from gee_polygons.sites import SiteCollection
    from gee_polygons.sample_data import SAMPLE_LAYER, sample_sites_path, sample_raster_path
    sites = SiteCollection.from_file(sample_sites_path())
    expr = E.categorical_table(SAMPLE_LAYER, SAMPLE_LAYER.years, sites)
    cold, rows = timed(lambda: sample_evaluator()(expr))
    ev = sample_evaluator(); ev(expr)
    warm, _ = timed(lambda: ev(expr))
    loc, _ = timed(lambda: local_categorical(sites, SAMPLE_LAYER, SAMPLE_LAYER.years, sample_raster_path(), progress=False))
    print('| case | rows | evaluator cold (s) | evaluator warm (s) | local engine (s) |')
    print('|---|---:|---:|---:|---:|')
    print(f'| sample: 20 sites x 8 years | {len(rows)} | {cold:.3f} | {warm:.4f} | {loc:.3f} |')
    big = HERE / 'out' / 'bench_lulc_10k.tif'
    if big.exists():
        sys.path.insert(0, str(HERE))
        from bench_local import polygons, YEARS as years, CLASSES
        from gee_polygons.sites import Site
        layer = CategoricalLayer('users/bench/lulc', {int(c): str(c) for c in CLASSES}, {}, years, name='bench')
        chunk = SiteCollection([Site(f's{i}', p) for i, p in enumerate(polygons(100))])
        e = E.categorical_table(layer, years, chunk)
        cold, rows = timed(lambda: Evaluator({layer.asset_id: big})(e))
        loc, _ = timed(lambda: local_categorical(chunk, layer, years, big, workers=1, progress=False))
        print(f'| bench raster: 100 sites x 14 years | {len(rows)} | {cold:.3f} | - | {loc:.3f} |')


if __name__ == '__main__': main()

"""The pinned input of the local-engine benchmark: seeded polygons and a 14-band MapBiomas-like raster in two layouts.

    python bench/bench_input.py          # write both rasters into bench/out/ (about 2 minutes), if missing

Everything here is self-contained (numpy, shapely, rasterio) and seeded, so anyone can rebuild the same input:

- `polygons(n, seed=1)`: star-shaped polygons of 4-60 vertices and 1-500 ha (uniform), inside the raster; 10% are
  multipolygons (2-3 parts) and 10% have a hole. The first n of a larger draw are the same polygons.
- the raster: EPSG:4326, 30 m pixels (0.00027 deg), 10,000 x 10,000 px, 14 yearly uint8 bands (2010-2023), nodata 0,
  DEFLATE. Classes in 4-pixel patches from fractal value noise, yearly deforestation and regrowth, 5% pixel speckle.
  Written twice with the same pixels:
  - `RASTERS['gdal']`: GDAL's default GeoTIFF layout for a tiled multi-band file: 256-px tiles, pixel-interleaved;
  - `RASTERS['project']`: the project's own layout: 512-px tiles, band-interleaved.
"""
import sys
from pathlib import Path
import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / 'out'
SIZE, RES, ORIGIN, YEARS = 10_000, 0.00027, (-50.0, -10.0), list(range(2010, 2024))
CLASSES = np.array([3, 4, 12, 15, 21, 24, 33], np.uint8)
RASTERS = {'gdal': OUT / 'bench_lulc_gdal256_pixel.tif', 'project': OUT / 'bench_lulc_512_band.tif'}
LAYOUTS = {'gdal': dict(blockxsize=256, blockysize=256, interleave='pixel'),
           'project': dict(blockxsize=512, blockysize=512, interleave='band')}


def _value_noise(rng, n, cells):
    "An n x n field of smooth noise in [0, 1]: a (cells+1)^2 random grid, smoothstep-interpolated."
    g = rng.random((cells + 1, cells + 1))
    x = np.arange(n) * cells / n
    i, f = x.astype(int), x % 1
    f = f * f * (3 - 2 * f)
    rows = g[i] * (1 - f)[:, None] + g[i + 1] * f[:, None]  # (n, cells+1)
    return rows[:, i] * (1 - f) + rows[:, i + 1] * f


def _fractal(rng, n, cells, octaves=5):
    "Sum of octaves of value noise, each twice as fine and half as strong, in [0, 1]."
    amps = [0.5 ** k for k in range(octaves)]
    return sum(a * _value_noise(rng, n, cells * 2 ** k) for k, a in enumerate(amps)) / sum(amps)


def years_of_classes(seed=0):
    "Yield (band index, year, uint8 array) for the 14 years."
    rng, lo = np.random.default_rng(seed), SIZE // 4
    nat, moist, press, mos = (_fractal(rng, lo, c).astype(np.float32) for c in (8, 16, 8, 32))
    water = np.abs(_fractal(rng, lo, 6) - 0.5) < 0.006
    cls = np.where(nat > 0.47, np.where(moist > 0.52, 3, np.where(moist > 0.42, 4, 12)),
                   np.where(mos > 0.55, 21, 15)).astype(np.uint8)
    for i, y in enumerate(YEARS, 1):
        t = y - YEARS[0]
        cls[np.isin(cls, (3, 4)) & (press > 0.75 - 0.012 * t)] = 15
        cls[(cls == 15) & (mos > 0.62 - 0.008 * t)] = 21
        cls[(cls == 21) & (nat > 0.7 - 0.004 * t)] = 3  # regrowth
        cls[water] = 33
        full = np.repeat(np.repeat(cls, 4, axis=0), 4, axis=1)
        speck = rng.random(full.shape, dtype=np.float32) < 0.05
        full[speck] = CLASSES[rng.integers(0, len(CLASSES), size=int(speck.sum()))]
        yield i, y, full


def make_rasters(which=('gdal', 'project')):
    "Write the benchmark rasters (same pixels, two layouts) that are missing."
    import rasterio
    from rasterio.transform import from_origin
    todo = [k for k in which if not RASTERS[k].exists()]
    if not todo: return
    OUT.mkdir(exist_ok=True)
    base = dict(driver='GTiff', width=SIZE, height=SIZE, count=len(YEARS), dtype='uint8', nodata=0, crs='EPSG:4326',
                transform=from_origin(*ORIGIN, RES, RES), tiled=True, compress='deflate', num_threads='all_cpus',
                bigtiff='if_safer')
    tmps = {k: RASTERS[k].with_suffix('.tmp.tif') for k in todo}
    dsts = {k: rasterio.open(tmps[k], 'w', **base, **LAYOUTS[k]) for k in todo}
    try:
        for i, y, arr in years_of_classes():
            for ds in dsts.values(): ds.write(arr, i); ds.set_band_description(i, f'classification_{y}')
    finally:
        for ds in dsts.values(): ds.close()
    for k in todo: tmps[k].rename(RASTERS[k])


def _star(rng, cx, cy, ha, k, lat):
    "Vertices of a simple star-shaped polygon of `k` vertices and `ha` hectares around (cx, cy) (degrees)."
    ang = (np.arange(k) + rng.uniform(0, 0.9, k)) * 2 * np.pi / k  # increasing, gaps < pi: a simple polygon
    rad = rng.uniform(0.7, 1.3, k)
    x, y = rad * np.cos(ang), rad * np.sin(ang)
    unit = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
    r = np.sqrt(ha * 1e4 / unit) / 111_320
    return np.c_[cx + r * x / np.cos(np.radians(lat)), cy + r * y]


def polygons(n, seed=1):
    "n polygons (4-60 vertices, 1-500 ha; 10% multipolygons, 10% with a hole) inside the benchmark raster."
    import shapely
    rng = np.random.default_rng(seed)
    x0, y1 = ORIGIN; x1, y0 = x0 + SIZE * RES, y1 - SIZE * RES
    out = []
    for _ in range(n):
        kind, ha = rng.random(), rng.uniform(1, 500)
        cx, cy = rng.uniform(x0 + 0.03, x1 - 0.09), rng.uniform(y0 + 0.05, y1 - 0.05)
        if kind < 0.1:  # a multipolygon: 2-3 separate parts sharing the area
            m = int(rng.integers(2, 4))
            step = 1.6 * np.sqrt(ha * 1e4 / m / np.pi) / 111_320 * 2.2
            parts = [shapely.Polygon(_star(rng, cx + j * step, cy + (j % 2) * step / 3, ha / m,
                                           int(rng.integers(4, 61)), cy)) for j in range(m)]
            out.append(shapely.MultiPolygon(parts))
        elif kind < 0.2:  # a hole of 5-25% of the area
            hole = rng.uniform(0.05, 0.25)
            shell = _star(rng, cx, cy, ha / (1 - hole), int(rng.integers(4, 61)), cy)
            inner = (shell - [cx, cy]) * np.sqrt(hole) + [cx, cy]  # radii <= 0.65 of the shell's >= 0.7: inside
            out.append(shapely.Polygon(shell, [inner[::-1]]))
        else:
            out.append(shapely.Polygon(_star(rng, cx, cy, ha, int(rng.integers(4, 61)), cy)))
    return out


if __name__ == '__main__':
    import time
    t = time.perf_counter()
    make_rasters()
    print(f'rasters ready in {time.perf_counter() - t:.0f} s: {", ".join(map(str, RASTERS.values()))}', file=sys.stderr)

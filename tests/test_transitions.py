"""Gross transitions (issue #12): the Earth Engine expression against the categorical table, a pixel-aligned truth,
both mask rules and both earth models; the interactive path over the emulator against the local engine; errors."""
import json
import numpy as np, pandas as pd, pytest

rasterio = pytest.importorskip('rasterio')
import ee
from rasterio.transform import from_origin

from gee_polygons import earthengine as E
from gee_polygons import extract as X
from gee_polygons.emulator import Emulator
from gee_polygons.evaluator import Evaluator, sample_evaluator, M_PER_DEGREE
from gee_polygons.layers import CategoricalLayer
from gee_polygons.local import cell_areas
from gee_polygons.result import TRANSITION_SCHEMA, ExtractionResult
from gee_polygons.sample_data import SAMPLE_LAYER, sample_raster_path, sample_sites_path
from gee_polygons.sites import Site, SiteCollection
from gee_polygons.testing import offline_init

PAIR_KEYS = ['site_id', 'year_from', 'year_to', 'class_from', 'class_to']


@pytest.fixture(scope='module', autouse=True)
def offline():
    offline_init()


@pytest.fixture(scope='module')
def sites(): return SiteCollection.from_file(sample_sites_path())


def table(ev, expr) -> tuple:
    "(table rows, coverage rows) of `expr` evaluated by `ev`, as DataFrames."
    rows, cov = X._split(ev(expr))
    return pd.DataFrame(rows), pd.DataFrame(cov)


def margins(tt:pd.DataFrame, side:str) -> pd.Series:
    "Transition areas summed to (site, year, class) of the `side` ('from' or 'to') year."
    g = tt.groupby(['site_id', f'year_{side}', f'class_{side}']).area_ha.sum()
    return g.rename_axis(['site_id', 'year', 'class_value'])


def class_areas(ev, years, sites) -> pd.Series:
    rows, _ = table(ev, E.categorical_table(SAMPLE_LAYER, years, sites))
    return rows.set_index(['site_id', 'year', 'class_value']).area_ha


# --- invariants on the sample -------------------------------------------------------------------------------------

@pytest.mark.parametrize('earth', ['sphere', 'wgs84'])
def test_margins_are_the_class_areas_of_both_years(sites, earth):
    "2016, 2020, 2023 are fully classified wherever a site has a classified pixel (site_07's outside half is in neither)."
    ev, years = sample_evaluator(earth=earth), [2016, 2020, 2023]
    tt, cov = table(ev, E.transitions_table(SAMPLE_LAYER, E.year_pairs(years), sites, coverage=True))
    assert list(tt.columns.sort_values()) == sorted(TRANSITION_SCHEMA)
    areas = class_areas(ev, years, sites)
    for side, ys in (('from', years[:-1]), ('to', years[1:])):
        want = areas[areas.index.get_level_values('year').isin(ys)]
        pd.testing.assert_series_equal(margins(tt, side).sort_index(), want.sort_index(), check_names=False, rtol=1e-12)
    np.testing.assert_allclose(tt.groupby(['site_id', 'year_from', 'year_to']).fraction.sum(), 1, rtol=1e-12)
    assert (tt.class_from != tt.class_to).any()  # the sample does change
    assert sorted(cov.year.unique()) == years and set(cov.site_id) == set(sites.ids)


def test_identical_years_are_the_diagonal(sites):
    ev = sample_evaluator()
    tt, _ = table(ev, E.transitions_table(SAMPLE_LAYER, [(2020, 2020)], sites))
    assert (tt.class_from == tt.class_to).all()
    cat, _ = table(ev, E.categorical_table(SAMPLE_LAYER, [2020], sites))
    m = tt.merge(cat, left_on=['site_id', 'class_from'], right_on=['site_id', 'class_value'], how='outer', indicator=True)
    assert set(m._merge) == {'both'}
    for c in ('area_ha', 'count', 'fraction'): np.testing.assert_allclose(m[f'{c}_x'], m[f'{c}_y'], rtol=1e-12)
    assert (m.class_from_name == m.class_name).all()


def test_a_gap_in_year_to_counts_in_the_denominator_only(sites):
    "site_12 has nodata in 2019: its 2018 area unclassified in 2019 is in no row, and its fractions sum to less than 1."
    ev = sample_evaluator()
    tt, cov = table(ev, E.transitions_table(SAMPLE_LAYER, [(2018, 2019), (2019, 2018)], sites, coverage=True))
    areas = class_areas(ev, [2018, 2019], sites)
    gap = tt[tt.site_id == 'site_12']
    fwd, back = gap[gap.year_from == 2018], gap[gap.year_from == 2019]
    classified = cov.set_index(['site_id', 'year']).classified_ha
    assert fwd.area_ha.sum() < areas['site_12'][2018].sum() * 0.99
    np.testing.assert_allclose(fwd.fraction.sum(), fwd.area_ha.sum() / classified['site_12', 2018], rtol=1e-12)
    np.testing.assert_allclose(back.fraction.sum(), 1, rtol=1e-12)  # every pixel classified in 2019 is classified in 2018
    pd.testing.assert_series_equal(margins(back, 'from').loc['site_12', 2019].sort_index(), areas['site_12'][2019].sort_index(),
                                   check_names=False, rtol=1e-12)
    assert [s for s, _ in X.coverage_problems(cov.to_dict('records'))] == ['site_07', 'site_12']


def test_same_under_both_mask_rules(sites):
    expr = E.transitions_table(SAMPLE_LAYER, [(2018, 2019), (2016, 2023)], sites, coverage=True)
    key = lambda rows: sorted(json.dumps(r, sort_keys=True) for r in rows)
    a, b = (Evaluator({SAMPLE_LAYER.asset_id: sample_raster_path()}, mask_mode=m)(expr) for m in ('per_input', 'joint'))
    assert a and key(a) == key(b)


def test_earth_models_change_areas_not_fractions(sites):
    expr = E.transitions_table(SAMPLE_LAYER, [(2016, 2023)], sites)
    s, w = (pd.DataFrame(sample_evaluator(earth=e)(expr)).set_index(PAIR_KEYS).sort_index() for e in ('sphere', 'wgs84'))
    assert s.index.equals(w.index) and (s['count'] == w['count']).all()
    np.testing.assert_allclose(s.fraction, w.fraction, rtol=1e-4)
    ratio = (w.area_ha / s.area_ha).to_numpy()
    assert np.all(np.abs(ratio - 1) < 0.01) and np.ptp(ratio) < 1e-3 and not np.allclose(ratio, 1, rtol=1e-6)


# --- exact on a pixel-aligned truth raster ------------------------------------------------------------------------

RES, X0, Y0 = 0.001, -50.0, -10.0


@pytest.fixture(scope='module')
def truth(tmp_path_factory):
    "A 3-year 20 x 20 raster of random classes (nodata 0 in a 2021 block), and two sites made of whole pixels."
    rng = np.random.default_rng(12)
    arr = rng.choice(np.array([3, 15, 21], np.uint8), (3, 20, 20))
    arr[1, 2:5, 3:9] = 0
    path = tmp_path_factory.mktemp('truth') / 'truth.tif'
    with rasterio.open(path, 'w', driver='GTiff', width=20, height=20, count=3, dtype='uint8', nodata=0, crs='EPSG:4326',
                       transform=from_origin(X0, Y0, RES, RES)) as dst:
        dst.write(arr)
        for i, y in enumerate((2020, 2021, 2022), 1): dst.set_band_description(i, f'classification_{y}')
    box = lambda r0, r1, c0, c1: {'type': 'Polygon', 'coordinates': [[[X0 + c0 * RES, Y0 - r0 * RES], [X0 + c1 * RES, Y0 - r0 * RES],
                                   [X0 + c1 * RES, Y0 - r1 * RES], [X0 + c0 * RES, Y0 - r1 * RES], [X0 + c0 * RES, Y0 - r0 * RES]]]}
    sites = [Site('a', box(0, 10, 0, 12)), Site('b', box(8, 20, 5, 20))]
    cells = {'a': (slice(0, 10), slice(0, 12)), 'b': (slice(8, 20), slice(5, 20))}
    layer = CategoricalLayer('users/test/truth', {3: 'Forest', 15: 'Pasture', 21: 'Mosaic'}, {}, [2020, 2021, 2022], scale=RES * M_PER_DEGREE)
    px = cell_areas(from_origin(X0, Y0, RES, RES), 'EPSG:4326', np.arange(20), earth='sphere')[:, None] * np.ones(20)
    return layer, path, sites, {s: (arr[:, r, c], px[r, c]) for s, (r, c) in cells.items()}


def expected(blocks, pairs) -> pd.DataFrame:
    "Pixel pairs counted and their areas summed per site, pair and classes; fraction over the area classified in year_from."
    out = []
    for s, (b, px) in blocks.items():
        for a, z in pairs:
            f, t, w = b[a - 2020].ravel(), b[z - 2020].ravel(), px.ravel()
            both = (f > 0) & (t > 0)
            for (cf, ct), k in pd.crosstab(f[both], t[both]).stack().items():
                sel = both & (f == cf) & (t == ct)
                if k: out.append((s, a, z, int(cf), int(ct), float(k), w[sel].sum() / 1e4, w[sel].sum() / w[f > 0].sum()))
    return pd.DataFrame(out, columns=PAIR_KEYS + ['count', 'area_ha', 'fraction']).set_index(PAIR_KEYS).sort_index()


def test_exact_on_a_pixel_aligned_truth(truth):
    layer, path, sites, blocks = truth
    pairs = [(2020, 2021), (2021, 2022), (2020, 2022), (2022, 2022)]
    ev = Evaluator({layer.asset_id: path}, earth='sphere')
    tt, cov = table(ev, E.transitions_table(layer, pairs, sites, coverage=True))
    got = tt.set_index(PAIR_KEYS).sort_index()
    want = expected(blocks, pairs)
    assert got.index.equals(want.index)
    np.testing.assert_array_equal(got['count'], want['count'])  # whole pixels: exact counts
    np.testing.assert_allclose(got.area_ha, want.area_ha, rtol=1e-9)  # the sphere's pixel areas, summed
    np.testing.assert_allclose(got.fraction, want.fraction, rtol=1e-9)
    assert set(got.class_from_name) == {'Forest', 'Pasture', 'Mosaic'}
    cat, _ = table(ev, E.categorical_table(layer, [2020, 2021, 2022], sites))
    cat = cat.set_index(['site_id', 'year', 'class_value']).area_ha
    full = got.xs((2020, 2022), level=['year_from', 'year_to'], drop_level=False).reset_index()  # 2020 and 2022 are gap-free
    np.testing.assert_allclose(margins(full, 'from').sort_index(), cat.loc[:, [2020], :].sort_index(), rtol=1e-12)
    np.testing.assert_allclose(margins(full, 'to').sort_index(), cat.loc[:, [2022], :].sort_index(), rtol=1e-12)
    gap = cov.set_index(['site_id', 'year']).classified_ha
    assert gap['a', 2021] < gap['a', 2020] and gap['b', 2021] == pytest.approx(gap['b', 2020], rel=1e-12)


def test_pieces_of_a_site_recombine_exactly(truth):
    layer, path, sites, _ = truth
    ev, pairs = Evaluator({layer.asset_id: path}), [(2020, 2021), (2021, 2022)]
    build = lambda chunk: E.transitions_table(layer, pairs, chunk, coverage=True)
    order = lambda rows: pd.DataFrame(rows).sort_values(PAIR_KEYS + ['year'], na_position='last').reset_index(drop=True)
    whole = order(X.recombine_rows(ev(build(sites[:1])), 'transitions'))
    pieces = order(X.recombine_rows(sum((ev(build([p])) for p in X.cut_site(sites[0], 9)), []), 'transitions'))
    assert len(whole) == len(pieces) and whole.class_from.notna().sum() > 10
    for c in ('count', 'area_ha', 'fraction', 'site_ha', 'classified_ha', 'ever_ha'):
        # pixels the cuts split are shared by coverage fractions (float32 in exactextract): sums agree to ~1e-8
        np.testing.assert_allclose(pieces[c].fillna(-1), whole[c].fillna(-1), rtol=1e-6, err_msg=c)


# --- interactive: the emulator over HTTP, against the local engine -------------------------------------------------

YEARS = [2016, 2019, 2023]


@pytest.fixture(scope='module')
def ee_run(sites):
    "extract_transitions and extract_categorical on 'Earth Engine' (the emulator, real client over HTTP)."
    with Emulator(evaluate=sample_evaluator()) as emu:
        emu.connect()
        tr = sites.extract_transitions(SAMPLE_LAYER, YEARS, chunk_size=7, progress=False)
        cat = sites.extract_categorical(SAMPLE_LAYER, YEARS, chunk_size=7, progress=False)
        n = sum(e['path'].endswith('table:computeFeatures') for e in emu.log)
    offline_init()
    return tr, cat, n


def test_interactive_transitions_are_the_categorical_margins(ee_run, sites):
    tr, cat, n = ee_run
    assert isinstance(tr, ExtractionResult) and tr.kind == 'transitions' and n == 2 * 3  # 7 + 7 + 6 sites, each
    assert (tr.errors, list(tr.data.dtypes.astype(str))) == ([], list(TRANSITION_SCHEMA.values()))
    assert tr.data.site_id.unique().tolist() == sites.ids and tr.provenance['engine'] == 'ee'
    assert tr.warnings == cat.warnings and [s for s, _ in tr.warnings] == ['site_07', 'site_12']
    areas = cat.data.set_index(['site_id', 'year', 'class_value']).area_ha
    ok = tr.data[tr.data.site_id != 'site_12']  # 2019's gap: its margins are smaller (tested above)
    for side, ys in (('from', YEARS[:-1]), ('to', YEARS[1:])):
        want = areas[areas.index.get_level_values('year').isin(ys) & (areas.index.get_level_values('site_id') != 'site_12')]
        np.testing.assert_allclose(margins(ok, side).sort_index(), want.sort_index(), rtol=1e-9)


def test_interactive_agrees_with_the_local_engine(ee_run, sites):
    local = pytest.importorskip('gee_polygons.local')
    if not hasattr(local, 'local_transitions'): pytest.skip('gee_polygons.local.local_transitions (H2, 08_local) has not landed yet')
    tr, _, _ = ee_run
    loc = sites.extract_transitions(SAMPLE_LAYER, YEARS, source=sample_raster_path(), earth='sphere', progress=False)
    assert loc.kind == 'transitions' and list(loc.data.columns) == list(TRANSITION_SCHEMA)
    m = tr.data.merge(loc.data, on=PAIR_KEYS, how='outer', suffixes=('_ee', '_local'), indicator=True)
    assert set(m._merge) == {'both'}, m[m._merge != 'both'][PAIR_KEYS]
    for c in ('area_ha', 'count', 'fraction'): np.testing.assert_allclose(m[f'{c}_ee'], m[f'{c}_local'], rtol=0.005, err_msg=c)
    assert (m.class_to_name_ee == m.class_to_name_local).all() and tr.warnings == loc.warnings


# --- errors users can cause ------------------------------------------------------------------------------------------

@pytest.mark.parametrize('kw, msg', [
    (dict(years=[2016]), 'at least two years'),
    (dict(), 'one of them'),
    (dict(years=[2016, 2020], pairs=[(2016, 2020)]), 'one of them'),
    (dict(pairs=[(2016, 2020, 2023)]), 'pairs must be (year_from, year_to) pairs'),
    (dict(pairs='2016-2020'), 'pairs must be'),
    (dict(pairs=[(2016, 2031)]), 'has no data for [2031]; available years are 2010-2023'),
    (dict(years=[1999, 2016]), 'has no data for [1999]'),
])
def test_errors_are_one_clear_line(sites, kw, msg):
    with pytest.raises(ValueError) as e: sites.extract_transitions(SAMPLE_LAYER, progress=False, **kw)
    assert msg in str(e.value) and '\n' not in str(e.value)


def test_local_options_and_engines_are_checked_first(sites):
    with pytest.raises(TypeError, match=r"Unexpected arguments for Earth Engine: \['workers'\]"):
        sites.extract_transitions(SAMPLE_LAYER, [2016, 2020], workers=2)
    with pytest.raises(ValueError, match="engine='local' needs source="):
        sites.extract_transitions(SAMPLE_LAYER, [2016, 2020], engine='local')
    ee.Reset()
    try:
        with pytest.raises(Exception, match='gee_polygons.init'): sites.extract_transitions(SAMPLE_LAYER, [2016, 2020], progress=False)
    finally: offline_init()
    assert len(SiteCollection([]).extract_transitions(SAMPLE_LAYER, [2016, 2020])) == 0

"Property tests of gee_polygons.charts: random tidy tables, checked against pandas sums."
import matplotlib
matplotlib.use('Agg')
import numpy as np
import pandas as pd
import ee
import pytest
from hypothesis import given, settings, strategies as st
from matplotlib.colors import to_hex

from gee_polygons.charts import (class_areas, plot_sites, plot_transitions, transition_summary, TRANSITION_COLUMNS,
                                 transition_matrix, transition_flows, plot_transition_matrix, plot_transition_flow,
                                 prepare_chart_data, plot_class_distribution, plot_class_area_stacked, plot_aggregated)
from matplotlib.patches import PathPatch
from gee_polygons.datasets.mapbiomas import MAPBIOMAS_LULC
from gee_polygons.layers import CATEGORICAL_SCHEMA, tidy

CODES = [3, 4, 15, 39, 24, 33, 99]  # 99 is not in the MapBiomas legend

@st.composite
def tables(draw):
    "A tidy categorical table with 1-4 sites, 1-5 years and a few MapBiomas classes (plus an unknown code)."
    sites = draw(st.lists(st.sampled_from(['a', 'b', 'c', 'd']), min_size=1, max_size=4, unique=True))
    years = draw(st.lists(st.integers(1985, 2024), min_size=1, max_size=5, unique=True))
    rows = []
    for s in sites:
        for y in years:
            for c in draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=4, unique=True)):
                area = draw(st.floats(0.01, 1e4, allow_nan=False))
                rows.append((s, y, c, MAPBIOMAS_LULC.class_name(c), area / 0.09, area, 0.5))
    return tidy(pd.DataFrame(rows, columns=list(CATEGORICAL_SCHEMA)), CATEGORICAL_SCHEMA)

@settings(max_examples=40, deadline=None)
@given(tables())
def test_class_areas_match_pandas_sums(df):
    wide = class_areas(df, MAPBIOMAS_LULC)
    expected = df.groupby(['year', 'class_value']).area_ha.sum()
    for (y, c), v in expected.items(): assert wide.loc[y, c] == pytest.approx(v)
    assert list(wide.index) == sorted(df.year.unique())
    legend = list(MAPBIOMAS_LULC.class_map)
    known = [c for c in wide.columns if c in legend]
    assert known == sorted(known, key=legend.index)
    assert all(c in legend for c in wide.columns[:len(known)])
    np.testing.assert_allclose(class_areas(df, MAPBIOMAS_LULC, unit='share').sum(axis=1), 1.0)

@settings(max_examples=40, deadline=None)
@given(tables(), st.data())
def test_transition_summary_is_difference_of_years(df, data):
    years = sorted(df.year.unique())
    if len(years) < 2: return
    y0, y1 = data.draw(st.sampled_from(years)), data.draw(st.sampled_from(years))
    if y0 == y1: return
    ts = transition_summary(df, MAPBIOMAS_LULC, y0, y1)
    by = df.groupby(['year', 'class_value']).area_ha.sum()
    for r in ts.itertuples(index=False):
        a, b = by.get((y0, r.class_value), 0.0), by.get((y1, r.class_value), 0.0)
        assert r.change == pytest.approx(b - a)
    assert set(ts.class_value) == set(df[df.year.isin([y0, y1])].class_value)

@settings(max_examples=10, deadline=None)
@given(tables())
def test_plot_sites_stacks_equal_yearly_totals(df):
    ax = plot_sites(df, MAPBIOMAS_LULC).axes[0]
    wide = class_areas(df, MAPBIOMAS_LULC)
    assert len(ax.containers) == wide.shape[1]
    assert [to_hex(c.patches[0].get_facecolor()) for c in ax.containers] == [MAPBIOMAS_LULC.class_color(c) for c in wide.columns]
    top = [p.get_y() + p.get_height() for p in ax.containers[-1].patches]
    np.testing.assert_allclose(top, df.groupby('year').area_ha.sum().to_numpy(), rtol=1e-9)

def test_transitions_error_names_available_years():
    df = tidy(pd.DataFrame([('s', 2000, 3, 'Forest Formation', 1.0, 1.0, 1.0)], columns=list(CATEGORICAL_SCHEMA)),
              CATEGORICAL_SCHEMA)
    with pytest.raises(ValueError, match='Year 1999 is not in the table for these sites; it has 2000'):
        plot_transitions(df, MAPBIOMAS_LULC, 1999, 2000)


# --- gross transitions, from a pixel-aligned truth -------------------------------------------------------------------

PIXEL_HA = 0.09

@st.composite
def class_maps(draw):
    "{site: {year: class array}}: 1-3 sites of 1-30 pixels, 2-4 consecutive years, classes from CODES."
    n_years, first = draw(st.integers(2, 4)), draw(st.integers(1985, 2020))
    out = {}
    for s in draw(st.lists(st.sampled_from('abc'), min_size=1, max_size=3, unique=True)):
        n = draw(st.integers(1, 30))
        out[s] = {first + k: np.array(draw(st.lists(st.sampled_from(CODES), min_size=n, max_size=n))) for k in range(n_years)}
    return out

def transitions(maps, pairs=None):
    "The transitions table of `maps`: pixel pairs counted (consecutive years unless `pairs`)."
    rows = []
    for s, by in maps.items():
        for a, b in pairs or list(zip(sorted(by), sorted(by)[1:])):
            for (cf, ct), k in pd.crosstab(by[a], by[b]).stack().items():
                if k: rows.append((s, a, b, cf, MAPBIOMAS_LULC.class_name(cf), ct, MAPBIOMAS_LULC.class_name(ct), k * PIXEL_HA, k / by[a].size))
    return pd.DataFrame(rows, columns=TRANSITION_COLUMNS)

def areas(maps, year, sites=None):
    "Class code -> area of `year` over `sites` (all by default)."
    vals = np.concatenate([by[year] for s, by in maps.items() if sites is None or s in sites])
    return {int(c): k * PIXEL_HA for c, k in zip(*np.unique(vals, return_counts=True))}

@settings(max_examples=40, deadline=None)
@given(class_maps())
def test_matrix_margins_are_the_class_areas(maps):
    tt, years = transitions(maps), sorted(next(iter(maps.values())))
    for a, b in zip(years, years[1:]):
        m = transition_matrix(tt, MAPBIOMAS_LULC, pair=(a, b))
        rows, cols = m.sum(axis=1), m.sum(axis=0)
        for c, v in areas(maps, a).items(): assert rows[c] == pytest.approx(v)
        for c, v in areas(maps, b).items(): assert cols[c] == pytest.approx(v)
        assert m.to_numpy().sum() == pytest.approx(sum(areas(maps, a).values()))
    site = sorted(maps)[0]
    one = transition_matrix(tt, MAPBIOMAS_LULC, site, pair=(years[0], years[1]), unit='share')
    assert one.to_numpy().sum() == pytest.approx(1.0)

@settings(max_examples=20, deadline=None)
@given(class_maps())
def test_identical_years_are_the_diagonal(maps):
    y = sorted(next(iter(maps.values())))[0]
    m = transition_matrix(transitions(maps, pairs=[(y, y)]), MAPBIOMAS_LULC)
    assert (m.to_numpy() - np.diag(np.diag(m.to_numpy()))).sum() == 0
    for c, v in areas(maps, y).items(): assert m.loc[c, c] == pytest.approx(v)

@settings(max_examples=15, deadline=None)
@given(class_maps())
def test_flow_bands_and_nodes_are_the_areas(maps):
    tt = transitions(maps)
    fl = transition_flows(tt)
    ax = plot_transition_flow(tt, MAPBIOMAS_LULC).axes[0]
    bands = [p for p in ax.patches if isinstance(p, PathPatch)]
    widths = sorted(p.get_path().vertices[0, 1] - p.get_path().vertices[7, 1] for p in bands)
    np.testing.assert_allclose(widths, np.sort(fl.area_ha.to_numpy()), rtol=1e-9, atol=1e-12)
    years = sorted(next(iter(maps.values())))
    expected = sorted(v for y in years for v in areas(maps, y).values())
    np.testing.assert_allclose(sorted(p.get_height() for p in ax.patches if not isinstance(p, PathPatch)), expected, rtol=1e-9)
    assert len(ax.get_images()) == 0 and len(plot_transition_matrix(tt, MAPBIOMAS_LULC, pair=(years[0], years[1])).axes[0].get_images()) == 1

def test_transition_errors_are_one_clear_line():
    maps = {'a': {2000: np.array([3, 15]), 2001: np.array([15, 15]), 2002: np.array([3, 3])}}
    tt = transitions(maps)
    with pytest.raises(ValueError, match=r'has 2 pairs of years \(2000→2001, 2001→2002\); choose one with pair='):
        transition_matrix(tt, MAPBIOMAS_LULC)
    with pytest.raises(ValueError, match='the table has 2000→2001, 2000→2002'):
        transition_flows(transitions(maps, pairs=[(2000, 2001), (2000, 2002)]))
    with pytest.raises(ValueError, match=r"lacks columns \['year_from'"):
        transition_matrix(tt.drop(columns='year_from'), MAPBIOMAS_LULC)
    with pytest.raises(ValueError, match=r"site_id \['z'\] not in the table"):
        plot_transition_flow(tt, MAPBIOMAS_LULC, 'z')

# --- upstream's charts -------------------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(tables())
def test_upstream_charts_return_fig_and_ax(df):
    from matplotlib.figure import Figure
    pivot = prepare_chart_data(df)
    for v, total in df.groupby('year').area_ha.sum().items(): assert pivot.loc[v].sum() == pytest.approx(total)
    for fn in (plot_class_distribution, plot_class_area_stacked):
        fig, ax = fn(df, layer=MAPBIOMAS_LULC)
        assert isinstance(fig, Figure) and ax.figure is fig
    fig, ax = plot_aggregated(df, {'natural': ['Forest Formation', 'Savanna Formation']}, layer=MAPBIOMAS_LULC)
    pct = prepare_chart_data(df, as_percentage=True)
    expected = sum(pct[c] for c in ('Forest Formation', 'Savanna Formation') if c in pct)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), expected if not isinstance(expected, int) else np.zeros(len(pct)))

def test_plot_aggregated_finds_upstream_spellings():
    from gee_polygons.datasets.mapbiomas import MAPBIOMAS_DEFORESTATION as D
    df = tidy(pd.DataFrame([('s', 2020, 5, D.class_name(5), 1, 2.0, 0.2), ('s', 2020, 1, D.class_name(1), 1, 8.0, 0.8)],
                           columns=list(CATEGORICAL_SCHEMA)), CATEGORICAL_SCHEMA)
    fig, ax = plot_aggregated(df, {'regrowth': ['Secondary Veg Regrowth']}, layer=D, show_components=False)
    assert list(ax.lines[0].get_ydata()) == [20.0]

# --- site pictures -------------------------------------------------------------------------------------------------

def test_site_pictures_from_the_sample_raster(tmp_path):
    from PIL import Image
    from gee_polygons.charts import site_window, plot_site_map, site_timestrip, site_gif
    from gee_polygons.sample_data import SAMPLE_LAYER, sample_raster_path, sample_sites_path, ORIGIN, RES
    from gee_polygons.sites import SiteCollection
    site = SiteCollection.from_file(sample_sites_path())[19]
    arr, (l, r, b, t), geom = site_window(site, SAMPLE_LAYER, 2023, sample_raster_path(), margin=0)
    assert l <= geom.bounds[0] and r >= geom.bounds[2] and b <= geom.bounds[1] and t >= geom.bounds[3]
    assert arr.shape == (round((t - b) / RES), round((r - l) / RES))
    col0, row0 = round((l - ORIGIN[0]) / RES), round((ORIGIN[1] - t) / RES)
    import rasterio
    with rasterio.open(sample_raster_path()) as ds:
        full = ds.read(SAMPLE_LAYER.years.index(2023) + 1)
    inside = full[row0:row0 + arr.shape[0], max(col0, 0):col0 + arr.shape[1]]
    assert (arr[:, :inside.shape[1]] == inside).all()  # the window is the raster's own pixels
    ax = plot_site_map(site, SAMPLE_LAYER, 2023, sample_raster_path(), margin=0).axes[0]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {SAMPLE_LAYER.class_name(c) for c in set(np.unique(arr)) - {0}}
    assert len(site_timestrip(site, SAMPLE_LAYER, [2010, 2023], sample_raster_path()).axes) == 2
    with Image.open(site_gif(site, SAMPLE_LAYER, [2010, 2015, 2023], tmp_path / 'a' / 's.gif', sample_raster_path(), dpi=30)) as im:
        assert im.n_frames == 3
    with pytest.raises(ValueError, match='needs source='): plot_site_map(site, SAMPLE_LAYER, 2023, engine='local')


def test_site_pictures_from_earth_engine_match_the_local_ones(tmp_path, monkeypatch):
    from PIL import Image
    from gee_polygons import gateway
    from gee_polygons.charts import map_window, plot_site_map, site_timestrip, site_gif
    from gee_polygons.sample_data import SAMPLE_LAYER, sample_raster_path, sample_sites_path
    from gee_polygons.sites import SiteCollection
    from gee_polygons.testing import Emulator, sample_evaluator
    monkeypatch.setattr(gateway.policy, 'sleep', lambda s: None)
    sites = SiteCollection.from_file(sample_sites_path())
    with Emulator(evaluate=sample_evaluator(), out_dir=tmp_path / 'emu') as emu:
        emu.connect(max_retries=0)
        for site in (sites[3], sites[19]):
            for year in (2010, 2023):
                e, _, _ = map_window(site, SAMPLE_LAYER, year)
                l, _, _ = map_window(site, SAMPLE_LAYER, year, sample_raster_path())
                share = lambda a: pd.Series(a[a > 0]).value_counts(normalize=True)
                both = pd.concat([share(e), share(l)], axis=1, keys=[0, 1]).fillna(0)
                assert (both[0] - both[1]).abs().max() < 0.03, (site.site_id, year, both)
        with gateway.observe() as calls:
            fig = site_timestrip(sites[19], SAMPLE_LAYER, [2010, 2023])
        assert len(fig.axes) == 2 and [k for k, _ in calls] == ['getThumbURL', 'getPixels'] * 2
        emu.fail_http(':getPixels$', 'unavailable', times=2)
        with Image.open(site_gif(sites[19], SAMPLE_LAYER, [2010, 2023], tmp_path / 'ee.gif', dpi=30)) as im: assert im.n_frames == 2
        emu.fail_http(':getPixels$', 'memory', times=1)
        with pytest.raises(ee.EEException, match='User memory limit exceeded'): plot_site_map(sites[19], SAMPLE_LAYER, 2020)

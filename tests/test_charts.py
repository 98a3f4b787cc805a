"Property tests of gee_polygons.charts: random tidy tables, checked against pandas sums."
import matplotlib
matplotlib.use('Agg')
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from matplotlib.colors import to_hex

from gee_polygons.charts import class_areas, plot_sites, plot_transitions, transition_summary
from gee_polygons.datasets.mapbiomas import MAPBIOMAS_LULC
from gee_polygons.layers import CATEGORICAL_SCHEMA, tidy

CODES = [3, 4, 15, 39, 24, 33, 77]  # 77 is not in the MapBiomas legend

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

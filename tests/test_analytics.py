"Property tests of gee_polygons.analytics: each site's own baseline, checked against hand sums on random tables."
import matplotlib
matplotlib.use('Agg')
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from gee_polygons.analytics import since_start, start_years, trajectory, plot_trajectory
from gee_polygons.layers import CATEGORICAL_SCHEMA, tidy

CODES, YEARS = [3, 15, 21, 33], list(range(2010, 2018))

@st.composite
def cases(draw):
    "A tidy table of 1-5 sites over some years (with holes), and start years (some missing, some sites extra)."
    rows, starts = [], {}
    for s in draw(st.lists(st.sampled_from('abcdef'), min_size=1, max_size=5, unique=True)):
        for y in draw(st.lists(st.sampled_from(YEARS), min_size=1, max_size=len(YEARS), unique=True)):
            for c in draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=4, unique=True)):
                rows.append((s, y, c, f'class {c}', 1.0, draw(st.floats(0.01, 100)), 0.5))
        starts[s] = draw(st.one_of(st.none(), st.sampled_from(YEARS + [2009, 2020])))
    if draw(st.booleans()): starts['zz'] = 2012  # a site the table lacks
    df = tidy(pd.DataFrame(rows, columns=list(CATEGORICAL_SCHEMA)), CATEGORICAL_SCHEMA)
    return df, starts, draw(st.integers(-3, 1))

@settings(max_examples=60, deadline=None)
@given(cases())
def test_since_start_against_hand_sums(case):
    df, starts, off = case
    res = since_start(df, starts, baseline_offset=off)
    d, sk = res.data, res.skipped
    assert set(d.site_id).isdisjoint(sk.site_id) and set(d.site_id) | set(sk.site_id) == set(df.site_id) | set(starts)
    have = set(zip(df.site_id, df.year))
    for s in set(df.site_id) | set(starts):
        st_ = starts.get(s)
        placed = st_ is not None and s in set(df.site_id) and (s, st_ + off) in have
        assert (s in set(d.site_id)) == placed, s
    assert (d.years_since_start == d.year - d.start_year).all() and (d.baseline_year == d.start_year + off).all()
    for (s, c), g in d.groupby(['site_id', 'class_value']):
        b = df[(df.site_id == s) & (df.class_value == c) & (df.year == starts[s] + off)].area_ha.sum()
        assert g.baseline_area_ha.to_numpy() == pytest.approx(np.full(len(g), b))
        for r in g.itertuples():
            a = df[(df.site_id == s) & (df.class_value == c) & (df.year == r.year)].area_ha.sum()
            assert r.area_ha == pytest.approx(a) and r.change_ha == pytest.approx(a - b)
    assert len(d) == sum(df[df.site_id == s].year.nunique() * df[df.site_id == s].class_value.nunique() for s in set(d.site_id))
    assert df[df.site_id.isin(d.site_id)].area_ha.sum() == pytest.approx(d.area_ha.sum())

@settings(max_examples=30, deadline=None)
@given(cases())
def test_trajectory_shares_and_median(case):
    df, starts, off = case
    res = since_start(df, starts, baseline_offset=off)
    if res.data.empty: return
    tr = trajectory(res, [3, 21])
    assert ((tr.share >= 0) & (tr.share <= 1 + 1e-12)).all()
    for r in tr.itertuples():
        g = res.data[(res.data.site_id == r.site_id) & (res.data.years_since_start == r.years_since_start)]
        assert r.share == pytest.approx(g[g.class_value.isin([3, 21])].area_ha.sum() / g.area_ha.sum())
    ax = plot_trajectory(res, [3, 21], percent=False).axes[0]
    med = tr.groupby('years_since_start').share.median()
    np.testing.assert_allclose(ax.lines[-2].get_ydata(), med.to_numpy())

def test_start_years_of_a_site_collection_and_errors():
    from gee_polygons.sites import SiteCollection
    from gee_polygons.sample_data import sample_sites_path
    sites = SiteCollection.from_file(sample_sites_path())
    sy = start_years(sites)
    assert list(sy.index) == sites.ids and sy.isna().sum() == sum(y is None for y in sites.start_years)
    df = tidy(pd.DataFrame([('site_01', 2010, 3, 'x', 1.0, 1.0, 1.0)], columns=list(CATEGORICAL_SCHEMA)), CATEGORICAL_SCHEMA)
    res = since_start(df, sites)
    assert res.data.empty and set(res.skipped.reason) >= {'no start year', 'no rows in the table', 'no data in its baseline year 2016'}
    with pytest.raises(ValueError, match=r"lacks columns \['area_ha'\]"): since_start(df.drop(columns='area_ha'), sites)
    with pytest.raises(TypeError, match='not int'): since_start(df, 2016)

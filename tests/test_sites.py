"Larger and property-based tests of gee_polygons.sites: real-world-style files, every bad input, format round trips."
import json, math, subprocess, sys, warnings
from pathlib import Path
import numpy as np, pytest, shapely
from hypothesis import given, settings, strategies as st, HealthCheck
from pyproj import Geod, Transformer
import gee_polygons.sites as sites_mod
from gee_polygons.sites import (Site, SiteCollection, PolygonArray, ValidationReport, geometry_area_ha, site_id_str, site_ids)

CRS5880 = {'type': 'name', 'properties': {'name': 'urn:ogc:def:crs:EPSG::5880'}}
TO5880 = Transformer.from_crs('EPSG:4326', 'EPSG:5880', always_xy=True)

def star(lon, lat, n, r, rng):
    "Closed, simple, star-shaped lon/lat ring of `n` vertices (counter-clockwise)."
    ang = (np.arange(n) + rng.uniform(0, 0.9, n)) * 2 * np.pi / n
    rad = r * rng.uniform(0.5, 1, n)
    ring = np.c_[lon + rad * np.cos(ang), lat + rad * np.sin(ang)]
    return np.vstack([ring, ring[:1]])

def brazil_polygons(n, seed=0):
    "`n` lon/lat geometries in Brazil, as lists of polygons of rings: every 5th has a hole, every 7th has two parts."
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lon, lat, r = rng.uniform(-60, -40), rng.uniform(-25, -3), rng.uniform(0.002, 0.02)
        holed = i % 5 == 0  # a hole of radius <= 0.2 r stays inside a star of >= 8 vertices with radii >= 0.5 r
        poly = [star(lon, lat, int(rng.integers(8 if holed else 5, 41)), r, rng)]
        if holed: poly.append(star(lon, lat, 6, r * 0.2, rng)[::-1])
        polys = [poly] + ([[star(lon + 3 * r, lat, 8, r, rng)]] if i % 7 == 0 else [])
        out.append(polys)
    return out

def car_file(tmp_path, polys, name='car.geojson'):
    "Write `polys` as a real-world-style file: EPSG:5880 crs member, 3D coordinates, ids in `rid`, float start years."
    feats = []
    for i, pp in enumerate(polys):
        coords = [[[[*TO5880.transform(x, y), 750.0] for x, y in ring] for ring in p] for p in pp]
        geom = {'type': 'Polygon', 'coordinates': coords[0]} if len(coords) == 1 else {'type': 'MultiPolygon', 'coordinates': coords}
        yr = [2016.0, float('nan'), None, 2019.0][i % 4]
        feats.append({'type': 'Feature', 'properties': {'rid': 5000 + i, 'start_year': yr, 'note': float('nan') if i % 3 else 'ok'}, 'geometry': geom})
    p = tmp_path / name
    p.write_text(json.dumps({'type': 'FeatureCollection', 'crs': CRS5880, 'features': feats}))
    return p

def planar_area_ha(geometry, crs):
    "Planar area of a lon/lat GeoJSON geometry after projecting to the equal-area `crs`."
    t = Transformer.from_crs('EPSG:4326', crs, always_xy=True)
    g = shapely.transform(shapely.geometry.shape(geometry), lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1])))
    return g.area / 1e4

# ---------------------------------------------------------------- the real-world-style file

@pytest.fixture(scope='module')
def car(tmp_path_factory):
    polys = brazil_polygons(60)
    path = car_file(tmp_path_factory.mktemp('car'), polys)
    return polys, path, SiteCollection.from_file(path)

def test_real_world_file_coordinates(car):
    polys, path, sc = car
    assert sc.ids == [str(5000 + i) for i in range(60)] and sc.id_field == 'rid' and len(sc) == 60
    for pp, s in zip(polys, sc):
        got = s.geometry['coordinates'] if s.geometry['type'] == 'MultiPolygon' else [s.geometry['coordinates']]
        assert len(got) == len(pp)
        for gp, p in zip(got, pp):
            assert len(gp) == len(p)
            for gr, r in zip(gp, p): np.testing.assert_allclose(np.array(gr), r, atol=1e-8)  # 2D, back to the true lon/lat

def test_real_world_file_areas_match_equal_area_projections(car):
    _, _, sc = car
    geod = sc.areas_ha()
    for crs in ('EPSG:6933', '+proj=aea +lat_1=-5 +lat_2=-22 +lat_0=-14 +lon_0=-50 +datum=WGS84'):
        planar = np.array([planar_area_ha(s.geometry, crs) for s in sc])
        assert np.all(np.abs(geod / planar - 1) < 0.005), (crs, np.abs(geod / planar - 1).max())
    np.testing.assert_allclose(geod, [s.area_ha for s in sc], rtol=1e-12)

def test_real_world_file_years_and_properties(car):
    _, _, sc = car
    assert sc.start_years[:4] == [2016, None, None, 2019] and all(isinstance(y, int) for y in sc.start_years[::4])
    assert sc[1].properties['note'] is None and sc[0].properties['note'] == 'ok'
    assert sc[1].properties['start_year'] is None  # NaN properties become None
    assert sc.report.ok and 'All 60 sites are valid' in sc.report.summary

def test_holes_subtracted_and_parts_summed(car):
    polys, _, sc = car
    def ring_ha(r): return abs(Geod(ellps='WGS84').polygon_area_perimeter(r[:, 0], r[:, 1])[0]) / 1e4
    for i in (0, 7, 35):  # a holed polygon, a two-part multipolygon, both
        expect = sum(ring_ha(p[0]) - sum(ring_ha(h) for h in p[1:]) for p in polys[i])
        assert math.isclose(sc.areas_ha()[i], expect, rel_tol=1e-9)
    assert sc[7].geometry['type'] == 'MultiPolygon' and sc[5].geometry['type'] == 'Polygon' and len(sc[5].geometry['coordinates']) == 2

# ---------------------------------------------------------------- every bad input, one error each

def fc(*geoms, props=None):
    feats = [{'type': 'Feature', 'properties': (props[i] if props else {'site_id': f's{i}'}), 'geometry': g} for i, g in enumerate(geoms)]
    return {'type': 'FeatureCollection', 'features': feats}

SQ = {'type': 'Polygon', 'coordinates': [[[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01], [0, 0]]]}

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='Sites file not found: .*nope.geojson'): SiteCollection.from_file(tmp_path / 'nope.geojson')

def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='that is a directory'): SiteCollection.from_file(tmp_path)

def test_malformed_json(tmp_path):
    p = tmp_path / 'bad.json'
    p.write_text('{"type": "FeatureCollection",\n"features": [\n{"type": "Feature" "geometry": null}]}')
    with pytest.raises(ValueError, match=r"^bad.json is not valid JSON: Expecting ',' delimiter at line 3, column 20\.$"): SiteCollection.from_file(p)

def test_not_utf8(tmp_path):
    p = tmp_path / 'latin.geojson'
    p.write_bytes('{"name": "S\u00e3o"}'.encode('latin-1'))
    with pytest.raises(ValueError, match='latin.geojson is not'): SiteCollection.from_file(p)

def test_unknown_extension(tmp_path):
    p = tmp_path / 'sites.csv'
    p.write_text('a,b\n')
    with pytest.raises(ValueError, match=r"unknown extension '.csv'. Supported formats: .geojson \(GeoJSON\), .json \(GeoJSON\), .gpkg \(GeoPackage\), "
                                         r".shp \(Shapefile\), .parquet \(GeoParquet\), .geoparquet \(GeoParquet\), .fgb \(FlatGeobuf\)"):
        SiteCollection.from_file(p)

def test_not_geojson():
    with pytest.raises(ValueError, match="is not a GeoJSON FeatureCollection, Feature or Polygon"): SiteCollection.from_geojson({'features': []})

def test_projected_coordinates_without_crs(tmp_path):
    polys = brazil_polygons(3)
    p = car_file(tmp_path, polys)
    obj = json.loads(p.read_text()); del obj['crs']
    with pytest.raises(ValueError, match=r'coordinates such as .* are not longitude/latitude and no CRS is given; pass source_crs='):
        SiteCollection.from_geojson(obj)
    ok = SiteCollection.from_geojson(obj, source_crs='EPSG:5880')
    np.testing.assert_allclose(ok[1].geometry['coordinates'][0], polys[1][0][0], atol=1e-8)

def test_unknown_crs_member():
    with pytest.raises(ValueError, match="unknown CRS 'urn:ogc:def:crs:EPSG::123456789'"):
        SiteCollection.from_geojson({**fc(SQ), 'crs': {'type': 'name', 'properties': {'name': 'urn:ogc:def:crs:EPSG::123456789'}}})

def test_unreadable_crs_member():
    with pytest.raises(ValueError, match="cannot read its crs member .*pass source_crs="):
        SiteCollection.from_geojson({**fc(SQ), 'crs': {'type': 'link', 'properties': {'href': 'http://x/crs'}}})

def test_duplicate_ids_listed():
    props = [{'rid': i % 13} for i in range(40)]
    with pytest.raises(ValueError, match=r"id column 'rid' is not a unique, complete id: 40 features share 13 repeated ids \(e\.g\. '0', '1', '2'\)\. Fix the column, or choose another one with id_field=\.$"):
        SiteCollection.from_geojson(fc(*[SQ] * 40, props=props), id_field='rid')

def test_detected_id_column_with_duplicates_or_blanks_stops():
    "Issue 9 point 6: a candidate id column with repeats or blanks is an error, never positions."
    for props, found in (([{'site_id': 'a'}, {'site_id': 'a'}, {'site_id': 'b'}], "2 features share 1 repeated id (e.g. 'a')"),
                         ([{'site_id': 'a'}, {'site_id': ' '}, {'site_id': None}], '2 blank ids (e.g. feature #1, #2)'),
                         ([{'name': 'x', 'area': 1}, {'name': 'x', 'area': 2}, {'name': 'y', 'area': 3}], "2 features share 1 repeated id")):
        with pytest.raises(ValueError) as e: SiteCollection.from_geojson(fc(SQ, SQ, SQ, props=props), name='plots.geojson')
        msg = str(e.value)
        assert '\n' not in msg and msg.startswith('plots.geojson: id column ') and found in msg and 'id_field=' in msg

def test_duplicate_ids_int_and_float_are_the_same_id():
    with pytest.raises(ValueError, match="'12'"): SiteCollection.from_geojson(fc(SQ, SQ, props=[{'rid': 12}, {'rid': 12.0}]), id_field='rid')

def test_missing_ids():
    with pytest.raises(ValueError, match=r"2 blank ids \(e\.g\. feature #1, #2\)"):
        SiteCollection.from_geojson(fc(SQ, SQ, SQ, props=[{'rid': 1}, {'rid': None}, {'rid': float('nan')}]), id_field='rid')

def test_unknown_id_field():
    with pytest.raises(ValueError, match=r"has no id_field 'plot'; its properties are \['site_id'\]"): SiteCollection.from_geojson(fc(SQ), id_field='plot')

def test_empty_geometry():
    with pytest.raises(ValueError, match=r"1 of 2 sites have problems \(1 empty\): #1 \('s1'\) has no geometry"): SiteCollection.from_geojson(fc(SQ, None))
    with pytest.raises(ValueError, match=r"#1 \('s1'\) is an empty MultiPolygon"): SiteCollection.from_geojson(fc(SQ, {'type': 'MultiPolygon', 'coordinates': []}))

def test_non_polygon():
    pt = {'type': 'Point', 'coordinates': [1, 2]}
    gc = {'type': 'GeometryCollection', 'geometries': [SQ]}
    with pytest.raises(ValueError, match=r"\(2 not a polygon\): #1 \('s1'\) is a Point, not a polygon; #2 \('s2'\) is a GeometryCollection"):
        SiteCollection.from_geojson(fc(SQ, pt, gc))

def test_invalid_ring_self_intersection():
    bow = {'type': 'Polygon', 'coordinates': [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(ValueError, match=r"\(1 invalid\): #1 \('s1'\) Self-intersection\[0.5 0.5\].*make_valid=True"): SiteCollection.from_geojson(fc(SQ, bow))

def test_invalid_ring_hole_outside_shell():
    g = {'type': 'Polygon', 'coordinates': [SQ['coordinates'][0], [[5, 5], [5.1, 5], [5.1, 5.1], [5, 5]]]}
    with pytest.raises(ValueError, match=r"Hole lies outside shell"): SiteCollection.from_geojson(fc(g))

def test_invalid_ring_not_closed_and_too_short():
    open_ = {'type': 'Polygon', 'coordinates': [SQ['coordinates'][0][:-1]]}
    with pytest.raises(ValueError, match='not closed'): SiteCollection.from_geojson(fc(open_))
    with pytest.raises(ValueError, match='fewer than 4 positions'): SiteCollection.from_geojson(fc({'type': 'Polygon', 'coordinates': [[[0, 0], [1, 1]]]}))

def test_malformed_coordinates():
    with pytest.raises(ValueError, match='has malformed coordinates'):
        SiteCollection.from_geojson(fc({'type': 'Polygon', 'coordinates': [[[0, 0], ['a', 'b'], [1, 1], [0, 0]]]}))

def test_out_of_bounds_after_reprojection():
    # reprojected from EPSG:5880, a point 1e9 m north lands nowhere on Earth
    good = [[*TO5880.transform(x, y)] for x, y in star(-50, -10, 8, 0.01, np.random.default_rng(1))]
    bad = [[x, y + 1e9] for x, y in good]
    obj = {**fc({'type': 'Polygon', 'coordinates': [good]}, {'type': 'Polygon', 'coordinates': [bad]}), 'crs': CRS5880}
    with pytest.raises(ValueError, match=r"#1 \('s1'\) has coordinates outside longitude ±180° / latitude ±90°"): SiteCollection.from_geojson(obj)

def test_out_of_bounds_in_lonlat_file():
    far = {'type': 'Polygon', 'coordinates': [[[179.9, 0], [180.2, 0], [180.2, 0.1], [179.9, 0]]]}
    with pytest.raises(ValueError, match=r"\(1 out of lon/lat bounds\)"): SiteCollection.from_geojson(fc(SQ, SQ, far))

def test_bad_start_year():
    with pytest.raises(ValueError, match="Site 's0': start_year 'next year' is not a whole year"):
        SiteCollection.from_geojson(fc(SQ, props=[{'site_id': 's0', 'start_year': 'next year'}]))

def test_bad_on_invalid():
    with pytest.raises(ValueError, match="on_invalid must be 'raise' or 'skip', not 'drop'"): SiteCollection.from_geojson(fc(SQ), on_invalid='drop')

def test_bad_chunk_size():
    sc = SiteCollection.from_geojson(fc(SQ))
    for n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match='positive whole number'): sc.chunks(n)

def test_geopandas_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'geopandas', None)
    (tmp_path / 'x.gpkg').write_bytes(b'')
    with pytest.raises(ImportError, match=r'Reading GeoPackage files needs geopandas.*pip install "gee_polygons\[local\]"'): SiteCollection.from_file(tmp_path / 'x.gpkg')
    with pytest.raises(ImportError, match='to_geodataframe'): SiteCollection.from_geojson(fc(SQ)).to_geodataframe()

def test_unreadable_gpkg(tmp_path):
    (tmp_path / 'x.gpkg').write_text('not a geopackage')
    with pytest.raises(ValueError, match='Could not read x.gpkg as GeoPackage'): SiteCollection.from_file(tmp_path / 'x.gpkg')

# ---------------------------------------------------------------- skip, repair, report

def test_skip_keeps_good_sites_and_reports_the_rest():
    bow = {'type': 'Polygon', 'coordinates': [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.warns(UserWarning, match='skipped 3 of 5 sites'):
        sc = SiteCollection.from_geojson(fc(SQ, None, bow, {'type': 'Point', 'coordinates': [0, 0]}, SQ), on_invalid='skip')
    assert sc.ids == ['s0', 's4'] and not sc.report and sc.report.n == 5
    assert [(i, c) for i, _, c, _ in sc.report.problems] == [(1, 'empty'), (2, 'invalid'), (3, 'not_polygon')]

def test_make_valid_keeps_only_polygonal_parts():
    # a polygon with a spike: make_valid gives a polygon plus a line; only the polygon is kept
    spike = {'type': 'Polygon', 'coordinates': [[[0, 0], [1, 0], [1, 1], [1, 2], [1, 1], [0, 1], [0, 0]]]}
    sc = SiteCollection.from_geojson(fc(spike), make_valid=True)
    assert sc.report.ok and len(sc.report.repaired) == 1
    assert shapely.geometry.shape(sc[0].geometry).equals(shapely.box(0, 0, 1, 1))

def test_make_valid_from_geodataframe():
    gpd = pytest.importorskip('geopandas')
    gdf = gpd.GeoDataFrame({'plot_id': ['a', 'b']}, geometry=shapely.from_wkt(['POLYGON((0 0,1 1,1 0,0 1,0 0))', 'POLYGON((0 0,1 0,1 1,0 0))']), crs=4326)
    with pytest.raises(ValueError, match='Self-intersection'): SiteCollection.from_geodataframe(gdf)
    sc = SiteCollection.from_geodataframe(gdf, make_valid=True)
    assert sc.ids == ['a', 'b'] and sc[0].geometry['type'] == 'MultiPolygon' and sc.id_field == 'plot_id'

def test_mixed_2d_3d_positions():
    g = {'type': 'Polygon', 'coordinates': [[[0, 0, 5], [0.01, 0], [0.01, 0.01, 7], [0, 0]]]}
    sc = SiteCollection.from_geojson(fc(g, SQ))
    assert sc[0].geometry['coordinates'][0] == [[0, 0], [0.01, 0], [0.01, 0.01], [0, 0]]

# ---------------------------------------------------------------- ids

def test_id_detection_order_and_report(caplog):
    import logging
    caplog.set_level(logging.INFO, logger='gee_polygons.sites')
    sc = SiteCollection.from_geojson(fc(SQ, SQ, props=[{'Name': 'x', 'FID': 1}, {'Name': 'y', 'FID': 2}]))
    assert sc.id_field == 'FID' and sc.ids == ['1', '2'] and "site ids from property 'FID'" in caplog.text

def test_position_ids_warn():
    with pytest.warns(UserWarning, match='using positions "0".."1". Pass id_field='):
        sc = SiteCollection.from_geojson(fc(SQ, SQ, props=[{'area': 1}, {'area': 1}]))
    assert sc.ids == ['0', '1'] and sc.id_field is None and 'ids from positions' in repr(sc)

@given(st.integers(-10**12, 10**12))
def test_int_and_float_ids_agree(i):
    assert site_id_str(i) == site_id_str(float(i)) == site_id_str(np.int64(i)) == site_id_str(np.float64(i)) == str(i)

# ---------------------------------------------------------------- round trips through files

@pytest.mark.parametrize('ext', ['gpkg', 'shp', 'parquet', 'fgb'])
def test_round_trip(car, tmp_path, ext):
    _, _, sc = car
    gdf = sc.to_geodataframe()
    p = tmp_path / f'sites.{ext}'
    gdf.to_parquet(p) if ext == 'parquet' else gdf.to_file(p)
    back = SiteCollection.from_file(p)
    back = back[[back.ids.index(i) for i in sc.ids]]  # FlatGeobuf's spatial index reorders features
    assert back.ids == sc.ids and back.id_field == 'site_id' and back.start_years == sc.start_years
    np.testing.assert_allclose(back.areas_ha(), sc.areas_ha(), rtol=1e-9)
    # GeoPackage and FlatGeobuf promote a mixed layer to MultiPolygon, so compare shapes, not GeoJSON types
    assert all(a.shape.equals(b.shape) for a, b in zip(back, sc))
    assert [a.properties['note'] for a in back] == [b.properties['note'] for b in sc]

def test_round_trip_projected_file_uses_file_crs(car, tmp_path):
    _, _, sc = car
    p = tmp_path / 'utm.gpkg'
    sc.to_geodataframe().to_crs('EPSG:5880').to_file(p)
    back = SiteCollection.from_file(p)
    np.testing.assert_allclose(back.areas_ha(), sc.areas_ha(), rtol=1e-7)
    np.testing.assert_allclose(back.bounds, sc.bounds, atol=1e-7)

def test_shapefile_without_prj_needs_source_crs(car, tmp_path):
    _, _, sc = car
    p = tmp_path / 'noprj.shp'
    sc[:5].to_geodataframe().to_crs('EPSG:5880').to_file(p)
    p.with_suffix('.prj').unlink()
    with pytest.raises(ValueError, match='noprj.shp: coordinates such as .* pass source_crs='): SiteCollection.from_file(p)
    back = SiteCollection.from_file(p, source_crs='EPSG:5880')
    np.testing.assert_allclose(back.areas_ha(), sc[:5].areas_ha(), rtol=1e-7)

# ---------------------------------------------------------------- lazy mode

def test_lazy_is_automatic_above_threshold(monkeypatch):
    monkeypatch.setattr(sites_mod, 'LAZY_THRESHOLD', 3)
    obj = fc(*[SQ] * 4)
    assert SiteCollection.from_geojson(obj).lazy and not SiteCollection.from_geojson(fc(*[SQ] * 3)).lazy
    assert not SiteCollection.from_geojson(obj, lazy=False).lazy

def test_lazy_and_eager_agree(car, tmp_path):
    _, path, eager = car
    lazy = SiteCollection.from_file(path, lazy=True)
    assert lazy.lazy and not eager.lazy and len(lazy._store.cache) == 0
    assert lazy.ids == eager.ids and [s.site_id for s in lazy] == eager.ids
    assert lazy[17] == eager[17] and lazy[-1] == eager[-1]
    assert lazy[10:20].ids == eager.ids[10:20] and lazy[10:20].lazy
    assert [c.ids for c in lazy.chunks(25)] == [eager.ids[:25], eager.ids[25:50], eager.ids[50:]]
    assert lazy.filter(lambda s: s.start_year == 2016).ids == eager.ids[::4]
    assert lazy.filter_by_property('start_year', None).ids == [i for i, y in zip(eager.ids, eager.start_years) if y is None]
    np.testing.assert_array_equal(lazy.areas_ha(), eager.areas_ha())
    assert lazy.bounds == eager.bounds and len(lazy._store.cache) == 0
    gl, ge = lazy[5:9].to_geodataframe(), eager[5:9].to_geodataframe()
    assert gl.drop(columns='geometry').equals(ge.drop(columns='geometry')) and gl.geometry.equals(ge.geometry)

# ---------------------------------------------------------------- properties (hypothesis)

@st.composite
def geometries(draw, lons=(-179, 179), lats=(-80, 80)):
    "A random lon/lat Polygon or MultiPolygon (simple star-shaped rings, maybe a hole), as a GeoJSON dict."
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    lon, lat = draw(st.floats(*lons)), draw(st.floats(*lats))
    r, nparts = draw(st.floats(1e-4, 0.05)), draw(st.integers(1, 3))
    polys = []
    for k in range(nparts):
        n = draw(st.integers(3, 40))
        p = [star(lon + 3 * r * k, lat, n, r, rng)]
        if n >= 8 and draw(st.booleans()): p.append(star(lon + 3 * r * k, lat, 5, r * 0.2, rng))  # inside, see brazil_polygons
        polys.append([ring.tolist() for ring in p])
    return {'type': 'MultiPolygon', 'coordinates': polys} if nparts > 1 or draw(st.booleans()) else {'type': 'Polygon', 'coordinates': polys[0]}

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(geometries(), min_size=1, max_size=8), st.booleans())
def test_geojson_round_trip_and_areas(geoms, lazy):
    sc = SiteCollection.from_geojson(fc(*geoms), lazy=lazy)
    assert [s.geometry for s in sc] == geoms
    np.testing.assert_allclose(sc.areas_ha(), [geometry_area_ha(g) for g in geoms], rtol=1e-9)
    np.testing.assert_allclose(sc.areas_ha(), [s.area_ha for s in sc], rtol=1e-9)
    assert (sc.areas_ha() > 0).all()
    b = np.array(sc.bounds)
    allxy = np.concatenate([np.array(r) for g in geoms for p in (g['coordinates'] if g['type'] == 'MultiPolygon' else [g['coordinates']]) for r in p])
    np.testing.assert_array_equal(b, [*allxy.min(0), *allxy.max(0)])

@settings(max_examples=30, deadline=None)
@given(st.lists(geometries(), min_size=1, max_size=8), st.data())
def test_take_matches_geometry(geoms, data):
    pa = PolygonArray.from_shapely([shapely.geometry.shape(g) for g in geoms])
    idx = data.draw(st.lists(st.integers(0, len(geoms) - 1), max_size=10))
    sub = pa.take(idx)
    assert [sub.geometry(j) for j in range(len(idx))] == [geoms[i] for i in idx]
    np.testing.assert_allclose(sub.areas_m2(), pa.areas_m2()[idx], rtol=1e-12)

@settings(max_examples=25, deadline=None)
@given(st.lists(geometries(lons=(-74, -34), lats=(-34, 5)), min_size=1, max_size=5),
       st.sampled_from(['EPSG:5880', 'EPSG:3857', 'EPSG:6933', 'ESRI:54009', 'EPSG:31983']))
def test_reprojection_round_trip(geoms, crs):
    "Within Brazil (where every one of these CRSs is usable) projected coordinates come back to the same lon/lat."
    fwd = Transformer.from_crs('EPSG:4326', crs, always_xy=True)
    def proj(g):
        c = g['coordinates'] if g['type'] == 'MultiPolygon' else [g['coordinates']]
        c = [[[list(fwd.transform(x, y)) + [1.0] for x, y in r] for r in p] for p in c]
        return {'type': g['type'], 'coordinates': c if g['type'] == 'MultiPolygon' else c[0]}
    projected = [proj(g) for g in geoms]
    sc = SiteCollection.from_geojson({**fc(*projected), "crs": {"type": "name", "properties": {"name": crs}}})
    assert sc.report.ok and len(sc) == len(geoms)
    for s, g in zip(sc, geoms):
        got = s.geometry['coordinates'] if s.geometry['type'] == 'MultiPolygon' else [s.geometry['coordinates']]
        want = g['coordinates'] if g['type'] == 'MultiPolygon' else [g['coordinates']]
        for gp, wp in zip(got, want):
            assert len(gp) == len(wp)
            for gr, wr in zip(gp, wp): np.testing.assert_allclose(gr, wr, atol=1e-7)

@settings(max_examples=30, deadline=None)
@given(st.integers(1, 60), st.data())
def test_views_compose(n, data):
    sc = SiteCollection.from_geojson(fc(*[SQ] * n, props=[{'site_id': f'p{i}', 'g': i % 4} for i in range(n)]), lazy=data.draw(st.booleans()))
    a, b = data.draw(st.integers(-n - 2, n + 2)), data.draw(st.integers(-n - 2, n + 2))
    assert sc[a:b].ids == sc.ids[a:b]
    k = data.draw(st.integers(1, n + 3))
    assert sum((c.ids for c in sc.chunks(k)), []) == sc.ids and all(len(c) <= k for c in sc.chunks(k))
    assert sc[a:b].filter_by_property('g', 1).ids == [i for i in sc.ids[a:b] if int(i[1:]) % 4 == 1]

# ---------------------------------------------------------------- purity

def test_geojson_path_imports_neither_ee_nor_geopandas(car):
    _, path, _ = car
    code = ('import sys\nfrom gee_polygons.sites import SiteCollection\n'
            f'sc = SiteCollection.from_file({str(path)!r}, lazy=True); sc.areas_ha(); list(sc[:3]); repr(sc); sc.bounds\n'
            "bad = [m for m in ('ee', 'geopandas', 'pyogrio') if m in sys.modules]\nassert not bad, bad\nprint('ok')")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr

def test_reprs_are_cheap_and_offline():
    sc = SiteCollection.from_geojson(fc(SQ, SQ), lazy=True)
    assert repr(sc) == "SiteCollection(2 sites, ids from 'site_id', lazy)"
    assert repr(sc[0]).startswith("Site('s0', 123.") and repr(sc.report) == 'ValidationReport: All 2 sites are valid.'

# ---------------------------------------------------------------- from_geojson decides by type and content

def test_from_geojson_path_text_or_object(tmp_path, monkeypatch):
    "Issue 11: a Path, or a str naming a file or ending in .geojson/.json, is a file; text starting with { or [ is JSON."
    data = fc(SQ, SQ, props=[{'site_id': 'a'}, {'site_id': 'b'}])
    (tmp_path / 'all_sites.geojson').write_text(json.dumps(data)); (tmp_path / 'plain').write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path)
    for src in ('all_sites.geojson', tmp_path / 'all_sites.geojson', 'plain', '  ' + json.dumps(data), json.dumps(data['features']), data):
        assert SiteCollection.from_geojson(src, lazy=True).ids == ['a', 'b'], src
    with pytest.raises(FileNotFoundError, match=r'^Sites file not found: nope\.json$'): SiteCollection.from_geojson('nope.json')
    with pytest.raises(ValueError, match=r"^GeoJSON: 'nope' is neither GeoJSON text"): SiteCollection.from_geojson('nope')
    with pytest.raises(ValueError, match=r'^all_sites\.geojson: id column'):
        (tmp_path / 'all_sites.geojson').write_text(json.dumps(fc(SQ, SQ, props=[{'site_id': 'a'}, {'site_id': 'a'}])))
        SiteCollection.from_geojson('all_sites.geojson')
    assert [SiteCollection.from_geojson(data, lazy_threshold=t).lazy for t in (1, 2)] == [True, False]


def test_bulk_geojson_parse_pauses_the_collector_and_restores_it(tmp_path, monkeypatch):
    "The cyclic GC is off while a GeoJSON file is parsed and packed (issue 14), and back on after, also after an error."
    import gc, json as _json
    import gee_polygons.sites as S
    feats = [{'type': 'Feature', 'properties': {'site_id': f's{i}'},
              'geometry': {'type': 'Polygon', 'coordinates': [[[i, 0], [i + 1, 0], [i + 1, 1], [i, 0]]]}} for i in range(3)]
    (tmp_path / 'a.geojson').write_text(_json.dumps({'type': 'FeatureCollection', 'features': feats}))
    seen, load = [], S.json.load
    monkeypatch.setattr(S.json, 'load', lambda f: seen.append(gc.isenabled()) or load(f))
    assert S.SiteCollection.from_file(tmp_path / 'a.geojson').ids == ['s0', 's1', 's2']
    assert seen == [False] and gc.isenabled()
    (tmp_path / 'bad.geojson').write_text('{"type": "FeatureCollection", "features": [,]}')
    with pytest.raises(ValueError, match='is not valid JSON'): S.SiteCollection.from_file(tmp_path / 'bad.geojson')
    assert gc.isenabled()
    assert S.SiteCollection.from_geojson({'type': 'FeatureCollection', 'features': feats}).ids == ['s0', 's1', 's2'] and gc.isenabled()

def test_one_pass_positions_equal_ring_by_ring():
    "The one-pass position read (`_flat_xy`) packs exactly what the ring-by-ring read packs, 2D, 3D, mixed and tuples."
    rng = np.random.default_rng(7)
    for trial in range(20):
        dims = [2, 3] if trial % 2 else [[2], [3]][trial % 4 // 2]
        rings = [[list(rng.uniform(-50, 50, int(rng.choice(dims)))) for _ in range(int(rng.integers(0, 8)))] for _ in range(50)]
        if trial % 3 == 0: rings = [[tuple(p) for p in r] for r in rings]
        xy, bad = sites_mod._rings_xy(rings)
        ref = [sites_mod._ring_xy(r) for r in rings]
        assert not bad.any() and np.array_equal(xy, np.concatenate(ref + [np.empty((0, 2))]))
    feats = [{'type': 'Feature', 'properties': {'id': i}, 'geometry': {'type': 'Polygon', 'coordinates': [[list(p) for p in r]]}}
             for i, r in enumerate(star(-50, -10, 8, 0.01, rng) for _ in range(30))]
    feats[3]['geometry']['coordinates'][0][2].append(123.0)  # one 3D position among 2D ones
    sc = SiteCollection.from_geojson({'type': 'FeatureCollection', 'features': feats})
    assert [s.geometry['coordinates'][0] for s in sc] == [[p[:2] for p in f['geometry']['coordinates'][0]] for f in feats]

"Code written for gee-polygons 0.0.4 runs here: every upstream call, with the shape of what it returns (issue 11 part 2)."
import json, os, shutil, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, shapely
import geopandas as gpd
from pyproj import Transformer
import ee
from gee_polygons.testing import offline, offline_init, restore_client
from gee_polygons.sample_data import sample_sites_path

TO5880 = Transformer.from_crs('EPSG:4326', 'EPSG:5880', always_xy=True)

@pytest.fixture
def deprecations():
    "Record every warning; the list of (category, message) is what the test checks."
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        yield ws

def renamed(ws) -> list:
    "Old spellings named by the DeprecationWarnings recorded in `ws`."
    return [str(w.message).split(' is the gee-polygons 0.0.4 spelling')[0] for w in ws if w.category is DeprecationWarning]

@pytest.fixture
def sites_file(tmp_path):
    "The sample sites in SIRGAS 2000 / Brazil Polyconic (EPSG:5880) with a crs member and `rid` ids, as upstream's files."
    fc = json.loads(sample_sites_path().read_text())
    for i, f in enumerate(fc['features']):
        f['properties'] = {'rid': 9000 + i, 'start_year': f['properties']['start_year'], 'area_ha': None}
        g = shapely.geometry.shape(f['geometry'])
        f['geometry'] = shapely.geometry.mapping(shapely.transform(g, lambda c: np.column_stack(TO5880.transform(c[:, 0], c[:, 1]))))
    fc['crs'] = {'type': 'name', 'properties': {'name': 'urn:ogc:def:crs:EPSG::5880'}}
    p = tmp_path / 'restoration_sites.geojson'; p.write_text(json.dumps(fc))
    return p

# ---------------------------------------------------------------- sites

def test_load_sites_and_sites_from_geodataframe(sites_file, deprecations):
    from gee_polygons.site import load_sites, sites_from_geodataframe
    from gee_polygons import load_sites as top_level, Site
    sites = load_sites(sites_file)
    assert top_level is load_sites and isinstance(sites, list) and len(sites) == 20 and all(isinstance(s, Site) for s in sites)
    assert (sites[0].site_id, sites[1].start_year) == ('9000', 2018)
    gdf = gpd.read_file(sites_file)
    filtered = gdf[gdf['rid'] > 9010].sort_values('start_year')
    chosen = sites_from_geodataframe(filtered)
    assert [s.site_id for s in chosen] == [str(r) for r in filtered['rid']]
    assert renamed(deprecations) == ['load_sites(path)', 'sites_from_geodataframe(gdf)']
    assert 'SiteCollection.from_file(path)' in str(deprecations[0].message)

def test_site_constructors(sites_file):
    from gee_polygons import Site
    raw = json.loads(sites_file.read_text())
    a = Site.from_geojson(raw['features'][0], 'EPSG:5880')
    gdf = gpd.read_file(sites_file)
    b = Site.from_geodataframe_row(gdf.iloc[0], source_crs=str(gdf.crs))
    rows = [Site.from_geodataframe_row(row, source_crs=str(gdf.crs)) for _, row in gdf.iterrows()]
    assert (a.site_id, b.site_id, len(rows), rows[-1].site_id) == ('9000', '9000', 20, '9019')
    assert abs(a.area_ha - b.area_ha) < 1e-6 * a.area_ha and isinstance(a.area_ha, float) and a.geometry['type'] in ('Polygon', 'MultiPolygon')
    assert isinstance(a.properties, dict) and a.properties['rid'] == 9000

def test_collection_loaders_and_properties(sites_file, deprecations):
    from gee_polygons import SiteCollection
    eager = SiteCollection.from_geojson(sites_file)
    lazy = SiteCollection.from_geojson(str(sites_file), lazy=True)
    auto = SiteCollection.from_geojson(sites_file, source_crs='EPSG:5880', lazy_threshold=10)
    assert (len(eager), eager.lazy, lazy.lazy, auto.lazy) == (20, False, True, True)
    again = SiteCollection.from_sites(list(eager)[:5])
    assert isinstance(again, SiteCollection) and len(again) == 5
    ids = eager.site_ids
    assert ids == eager.ids and ids[:2] == ['9000', '9001'] and all(isinstance(i, str) for i in ids)
    assert len(eager[2:5]) == 3 and len(eager.filter(lambda s: s.area_ha > 50)) > 0
    assert len(eager.filter_by_property('rid', 9003)) == 1
    assert renamed(deprecations) == ['SiteCollection.from_sites(sites)', 'sites.site_ids']
    with pytest.raises(FileNotFoundError, match='Sites file not found: .*missing.geojson'): SiteCollection.from_geojson('missing.geojson')

def test_earth_engine_objects_need_no_network(sites_file):
    "feature, buffer and feature_collection build client-side objects (the socket guard would refuse a request)."
    from gee_polygons import SiteCollection
    offline_init()
    try:
        sites = SiteCollection.from_geojson(sites_file)
        site = sites[0]
        assert isinstance(site.feature, ee.Feature) and isinstance(site.buffer(100), ee.Geometry)
        fc = sites.feature_collection
        assert isinstance(fc, ee.FeatureCollection) and ee.serializer.toJSON(fc).count('"rid"') == 20
        assert site.years(2023) == list(range(site.start_year, 2024))
    finally: restore_client()

def test_upstream_import_paths():
    import gee_polygons
    from gee_polygons.collection import SiteCollection, ChunkedResult
    from gee_polygons.site import Site, load_sites, sites_from_geodataframe
    from gee_polygons.export import ExportDestination, ExportConfig, ExportTask
    from gee_polygons.layers import CategoricalLayer, ContinuousLayer
    from gee_polygons.datasets.mapbiomas import MAPBIOMAS_LULC
    assert SiteCollection is gee_polygons.SiteCollection and ChunkedResult is gee_polygons.ChunkedResult
    assert hasattr(SiteCollection, 'extract_categorical') and hasattr(Site, 'extract_continuous') and hasattr(SiteCollection, 'export_continuous')

# ---------------------------------------------------------------- layers

def test_categorical_layer_as_upstream_spelled_it(deprecations):
    from gee_polygons.layers import CategoricalLayer
    from gee_polygons.datasets.mapbiomas import MAPBIOMAS_LULC
    from gee_polygons.datasets.dynamicworld import DYNAMIC_WORLD
    mb = CategoricalLayer(MAPBIOMAS_LULC.asset_id, temporal_mode='band', band_pattern='classification_{}', scale=30)
    dw = CategoricalLayer(DYNAMIC_WORLD.asset_id, temporal_mode='collection', band='label', scale=10)
    own = CategoricalLayer('users/someone/landcover', band_pattern='b{}')
    assert (mb.band_name(2020), mb.temporal_mode, mb.class_map, mb.years) == ('classification_2020', 'band', MAPBIOMAS_LULC.class_map, MAPBIOMAS_LULC.years)
    assert (dw.temporal, dw.band_name(2020), dw.class_name(1)) == ('collection', 'label', DYNAMIC_WORLD.class_name(1))
    assert (own.class_name(7), own.years, own.check_years([1950, 1951]), own.band_name(1950)) == ('class 7', None, [1950, 1951], 'b1950')
    assert renamed(deprecations) == ['CategoricalLayer(temporal_mode=...)'] * 2

# ---------------------------------------------------------------- extraction, offline

@pytest.fixture
def service(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path); restore_client()
    with offline() as svc: yield svc

UPSTREAM_CATEGORICAL = ['site_id', 'year', 'class_value', 'count', 'area_ha', 'class_name']

def test_site_extract_categorical_is_dataframe_like(service, sites_file):
    from gee_polygons import SiteCollection
    from gee_polygons.datasets.mapbiomas import MAPBIOMAS_LULC
    site = SiteCollection.from_geojson(sites_file)[0]
    df = site.extract_categorical(MAPBIOMAS_LULC, years=[2016, 2020], max_pixels=int(1e9), progress=False)
    assert set(UPSTREAM_CATEGORICAL) <= set(df.columns) and len(df) == len(df.data) > 0
    assert isinstance(df.head(), pd.DataFrame) and len(df.head(2)) == 2
    assert sorted(df['year'].unique()) == [2016, 2020] and len(df[df['year'] == 2016]) > 0
    assert abs(df[df['year'] == 2016]['area_ha'].sum() - site.area_ha) < 0.02 * site.area_ha
    assert df.groupby('class_name')['area_ha'].sum().shape[0] >= 1

def test_collection_extract_categorical_like_chunked_result(service, sites_file):
    from gee_polygons import SiteCollection, ChunkedResult
    from gee_polygons.datasets.mapbiomas import MAPBIOMAS_LULC
    collection = SiteCollection.from_geojson(sites_file)
    result = collection.extract_categorical(layer=MAPBIOMAS_LULC, years=range(2010, 2024), progress=False)
    assert isinstance(result, ChunkedResult) and isinstance(result.data, pd.DataFrame)
    assert sorted(result.data['year'].unique()) == list(range(2010, 2024)) and 0.9 < result.success_rate <= 1
    assert all(len(e) == 2 for e in result.errors)

@pytest.mark.parametrize('frequency, columns', [('yearly', ['year']), ('monthly', ['year', 'month']), ('all', ['date'])])
def test_extract_continuous_keeps_upstream_columns(service, sites_file, frequency, columns):
    from gee_polygons import SiteCollection
    from gee_polygons.layers import ContinuousLayer
    layer = ContinuousLayer('GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL', bands=['A00', 'A01'], scale=10)
    sites = SiteCollection.from_geojson(sites_file)[:2]
    df = sites.extract_continuous(layer, start_date='2020-01-01', end_date='2022-01-01', reducer='mean', frequency=frequency,
                                  max_pixels=int(1e9), progress=False)
    assert set(['site_id', *columns, 'A00', 'A01']) <= set(df.columns) and len(df) > 0
    assert list(df.data.columns) == ['site_id', 'period', 'A00', 'A01', 'valid_count']  # the tidy table is unchanged
    short = sites.extract_continuous(layer, start='2020-01-01', end='2022-01-01', frequency=frequency, progress=False)
    assert short.data.equals(df.data)

def test_export_calls(service, sites_file):
    from gee_polygons import SiteCollection
    from gee_polygons.export import ExportDestination, ExportConfig, ExportTask
    from gee_polygons.datasets.mapbiomas import MAPBIOMAS_LULC
    from gee_polygons.layers import ContinuousLayer
    sites = SiteCollection.from_geojson(sites_file)
    task = sites.export_categorical(layer=MAPBIOMAS_LULC, years=range(2010, 2024),
                                    destination=ExportDestination(type='drive', folder='exports'),
                                    config=ExportConfig(chunk_size=50, max_concurrent=15))
    emb = ContinuousLayer('GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL', bands=['A00'], scale=10)
    cont = sites.export_continuous(emb, '2020-01-01', '2022-01-01', ExportDestination(type='drive', folder='exports', file_prefix='emb'),
                                   reducer='mean', frequency='yearly', config=ExportConfig(chunk_size=50))
    for t in (task, cont):
        assert isinstance(t, ExportTask) and t.wait(timeout_minutes=2, poll_interval_sec=0.1, progress=False)
        assert set(t.status().values()) == {'COMPLETED'} and len(t.results_info()) == len(t.task_ids) == 1

def test_export_takes_upstream_keywords(service, sites_file):
    "max_pixels= on both exports, and start=/end= for export_continuous's start_date/end_date."
    from gee_polygons import SiteCollection
    from gee_polygons.export import ExportDestination, ExportConfig
    from gee_polygons.datasets.mapbiomas import MAPBIOMAS_LULC
    from gee_polygons.layers import ContinuousLayer
    sites = SiteCollection.from_geojson(sites_file)[:5]
    emb = ContinuousLayer('GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL', bands=['A00'], scale=10)
    cat = sites.export_categorical(MAPBIOMAS_LULC, [2016], ExportDestination('drive', 'exports', 'mp'), max_pixels=int(1e9))
    short = sites.export_continuous(emb, start='2020-01-01', end='2022-01-01', destination=ExportDestination('drive', 'exports', 'emb2'),
                                    max_pixels=int(1e9))
    with pytest.raises(ValueError, match='Give start_date= or start=, not both'):
        try: sites.export_continuous(emb, '2020-01-01', '2022-01-01', ExportDestination('drive', 'exports', 'x'), start='2020-01-01')
        except TypeError as e: raise ValueError(str(e))
    for t in (cat, short): assert t.wait(timeout_minutes=2, poll_interval_sec=0.1, progress=False)

# ---------------------------------------------------------------- areas

def test_area_is_geodesic_not_the_planar_property(sites_file):
    "The planar EPSG:5880 area (what upstream's files store as area_ha) is larger than the true area here."
    from gee_polygons import SiteCollection
    raw = json.loads(sites_file.read_text())
    planar = np.array([shapely.geometry.shape(f['geometry']).area / 1e4 for f in raw['features']])
    excess = planar / SiteCollection.from_geojson(sites_file).areas_ha() - 1
    assert 0.001 < excess.min() and excess.max() < 0.03

UPSTREAM_SAMPLE = os.environ.get('GEE_POLYGONS_UPSTREAM_SAMPLE')  # upstream's data/restoration_sites_subset.geojson

@pytest.mark.skipif(not UPSTREAM_SAMPLE, reason='set GEE_POLYGONS_UPSTREAM_SAMPLE to upstream data/restoration_sites_subset.geojson')
def test_upstream_sample_area_property_is_planar_5880():
    from gee_polygons import SiteCollection
    raw = json.loads(Path(UPSTREAM_SAMPLE).read_text())
    prop = np.array([f['properties']['area_ha'] for f in raw['features']], float)
    planar = np.array([shapely.geometry.shape(f['geometry']).area / 1e4 for f in raw['features']])
    excess = prop / SiteCollection.from_geojson(UPSTREAM_SAMPLE).areas_ha() - 1
    assert np.allclose(prop, planar, rtol=1e-9) and 0.02 < excess.max() < 0.03 and excess.min() > 0

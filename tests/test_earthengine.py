"Exhaustive offline checks of every Earth Engine expression gee_polygons builds (real client, no network)."
import json
import pytest
import ee
from gee_polygons import earthengine as E
from gee_polygons.layers import CategoricalLayer, ContinuousLayer
from gee_polygons.sample_data import sample_sites_path
from gee_polygons.sites import SiteCollection
from gee_polygons.testing import offline_init, algorithm_names, known_algorithms, block_sockets
from gee_polygons.datasets.registry import LAYERS

@pytest.fixture(scope='module', autouse=True)
def _offline():
    block_sockets()
    offline_init()

@pytest.fixture(scope='module')
def sites(): return SiteCollection.from_file(sample_sites_path())[:4]

CATEGORICAL = [l for l in LAYERS.values() if isinstance(l, CategoricalLayer)]
CONTINUOUS = [l for l in LAYERS.values() if isinstance(l, ContinuousLayer)]

def count_calls(obj, name) -> int:
    "Invocations of algorithm `name` in `obj`'s request, counting each shared value once."
    return json.dumps(json.loads(ee.serializer.toJSON(obj))).count(f'"functionName": "{name}"')

def test_presets_cover_both_kinds():
    assert {l.temporal for l in CATEGORICAL} == {'band', 'collection'}
    assert CONTINUOUS and any(l.preprocess for l in CONTINUOUS)

@pytest.mark.parametrize('layer', CATEGORICAL, ids=lambda l: l.name)
def test_categorical_expressions(layer, sites):
    years = layer.years[-3:]
    t = E.categorical_table(layer, years, sites, tile_scale=2, max_pixels_per_region=10**8)
    names = algorithm_names(t)
    assert names <= known_algorithms(), names - known_algorithms()
    assert count_calls(t, 'Image.reduceRegions') == 1
    assert {'Image.pixelArea', 'Reducer.group', 'Reducer.sum', 'Reducer.combine'} <= names
    assert names.isdisjoint({'Image.reduceRegion', 'Reducer.count'})  # no per-site reductions, no count x scale²
    assert ('Reducer.mode' in names) == layer.is_collection
    assert algorithm_names(E.layer_image(layer, years)) <= known_algorithms()

@pytest.mark.parametrize('frequency', E.FREQUENCIES)
@pytest.mark.parametrize('reducer', list(E.REDUCERS))
@pytest.mark.parametrize('layer', CONTINUOUS, ids=lambda l: l.name)
def test_continuous_expressions(layer, reducer, frequency, sites):
    t = E.continuous_table(layer, *E._example_window(layer, frequency), sites, reducer=reducer, frequency=frequency)
    names = algorithm_names(t)
    assert names <= known_algorithms(), names - known_algorithms()
    assert count_calls(t, 'Image.reduceRegions') == 1
    assert f'Reducer.{reducer}' in names and 'ImageCollection.toBands' in names
    assert ('AggregateFeatureCollection.array' in names) == (frequency == 'all')

def test_all_expressions_use_only_published_algorithms(sites):
    ex = E.all_expressions(sites)
    assert len(ex) == 1 + 2 * len(CATEGORICAL) + len(CONTINUOUS) * len(E.FREQUENCIES) * len(E.REDUCERS)
    used = set().union(*map(algorithm_names, ex.values()))
    assert used - known_algorithms() == set()
    assert all(E.payload_bytes(e) < E.MAX_REQUEST_BYTES for e in ex.values())

def test_reused_server_functions_survive_reinitialisation(sites):
    "Functions built once (earthengine.server_function) serialize the same after ee.Reset + a new initialisation."
    layer = CATEGORICAL[0]
    before = ee.serializer.toJSON(E.categorical_table(layer, layer.years[-2:], sites))
    ee.Reset(); offline_init()
    assert ee.serializer.toJSON(E.categorical_table(layer, layer.years[-2:], sites)) == before

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

@pytest.mark.parametrize('layer', CATEGORICAL, ids=lambda l: l.name)
def test_transitions_expressions(layer, sites):
    pairs = E.year_pairs(layer.years[-4:]) + [(layer.years[0], layer.years[-1])]
    t = E.transitions_table(layer, pairs, sites, tile_scale=2, max_pixels_per_region=10**8, coverage=True)
    names = algorithm_names(t)
    assert names <= known_algorithms(), names - known_algorithms()
    assert count_calls(t, 'Image.reduceRegions') == 1  # every pair in one reduction
    assert {'Image.pixelArea', 'Reducer.group', 'Image.multiply', 'Image.add', 'Number.mod'} <= names
    assert names.isdisjoint({'Image.reduceRegion', 'Reducer.count'})
    assert ('Reducer.mode' in names) == layer.is_collection
    assert E.payload_bytes(t) - E.payload_bytes(E.sites_fc(sites)) < 40_000


def test_transition_codes_fit_a_32_bit_integer():
    assert max(max(l.class_map) for l in CATEGORICAL) < E.TRANSITION_BASE
    assert (E.TRANSITION_BASE - 1) * E.TRANSITION_BASE + E.TRANSITION_BASE - 1 < 2**31 - 1


@pytest.mark.parametrize('frequency', E.FREQUENCIES)
@pytest.mark.parametrize('reducer', list(E.REDUCERS))
@pytest.mark.parametrize('layer', CONTINUOUS, ids=lambda l: l.name)
def test_continuous_expressions(layer, reducer, frequency, sites):
    t = E.continuous_table(layer, *E._example_window(layer, frequency), sites, reducer=reducer, frequency=frequency)
    names = algorithm_names(t)
    assert names <= known_algorithms(), names - known_algorithms()
    assert count_calls(t, 'Image.reduceRegions') == 1
    assert f'Reducer.{reducer}' in names and 'ImageCollection.reduce' in names
    assert ('AggregateFeatureCollection.array' in names) == (frequency == 'all')

def test_all_expressions_use_only_published_algorithms(sites):
    ex = E.all_expressions(sites)
    assert len(ex) == 1 + 3 * len(CATEGORICAL) + len(CONTINUOUS) * len(E.FREQUENCIES) * len(E.REDUCERS)
    used = set().union(*map(algorithm_names, ex.values()))
    assert used - known_algorithms() == set()
    assert all(E.payload_bytes(e) < E.MAX_REQUEST_BYTES for e in ex.values())

def test_reused_server_functions_survive_reinitialisation(sites):
    "Functions built once (earthengine.server_function) serialize the same after ee.Reset + a new initialisation."
    layer = CATEGORICAL[0]
    before = ee.serializer.toJSON(E.categorical_table(layer, layer.years[-2:], sites))
    ee.Reset(); offline_init()
    assert ee.serializer.toJSON(E.categorical_table(layer, layer.years[-2:], sites)) == before


def reductions(obj) -> list:
    "Arguments of every Image.reduceRegions in `obj`'s request."
    found = []
    def walk(x):
        if isinstance(x, dict):
            f = x.get('functionInvocationValue')
            if f and f.get('functionName') == 'Image.reduceRegions': found.append(f['arguments'])
            for v in x.values(): walk(v)
        elif isinstance(x, list):
            for v in x: walk(v)
    walk(ee.serializer.encode(obj, is_compound=False))
    return found

def test_every_reduction_of_a_composite_names_its_grid(sites):
    "Composites (a collection layer's yearly mode, every continuous median) name crs and scale; image layers their own grid."
    for name, e in E.all_expressions(sites).items():
        if '_table' not in name: continue
        layer = LAYERS[name.split('/')[0]]
        composite = isinstance(layer, ContinuousLayer) or layer.is_collection
        for r in reductions(e):
            assert 'scale' in r, name
            crs = r.get('crs', {}).get('functionInvocationValue', {}).get('arguments', {}).get('crs')
            assert crs == ({'constantValue': 'EPSG:4326'} if composite else None), name

def test_a_named_grid_reaches_every_reduction(sites):
    cont = CONTINUOUS[0]
    t = E.continuous_table(cont, *E._example_window(cont, 'yearly'), sites, crs='EPSG:32723', crs_transform=[10, 0, 5e5, 0, -10, 8e6], coverage=True)
    rs = reductions(t)
    assert len(rs) == 2 and all('scale' not in r and r['crsTransform'] == {'constantValue': [10.0, 0.0, 5e5, 0.0, -10.0, 8e6]} for r in rs)
    with pytest.raises(ValueError, match='not both'): E.categorical_table(CATEGORICAL[0], CATEGORICAL[0].years[-1], sites, scale=30, crs_transform=[1, 0, 0, 0, -1, 0])

def test_no_mask_reaches_the_categorical_reducer(sites):
    "Every class band is unmasked to UNCLASSIFIED (outside the footprint too); pixelArea and the constant are never masked."
    for layer in CATEGORICAL:
        t = json.dumps(ee.serializer.encode(E.categorical_table(layer, layer.years[-2:], sites), is_compound=False))
        assert '"Image.updateMask"' not in t and t.count('"Image.unmask"') >= 2
        assert '"sameFootprint": {"constantValue": false}' in t

@pytest.mark.parametrize('layer', CATEGORICAL, ids=lambda l: l.name)
def test_reused_pieces_give_the_fresh_request(layer, sites):
    "Tables built with the reused image, reducer and functions serialize exactly as a build from scratch does."
    ys = layer.years[-3:]
    builds = [lambda: E.categorical_table(layer, ys, sites, coverage=True), lambda: E.transitions_table(layer, E.year_pairs(ys), sites[:2])]
    for build in builds:
        build(); again = ee.serializer.toJSON(build())
        E._FUNCTIONS.clear()
        assert ee.serializer.toJSON(build()) == again

def test_constants_are_the_plain_containers_written_out():
    "ConstantList and ConstantDictionary give the expression plain ee.List / ee.Dictionary give, in fewer nodes."
    rows, legend = [['a', [[[1.5, 2.0]]]], [3, None, True]], {'3': 'Forest', '15': 'Pasture', 'x': [1, {'y': 2}]}
    inline = lambda o: ee.serializer.encode(o, is_compound=False)
    assert inline(E.ConstantList(rows)) == inline(ee.List(rows))
    assert inline(E.ConstantDictionary(legend)) == inline(ee.Dictionary(legend))
    assert ee.serializer.toJSON(E.ConstantDictionary(legend).get('3')) == ee.serializer.toJSON(ee.Dictionary(legend).get('3'))

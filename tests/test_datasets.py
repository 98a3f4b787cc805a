"The dataset presets: pinned Collection 11 / Collection 10 ids and years, upstream (0.0.4) names, class-name spellings."
import re, subprocess, sys, warnings
import pandas as pd
import pytest

from gee_polygons.datasets import mapbiomas as mb
from gee_polygons.datasets.registry import LAYERS, get_layer, class_code, select_classes, preset_for_asset
from gee_polygons.layers import CategoricalLayer

C11 = 'projects/mapbiomas-public/assets/brazil/lulc/collection11/'
C10 = 'projects/mapbiomas-public/assets/brazil/lulc/collection10/'
PINNED = {  # preset -> (asset id, first year, last year)
    'MAPBIOMAS_LULC_C11': (C11 + 'mapbiomas_brazil_collection11_coverage_v3', 1985, 2025),
    'MAPBIOMAS_DEFORESTATION_C11': (C11 + 'mapbiomas_brazil_collection11_deforestation_secondary_vegetation_v5', 1987, 2025),
    'MAPBIOMAS_LULC_C10': (C10 + 'mapbiomas_brazil_collection10_coverage_v2', 1985, 2024),
    'MAPBIOMAS_DEFORESTATION_C10': (C10 + 'mapbiomas_brazil_collection10_deforestation_secondary_vegetation_v2', 1987, 2024)}

@pytest.mark.parametrize('name', PINNED)
def test_mapbiomas_ids_and_years_are_pinned(name):
    layer, (asset, first, last) = getattr(mb, name), PINNED[name]
    assert layer.asset_id == asset
    assert layer.years == list(range(first, last + 1))
    assert layer.band_name(last) == f'classification_{last}' and layer.scale == 30 and not layer.is_collection

def test_latest_names_mean_collection_11():
    assert mb.MAPBIOMAS_LULC is mb.MAPBIOMAS_LULC_C11 and mb.MAPBIOMAS_DEFORESTATION is mb.MAPBIOMAS_DEFORESTATION_C11
    assert get_layer('mapbiomas_lulc') is mb.MAPBIOMAS_LULC_C11 and get_layer('mapbiomas_lulc_c11') is mb.MAPBIOMAS_LULC_C11
    assert get_layer('mapbiomas-deforestation-c10') is mb.MAPBIOMAS_DEFORESTATION_C10
    assert 'Collection 11' in mb.MAPBIOMAS_LULC.description and 'Collection 10' in mb.MAPBIOMAS_LULC_C10.description

def test_collection_11_legend():
    legend = {c: (n, col) for c, n, col in mb.MAPBIOMAS_C11_LEGEND}
    assert len(legend) == len(mb.MAPBIOMAS_C11_LEGEND) == 32
    assert {7, 77, 84} <= set(legend) and not {1, 10, 14, 18, 19, 22, 26, 27, 36} & set(legend)
    assert legend[12][0] == 'Grassland Formation' and legend[84] == ('Marisma', '#6fa8a3')
    assert all(re.fullmatch('#[0-9a-f]{6}', col) for _, col in legend.values())
    assert mb.MAPBIOMAS_LULC.class_map == {c: n for c, (n, _) in legend.items()}
    assert [n for _, n, _ in mb.DEFORESTATION_LEGEND][4] == 'Secondary Vegetation Regrowth'

def test_every_preset_records_its_last_check():
    for name, layer in LAYERS.items():
        assert re.fullmatch(r'\d{4}-\d{2}-\d{2}', layer.checked), name
        assert layer.checked_source, name

def test_preset_for_asset():
    assert preset_for_asset(C10 + 'mapbiomas_brazil_collection10_coverage_v2') is mb.MAPBIOMAS_LULC_C10
    assert preset_for_asset('users/nobody/x') is None

UPSTREAM = [  # module, old name, words of the new spelling the warning must name
    ('mapbiomas', 'MAPBIOMAS_DEFREG', 'MAPBIOMAS_DEFORESTATION'), ('mapbiomas', 'LULC_CLASS_MAP', 'MAPBIOMAS_LULC.class_map'),
    ('mapbiomas', 'LULC_PALETTE', 'MAPBIOMAS_LULC.palette'), ('mapbiomas', 'DEFREG_CLASS_MAP', 'MAPBIOMAS_DEFORESTATION.class_map'),
    ('mapbiomas', 'DEFREG_PALETTE', 'MAPBIOMAS_DEFORESTATION.palette'),
    ('dynamicworld', 'DYNAMIC_WORLD_CLASS_MAP', 'DYNAMIC_WORLD.class_map'), ('dynamicworld', 'DYNAMIC_WORLD_PALETTE', 'DYNAMIC_WORLD.palette'),
    ('alpha_embeddings', 'ALPHA_EMBEDDINGS', 'SATELLITE_EMBEDDING'), ('sentinel2', 'SENTINEL2_NDVI_EVI', 'SENTINEL2')]

@pytest.mark.parametrize('module,name,new', UPSTREAM, ids=[u[1] for u in UPSTREAM])
def test_upstream_names_import_with_a_deprecation_warning(module, name, new):
    with pytest.warns(DeprecationWarning, match=re.escape(f'{name} is the gee-polygons 0.0.4 name; use ') + '.*' + re.escape(new)):
        value = getattr(__import__(f'gee_polygons.datasets.{module}', fromlist=[name]), name)
    assert value is not None

def test_upstream_values():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        from gee_polygons.datasets.mapbiomas import MAPBIOMAS_DEFREG, DEFREG_CLASS_MAP, LULC_CLASS_MAP
        from gee_polygons.datasets.dynamicworld import DYNAMIC_WORLD_CLASS_MAP
        from gee_polygons.datasets.sentinel2 import SENTINEL2_NDVI_EVI
        from gee_polygons.datasets.alpha_embeddings import ALPHA_EMBEDDINGS
    assert isinstance(MAPBIOMAS_DEFREG, CategoricalLayer) and MAPBIOMAS_DEFREG.asset_id == mb.MAPBIOMAS_DEFORESTATION.asset_id
    assert DEFREG_CLASS_MAP[5] == 'Secondary Veg Regrowth' and DEFREG_CLASS_MAP[0] == 'Other'
    assert LULC_CLASS_MAP == mb.MAPBIOMAS_LULC.class_map and DYNAMIC_WORLD_CLASS_MAP[1] == 'trees'
    assert SENTINEL2_NDVI_EVI.bands == ['NDVI', 'EVI'] and ALPHA_EMBEDDINGS is LAYERS['satellite_embedding']
    with pytest.raises(AttributeError, match='no attribute'): mb.NOT_A_PRESET

def test_old_class_spellings_find_their_rows():
    dfr = mb.MAPBIOMAS_DEFORESTATION
    t = pd.DataFrame({'class_value': [5, 3, 1], 'class_name': [dfr.class_name(5), dfr.class_name(3), dfr.class_name(1)]})
    assert select_classes(t, 'Secondary Veg Regrowth', dfr).class_value.tolist() == [5]
    assert select_classes(t, ['Secondary Vegetation', 'secondary veg regrowth'], dfr).class_value.tolist() == [5, 3]
    assert class_code(mb.MAPBIOMAS_LULC, 'Grassland') == class_code(mb.MAPBIOMAS_LULC_C10, 'Grassland Formation') == 12
    assert class_code(LAYERS['dynamic_world'], 'Shrub & Scrub') == 5
    with pytest.raises(ValueError, match="no class 'Forestt'"): class_code(mb.MAPBIOMAS_LULC, 'Forestt')

def test_upstream_sentinel2_functions_build_the_same_indices():
    import ee
    from gee_polygons.testing import offline_init
    from gee_polygons.datasets.sentinel2 import add_indices, mask_s2_clouds, s2_indices
    offline_init()
    with pytest.warns(DeprecationWarning, match='use s2_indices'): img = add_indices(ee.Image('x'))
    js = ee.serializer.toJSON(img)
    assert '"NDVI"' in js and '"EVI"' in js and ee.serializer.toJSON(s2_indices(ee.Image('x').multiply(1e-4))).count('normalizedDifference') == 2
    with pytest.warns(DeprecationWarning, match='s2_clear'): m = mask_s2_clouds(ee.Image('x'))
    assert '"SCL"' in ee.serializer.toJSON(m) and 'QA60' not in ee.serializer.toJSON(m)

def test_importing_presets_never_imports_ee():
    code = ('import sys, warnings; warnings.simplefilter("ignore"); import gee_polygons.datasets.registry, '
            'gee_polygons.datasets.alpha_embeddings as a; a.ALPHA_EMBEDDINGS; print("ee" in sys.modules)')
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip() == 'False'

"""`gee_polygons.verify.verify()` against the emulator: it passes when the emulator answers as the library assumes, and
fails when the emulator is configured to disagree (another earth model, grouped reducers answering differently)."""
import inspect
import pytest

pytest.importorskip('rasterio')
from gee_polygons import gateway, verify as V
from gee_polygons.datasets.mapbiomas import MAPBIOMAS_LULC
from gee_polygons.emulator import Emulator
from gee_polygons.evaluator import Evaluator
from gee_polygons.sample_data import sample_raster_path

EVALUATOR_OPTIONS = set(inspect.signature(Evaluator).parameters)
EMULATOR_OPTIONS = set(inspect.signature(Emulator).parameters)
SETUP = ('/rest', '/algorithms')  # the client's discovery requests at initialisation


def served(fix=None, evaluator=None, **emulator):
    "An emulator whose evaluator serves the MapBiomas preset from the bundled raster; `fix(rows)` changes its answers."
    ev = Evaluator({MAPBIOMAS_LULC.asset_id: sample_raster_path()}, **(evaluator or {}))
    return Emulator(evaluate=ev if fix is None else (lambda expr: fix(ev(expr))), **emulator)


def failing(report) -> list:
    return [r['check'] for r in report.rows if not r['ok']]


def test_passes_offline_in_a_dozen_requests():
    with served() as emu:
        with gateway.observe() as calls: report = V.verify(ee_url=emu.url, progress=False)
        work = [e for e in emu.log if not e['path'].endswith(SETUP)]
    assert report.ok, str(report)
    assert len(work) <= 12 and {k for k, _ in calls} <= {'initialize', 'computeFeatures', 'listOperations'}
    assert len(work) == sum(k != 'initialize' for k, _ in calls)  # every request went through the gateway
    assert [r['check'] for r in report.rows] == [
        'pixelArea earth model (1° pixel at the equator)', 'masking rule of multi-input reducers',
        'categorical_table vs naive reductions', 'a gap in one year leaves the other intact', 'listOperations order and paging']
    assert str(report).splitlines()[0].split() == ['check', 'found', 'assumed', 'ok']
    assert str(report).endswith('verify: ok')


def test_uses_an_existing_connection(capsys):
    with served() as emu:
        emu.connect()
        report = V.verify()
    assert report.ok
    assert 'verify: earth model and masking rule...' in capsys.readouterr().err


@pytest.mark.skipif('earth' not in EVALUATOR_OPTIONS, reason='the evaluator has no earth= option yet')
def test_fails_when_the_service_uses_another_earth_model():
    other = next(k for k in ('wgs84', 'sphere') if k != V.EE_EARTH)
    with served(evaluator={'earth': other}) as emu: report = V.verify(ee_url=emu.url, progress=False)
    assert failing(report) == ['pixelArea earth model (1° pixel at the equator)']
    assert report.rows[0]['found'].endswith(f': {other}')


@pytest.mark.parametrize('earth', list(V.EARTHS))
def test_earth_row_names_the_measured_model(earth):
    scale = V.cell_area_km2(0, 1, earth=earth) / V.cell_area_km2(0, 1, earth=V.EE_EARTH)
    fix = lambda rows: [dict(r, area=r['area'] * scale) if r.get('check') == 'earth' else r for r in rows]
    with served(fix) as emu: report = V.verify(ee_url=emu.url, progress=False)
    assert report.rows[0]['found'].endswith(f': {earth}')
    assert report.ok == (earth == V.EE_EARTH)


@pytest.mark.parametrize('factor', [1.01, 0.995, 1.0015])
def test_fails_when_grouped_sums_answer_differently(factor):
    fix = lambda rows: [dict(r, groups=[dict(g, sum=g['sum'] * factor) for g in r['groups']]) if 'groups' in r else r
                        for r in rows]
    with served(fix) as emu: report = V.verify(ee_url=emu.url, progress=False)
    assert failing(report) == ['categorical_table vs naive reductions', 'a gap in one year leaves the other intact']


def test_passes_when_grouped_sums_differ_within_tolerance():
    fix = lambda rows: [dict(r, groups=[dict(g, sum=g['sum'] * 1.0005) for g in r['groups']]) if 'groups' in r else r
                        for r in rows]
    with served(fix) as emu: assert V.verify(ee_url=emu.url, progress=False).ok


def test_fails_when_a_masked_year_removes_pixels_from_the_other():
    "A service dropping the gap site's rows (what joint masking did to the old expression) fails the gap row only."
    def fix(rows):
        gap = [r for r in rows if r.get('site_id') == 'verify_1' and 'area_ha' in r]
        return [] if gap and len(rows) == len(gap) else rows
    with served(fix) as emu: report = V.verify(ee_url=emu.url, progress=False)
    assert failing(report) == ['a gap in one year leaves the other intact']


@pytest.mark.skipif('mask_mode' not in EVALUATOR_OPTIONS, reason="the evaluator has no mask_mode= option yet")
@pytest.mark.parametrize('mode', ['per_input', 'joint'])
def test_reports_the_masking_rule_and_tables_do_not_depend_on_it(mode):
    with served(evaluator={'mask_mode': mode}) as emu: report = V.verify(ee_url=emu.url, progress=False)
    assert report.rows[1]['found'] == mode
    assert report.ok, str(report)


@pytest.mark.skipif('list_order' not in EMULATOR_OPTIONS, reason='the emulator has no list_order= option yet')
@pytest.mark.parametrize('order,seen', [('oldest', 'oldest first'), ('newest', 'newest first')])
def test_reports_listing_order_without_relying_on_it(order, seen):
    import ee
    with served(list_order=order) as emu:
        emu.connect()
        for i in range(3):
            gateway.start_task(ee.batch.Export.table.toDrive(collection=V.probe_table(), description=f'v{i}', folder='v'))
            emu.advance(1)
        report = V.verify(progress=False)
    assert report.rows[-1]['found'].startswith(f'3 operations, {seen}; pages of 2: 2+1, as in')
    assert report.ok


def test_errors_become_rows():
    with Emulator(evaluate=Evaluator({})) as emu: report = V.verify(ee_url=emu.url, progress=False)
    assert [r['ok'] for r in report.rows] == [True, True, False, False, True]
    assert 'is not mapped to local data' in report.rows[2]['found'] and not report.ok


@pytest.mark.skipif(not hasattr(__import__('gee_polygons.testing').testing, 'offline'), reason='testing.offline not there yet')
def test_passes_through_testing_offline():
    from gee_polygons.testing import offline
    with offline() as off: report = V.verify(ee_url=off.url, progress=False)
    assert report.ok, str(report)


def test_the_emulator_answers_on_the_assumed_earth_model():
    assert inspect.signature(Evaluator).parameters['earth'].default == V.EE_EARTH


def test_runs_without_the_local_extra():
    "verify needs no rasterio/affine (the `local` extra): a user with only the base install runs it first."
    import subprocess, sys
    code = ("import sys; sys.modules.update(dict.fromkeys(['affine', 'rasterio', 'exactextract']))\n"
            "import gee_polygons.verify as v; from gee_polygons.testing import offline_init; offline_init()\n"
            "v.probe_table(); v.naive_table(); v.gapped_layer(); print(v.earth_row(12363.7e6)['ok'])")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == 'True', out.stderr


def _mask_dependent_table(layer, years, sites):
    "A table whose answer depends on the masking rule (the shape before issue 10): each year's area masked like its class band, every year in one combined reducer."
    import ee
    img = red = None
    for y in years:
        c = ee.Image(layer.asset_id).select([layer.band_name(y)])
        part, g = c.addBands(ee.Image.pixelArea().updateMask(c.mask())), ee.Reducer.sum().group(0, 'class').setOutputs([f'g{y}'])
        img, red = (part, g) if img is None else (img.addBands(part), red.combine(g))
    fc = ee.FeatureCollection([ee.Feature(ee.Geometry(s.geometry, None, False), {'site_id': s.site_id}) for s in sites])
    return img.reduceRegions(fc, red, scale=float(layer.scale))


def _as_table_rows(rows):
    "The reduced features of `_mask_dependent_table` as categorical_table rows (other rows unchanged)."
    out = []
    for r in rows:
        years = [k for k in r if k[0] == 'g' and k[1:].isdigit()]
        out += [dict(site_id=r['site_id'], year=int(k[1:]), class_value=g['class'], area_ha=g['sum'] / 1e4, count=0)
                for k in years for g in r[k]] if years else [r]
    return out


@pytest.mark.parametrize('mode', ['per_input', 'joint'])
def test_catches_a_table_that_depends_on_the_masking_rule(mode, monkeypatch):
    monkeypatch.setattr(V, 'categorical_table', _mask_dependent_table)
    with served(_as_table_rows, evaluator={'mask_mode': mode}) as emu: report = V.verify(ee_url=emu.url, progress=False)
    assert failing(report) == ([] if mode == 'per_input' else ['a gap in one year leaves the other intact']), str(report)


def test_the_module_is_callable():
    import gee_polygons
    with served() as emu: report = gee_polygons.verify(ee_url=emu.url, progress=False)
    assert report.ok and isinstance(report, V.VerifyReport)

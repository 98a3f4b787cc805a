"""The gateway against the real client and the emulator: error classification by Earth Engine's own texts, backoff
through bursts of unavailable answers, forgotten operations, and `init`'s one-line answers."""
import json, socket, time

import ee
import google.auth, google.auth.exceptions
import pytest

from gee_polygons import gateway
from gee_polygons.emulator import EE_ERRORS, Emulator, connect_client, site_ids
from gee_polygons.earthengine import categorical_table
from gee_polygons.sample_data import SAMPLE_LAYER, sample_sites_path
from gee_polygons.sites import SiteCollection
from gee_polygons.testing import block_sockets, unblock_sockets


@pytest.fixture
def waits(monkeypatch):
    out = []
    monkeypatch.setattr(gateway.policy, 'sleep', out.append)
    return out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.mark.parametrize('text', [m for c, s, m in EE_ERRORS.values() if s in ('UNAVAILABLE', 'INTERNAL')]
                         + [EE_ERRORS['quota'][2], 'Internal error encountered.', '<HttpError 429 "Too Many Requests">'])
def test_real_transient_texts_are_transient(text):
    assert gateway.is_transient(ee.EEException(text)) and not gateway.is_scaling_error(ee.EEException(text))


@pytest.mark.parametrize('name', ['memory', 'timeout', 'aggregations'])
def test_real_scaling_texts_are_scaling_not_transient(name):
    err = ee.EEException(EE_ERRORS[name][2])
    assert gateway.is_scaling_error(err) and not gateway.is_transient(err)


@pytest.mark.parametrize('text', ['Image.load: Asset not found.', 'Collection.first: Error in map(ID=503)',
                                  'Band 429 not found', EE_ERRORS['queue_full'][2].format(3000), EE_ERRORS['payload'][2]])
def test_codes_inside_texts_and_permanent_errors_are_not_transient(text):
    assert not gateway.is_transient(ee.EEException(text))


def test_status_dicts_are_classified_by_code_and_status():
    assert gateway.is_transient({'code': 14, 'message': 'whatever'})  # an Operation error: UNAVAILABLE
    assert gateway.is_transient({'error': {'code': 503, 'message': 'x', 'status': 'UNAVAILABLE'}})
    assert not gateway.is_transient({'code': 3, 'message': 'Image.load: Asset not found.'})
    assert gateway.is_scaling_error({'code': 3, 'message': 'User memory limit exceeded.'})


def test_a_burst_of_eight_unavailable_answers_is_ridden_out_with_backoff(waits):
    three = SiteCollection.from_file(sample_sites_path())[:3]
    rows = lambda ids: [dict(site_id=i, year=2016, class_value=3, area_m2=1.0) for i in ids]
    with Emulator(evaluate=lambda expr: rows(site_ids(expr))) as emu:
        emu.connect(max_retries=0)
        emu.fail_http('table:computeFeatures$', 503, times=8)
        got = gateway.compute_features(categorical_table(SAMPLE_LAYER, [2016], three))
        assert [f['properties']['site_id'] for f in got] == three.ids
        answers = [e['status'] for e in emu.log if e['path'].endswith('computeFeatures')]
        assert answers == [503] * 8 + [200]
        assert len(waits) == 8 and waits[-1] > waits[0] and all(b >= a / 2 for a, b in zip(waits, waits[1:]))


def test_an_export_start_survives_a_burst_and_starts_once(waits):
    with Emulator() as emu:
        emu.connect(max_retries=0)
        emu.fail_http('table:export$', 503, times=8, method='POST')
        t = ee.batch.Export.table.toDrive(ee.FeatureCollection([ee.Feature(None, {'a': 1})]), description='burst',
                                          folder='f', fileNamePrefix='burst')
        assert gateway.start_task(t) == t.id and list(emu.ops) == [t.id]
        assert len(waits) == 8


def test_persistent_unavailability_still_fails_after_the_retries(waits):
    with Emulator() as emu:
        emu.connect(max_retries=0)
        emu.fail_http('/operations$', 'unavailable', times=None)
        with pytest.raises(ee.EEException, match='The service is currently unavailable.'): gateway.list_operations()
        assert 1 <= len(waits) <= gateway.policy.retries and sum(waits) <= gateway.policy.max_total_wait


class FakeTime:
    "A clock that moves only when slept on."
    def __init__(self): self.now, self.waits = 0.0, []
    def sleep(self, s): self.now += s; self.waits.append(s)
    def clock(self): return self.now


@pytest.fixture
def fake_time(monkeypatch):
    ft = FakeTime()
    monkeypatch.setattr(gateway.policy, 'sleep', ft.sleep); monkeypatch.setattr(gateway.policy, 'clock', ft.clock)
    return ft


def unavailable(kind, args): return ee.EEException('The service is currently unavailable.')


def test_many_retries_never_wait_beyond_the_budget(fake_time, monkeypatch):
    monkeypatch.setattr(gateway.policy, 'retries', 10_000)
    with gateway.inject(unavailable) as fired, pytest.raises(ee.EEException, match='currently unavailable'):
        gateway.ee_call('compute', lambda: 'ok')
    assert sum(fake_time.waits) == pytest.approx(gateway.policy.max_total_wait) and len(fired) < 100
    assert max(fake_time.waits) <= gateway.policy.cap


def test_the_default_budget_rides_out_a_burst_of_eight(fake_time):
    for _ in range(50):  # whatever the jitter
        fake_time.waits = []
        with gateway.inject(unavailable, times=8): assert gateway.ee_call('compute', lambda: 'ok') == 'ok'
        assert len(fake_time.waits) == 8


def test_a_callers_deadline_cuts_the_waits_short(fake_time):
    with gateway.deadline(7), gateway.inject(unavailable), pytest.raises(ee.EEException):
        gateway.ee_call('compute', lambda: 'ok')
    assert sum(fake_time.waits) == pytest.approx(7)
    fake_time.waits = []
    with gateway.deadline(0), gateway.inject(unavailable) as fired, pytest.raises(ee.EEException):
        gateway.ee_call('compute', lambda: 'ok')
    assert (fake_time.waits, len(fired)) == ([], 1)  # past the deadline: one attempt, no retry
    with gateway.deadline(5):
        with gateway.deadline(100): assert gateway.time_left() <= 5  # nested blocks cannot extend the outer one
    assert gateway.time_left() == float('inf')


def test_budget_and_deadline_apply_to_calls_in_other_threads_only_inside_their_context(fake_time):
    import concurrent.futures as cf, contextvars
    with gateway.deadline(3):
        ctx = contextvars.copy_context()
        with cf.ThreadPoolExecutor(1) as ex:
            assert ex.submit(ctx.run, gateway.time_left).result() <= 3
            assert ex.submit(gateway.time_left).result() == float('inf')


def test_a_forgotten_operation_is_not_found_and_not_retried(waits):
    with Emulator(task_seconds=1) as emu:
        emu.connect(max_retries=0)
        t = ee.batch.Export.table.toDrive(ee.FeatureCollection([ee.Feature(None, {'a': 1})]), description='old',
                                          folder='f', fileNamePrefix='old')
        gateway.start_task(t); emu.advance(1)
        assert gateway.get_operation(t.name)['done'] is True
        emu.forget([t.id], get=True)
        with pytest.raises(ee.EEException) as e: gateway.get_operation(t.name)
        assert gateway.is_not_found(e.value) and not gateway.is_transient(e.value) and waits == []
        emu.fail_http('/operations/', 503)
        with pytest.raises(ee.EEException) as e2: ee.data.getOperation(t.name)
        assert not gateway.is_not_found(e2.value)


def test_init_with_an_unreachable_url_is_one_fast_line():
    port = closed_port()
    t0 = time.time()
    with pytest.raises(gateway.EarthEngineSetupError) as e:
        gateway.init(project='p', credentials=None, url=f'http://127.0.0.1:{port}')
    assert time.time() - t0 < 3
    msg = str(e.value)
    assert '\n' not in msg and f'http://127.0.0.1:{port}' in msg and 'Connection refused' in msg and '--ee-url' in msg
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)


def test_cli_style_connect_to_an_unreachable_emulator_is_one_line():
    with pytest.raises(gateway.EarthEngineSetupError, match='Cannot reach Earth Engine at'):
        connect_client(f'http://127.0.0.1:{closed_port()}', max_retries=None)


@pytest.fixture
def stored_credentials(tmp_path, monkeypatch):
    "A home folder with Earth Engine credentials stored as `earthengine authenticate` leaves them."
    creds = tmp_path/'.config'/'earthengine'/'credentials'
    creds.parent.mkdir(parents=True)
    creds.write_text(json.dumps({'refresh_token': 'stored-refresh-token', 'project': 'my-project'}))
    monkeypatch.setenv('HOME', str(tmp_path))
    for var in ('GOOGLE_APPLICATION_CREDENTIALS', 'HTTPS_PROXY', 'https_proxy'): monkeypatch.delenv(var, raising=False)
    return creds


@pytest.fixture
def no_network():
    "Sockets beyond 127.0.0.1 refused, as on a machine without network (left as found: CI blocks them for the whole run)."
    from gee_polygons import testing
    was_blocked = bool(testing._real)
    block_sockets()
    try: yield
    finally:
        if not was_blocked: unblock_sockets()


def test_stored_credentials_without_network_is_one_line(stored_credentials, no_network):
    t0 = time.time()
    with pytest.raises(gateway.EarthEngineSetupError) as e: gateway.init(project='my-project')
    assert time.time() - t0 < 6
    msg = str(e.value)
    assert msg.startswith('Cannot reach Earth Engine') and '\n' not in msg and len(msg) < 300, msg
    assert 'googleapis.com' in msg and msg.endswith('check the network connection.')


def test_no_stored_credentials_still_says_authenticate(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.delenv('GOOGLE_APPLICATION_CREDENTIALS', raising=False)
    def no_adc(*a, **k): raise google.auth.exceptions.DefaultCredentialsError('none')
    monkeypatch.setattr(google.auth, 'default', no_adc)
    with pytest.raises(gateway.EarthEngineSetupError, match='run `earthengine authenticate`'): gateway.init(project='p')


API_NOT_USED = ('Google Earth Engine API has not been used in project 123456789 before or it is disabled. Enable it by '
                'visiting https://console.developers.google.com/apis/api/earthengine.googleapis.com/overview?project=123456789 '
                'then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry.')


def test_a_403_api_not_enabled_keeps_the_server_text_and_link():
    with Emulator(project='123456789') as emu:
        emu.fail_http('/algorithms$', 403, times=None, message=API_NOT_USED)
        with pytest.raises(gateway.EarthEngineSetupError) as e: connect_client(emu.url, project='123456789')
    msg = str(e.value)
    assert 'No Earth Engine project given' not in msg
    assert API_NOT_USED in msg and 'https://console.developers.google.com/apis/api/earthengine.googleapis.com/overview?project=123456789' in msg


def test_a_403_unregistered_project_keeps_the_server_text():
    text = ('Project my-project is not registered to use Earth Engine. Visit https://code.earthengine.google.com/register?'
            'project=my-project to register your project.')
    with Emulator(project='my-project') as emu:
        emu.fail_http('/algorithms$', 403, times=None, message=text)
        with pytest.raises(gateway.EarthEngineSetupError, match='register\\?project=my-project'): connect_client(emu.url, project='my-project')

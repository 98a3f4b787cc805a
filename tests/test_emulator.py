"""The emulator's answers, checked field by field against the REST reference's documented shapes (tests/ee_rest_shapes.json).

The client is the real earthengine-api over real HTTP; raw requests (urllib, to 127.0.0.1) read the error bodies the
client hides."""
import json, re, urllib.error, urllib.parse, urllib.request
from pathlib import Path

import ee
import pytest

from gee_polygons import gateway
from gee_polygons.emulator import EE_ERRORS, HTTP_STATUS, STATUS_CODES, Emulator, sites_over

SHAPES = json.loads((Path(__file__).parent/'ee_rest_shapes.json').read_text())
TIMESTAMP = re.compile(SHAPES['Timestamp']['pattern'])
PY_TYPES = {'string': str, 'boolean': bool, 'integer': int, 'number': (int, float), 'object': dict, 'Status': dict,
            'State': str, 'Timestamp': str, 'ImageFileFormat': str}


def check_fields(obj: dict, shape: dict, where: str):
    "Every key of `obj` is a documented field of the right JSON type; the required ones are there."
    assert isinstance(obj, dict), where
    undocumented = set(obj) - set(shape['fields'])
    assert not undocumented, f'{where}: undocumented fields {sorted(undocumented)}'
    assert not set(shape.get('required', [])) - set(obj), f'{where}: missing {set(shape["required"]) - set(obj)}'
    for k, v in obj.items():
        kind = shape['fields'][k]
        if kind.startswith('array'): assert isinstance(v, list), f'{where}.{k}'
        else: assert isinstance(v, PY_TYPES.get(kind, dict)) and not (kind in ('integer', 'number') and isinstance(v, bool)), f'{where}.{k}: {v!r}'


def check_status(st: dict, where: str):
    "A google.rpc.Status: code a google.rpc.Code value, a message."
    check_fields(st, SHAPES['Status'], where)
    assert st['code'] in SHAPES['Code']['values'].values(), f'{where}: code {st["code"]}'


def check_operation(op: dict, where: str = 'Operation'):
    "An Operation with OperationMetadata, as the reference documents them."
    check_fields(op, SHAPES['Operation'], where)
    md, mshape = op['metadata'], SHAPES['OperationMetadata']
    check_fields(md, mshape, where + '.metadata')
    assert md['@type'] == mshape['type_url']
    assert md['state'] in SHAPES['State']['values'] and md['type'] in mshape['types']
    for k in ('createTime', 'updateTime', 'startTime', 'endTime'):
        if k in md: assert TIMESTAMP.match(md[k]), f'{where}.metadata.{k}: {md[k]}'
    if 'progress' in md: assert mshape['progress_range'][0] <= md['progress'] <= mshape['progress_range'][1]
    if 'attempt' in md: assert md['attempt'] >= 1
    assert all(isinstance(u, str) for u in md.get('destinationUris', []))
    done = md['state'] in SHAPES['State']['done']
    assert op.get('done', False) == done, f'{where}: done={op.get("done")} in state {md["state"]}'
    results = [k for k in SHAPES['Operation']['one_of_when_done'] if k in op]
    assert len(results) <= (1 if done else 0), f'{where}: {results} with done={done}'
    assert 'response' not in op  # the export methods document no response type: the emulator sends none
    if 'error' in op: check_status(op['error'], where + '.error')
    assert ('error' in op) == (md['state'] in ('FAILED', 'CANCELLED'))


def raw(emu, method, path, body=None):
    "(HTTP status, JSON body) of one request straight to the emulator."
    req = urllib.request.Request(emu.url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(req) as r: return r.status, json.loads(r.read() or b'{}')
    except urllib.error.HTTPError as e: return e.code, json.loads(e.read())


def check_error_body(status, body, expected_status_name=None):
    "A Google API error body whose code is the HTTP status and whose status name maps to it."
    check_fields(body, SHAPES['ErrorBody'], 'ErrorBody')
    err = body['error']
    assert set(err) <= set(SHAPES['ErrorBody']['error_fields']) and set(SHAPES['ErrorBody']['error_required']) <= set(err)
    assert err['code'] == status and SHAPES['Code']['http'][err['status']] == status
    if expected_status_name: assert err['status'] == expected_status_name


def fc(n=1):
    return ee.FeatureCollection([ee.Feature(ee.Geometry.Point([i, 0]), {'site_id': str(i)}) for i in range(n)])


def export(desc='t', folder='f', n=1, **kw):
    return ee.batch.Export.table.toDrive(fc(n), description=desc, folder=folder, fileNamePrefix=desc, selectors=['site_id'], **kw)


@pytest.fixture
def emu(monkeypatch, tmp_path):
    monkeypatch.setattr(gateway.policy, 'sleep', lambda s: None)
    with Emulator(max_running=2, task_seconds=10, out_dir=tmp_path/'out') as e:
        e.connect(max_retries=0)
        yield e


def test_module_tables_agree_with_the_reference():
    assert STATUS_CODES == SHAPES['Code']['values']
    assert all(SHAPES['Code']['http'][name] == code for code, name in HTTP_STATUS.items())
    for code, name, message in EE_ERRORS.values(): assert HTTP_STATUS[code] == name
    for name, texts in SHAPES['ErrorTexts'].items():
        if name == 'source': continue
        assert all(any(t.rstrip('.') in m for c, n, m in EE_ERRORS.values() if n == name) for t in texts), name


def test_operations_in_every_state_match_the_documented_shapes(emu):
    emu.fail_tasks(lambda b: b['description'] == 'oom')
    tasks = {d: export(d) for d in ('ok', 'oom', 'cancelled', 'running', 'pending')}
    for d in ('ok', 'oom'): gateway.start_task(tasks[d])
    emu.advance(10)
    for d in ('cancelled', 'running'): gateway.start_task(tasks[d])
    gateway.cancel_operation(tasks['cancelled'].name)
    emu.advance(1)
    gateway.start_task(export('also running')); gateway.start_task(tasks['pending'])
    ops = {d: ee.data.getOperation(t.name) for d, t in tasks.items()}
    assert {d: o['metadata']['state'] for d, o in ops.items()} == {
        'ok': 'SUCCEEDED', 'oom': 'FAILED', 'cancelled': 'CANCELLED', 'running': 'RUNNING', 'pending': 'PENDING'}
    for d, o in ops.items(): check_operation(o, d)
    assert ops['oom']['error'] == {'code': 3, 'message': 'User memory limit exceeded.'}
    assert ops['cancelled']['error']['code'] == SHAPES['Code']['values']['CANCELLED']
    assert ops['ok']['metadata']['destinationUris'] and ops['ok']['metadata']['progress'] == 1.0
    assert ops['pending']['metadata']['priority'] == SHAPES['OperationMetadata']['default_priority']
    listing = gateway.list_operations()
    assert {o['name'] for o in ops.values()} < {o['name'] for o in listing} and len(listing) == 6
    for o in listing: check_operation(o, 'listed')


def test_list_response_shape_and_paging(emu):
    status, empty = raw(emu, 'GET', f'/v1/projects/{emu.project}/operations')
    assert (status, empty) == (200, {})
    for i in range(3): gateway.start_task(export(f'p{i}'))
    status, page = raw(emu, 'GET', f'/v1/projects/{emu.project}/operations?pageSize=2')
    check_fields(page, SHAPES['ListOperationsResponse'], 'ListOperationsResponse')
    assert len(page['operations']) == 2 and isinstance(page['nextPageToken'], str)
    status, rest = raw(emu, 'GET', f'/v1/projects/{emu.project}/operations?pageSize=2&pageToken={page["nextPageToken"]}')
    check_fields(rest, SHAPES['ListOperationsResponse'], 'ListOperationsResponse')
    assert len(rest['operations']) == 1 and 'nextPageToken' not in rest
    for o in page['operations'] + rest['operations']: check_operation(o)


@pytest.mark.parametrize('order', ['newest', 'oldest', 'random'])
def test_every_order_lists_each_operation_once_across_pages(tmp_path, order):
    with Emulator(max_running=10_000, list_order=order, seed=3, out_dir=tmp_path) as emu:
        emu.connect()
        body = lambda i: {'expression': {'functionInvocationValue': {'functionName': 'Collection', 'arguments': {}}},
                          'description': f'd{i}', 'fileExportOptions': {'driveDestination': {'folder': 'f', 'filenamePrefix': f'd{i}'}}}
        made = [emu.handle('POST', f'/v1/projects/{emu.project}/table:export', body=body(i))[1]['name'] for i in range(1200)]
        names = [o['name'] for o in ee.data.listOperations()]  # the client pages by 500: three requests
        assert sorted(names) == sorted(made) and len(set(names)) == 1200
        assert sum(e['path'].endswith('/operations') for e in emu.log) == 3
        expected = {'newest': made[::-1], 'oldest': made}.get(order)
        assert names == expected if expected else names not in (made, made[::-1])


def test_client_requests_only_v1_paths(emu):
    gateway.start_task(t := export())
    ee.data.getOperation(t.name); ee.data.listOperations(); ee.data.cancelOperation(t.name)
    api = [e['path'] for e in emu.log if not e['path'].startswith('/$discovery')]
    assert api and all(p.startswith('/v1/projects/') for p in api)
    assert raw(emu, 'GET', f'/v1alpha/projects/{emu.project}/operations')[0] == 404


def test_cancel_answers_an_empty_body(emu):
    gateway.start_task(t := export())
    assert raw(emu, 'POST', f'/v1/{t.name}:cancel', {}) == (200, SHAPES['CancelResponse']['body'])


def test_duplicate_request_id_is_refused_and_starts_nothing(emu):
    t = export('dup'); gateway.start_task(t)
    again = export('dup'); again._request_id = t._request_id
    with pytest.raises(ee.EEException, match='already made'): again.start()
    assert len(emu.ops) == 1
    body = {'expression': {'functionInvocationValue': {'functionName': 'Collection', 'arguments': {}}}, 'requestId': t._request_id}
    status, err = raw(emu, 'POST', f'/v1/projects/{emu.project}/table:export', body)
    check_error_body(status, err, 'ALREADY_EXISTS')
    assert re.fullmatch(SHAPES['ExportTableRequest']['requestId_pattern'], t._request_id)
    status, err = raw(emu, 'POST', f'/v1/projects/{emu.project}/table:export', {**body, 'requestId': 'bad id!'})
    check_error_body(status, err, 'INVALID_ARGUMENT')


def test_error_bodies_use_real_codes_and_status_names(emu):
    check_error_body(*raw(emu, 'GET', f'/v1/projects/{emu.project}/operations/NOPE'), 'NOT_FOUND')
    for fault, name in (('unavailable', 'UNAVAILABLE'), ('quota', 'RESOURCE_EXHAUSTED'), ('aggregations', 'RESOURCE_EXHAUSTED'),
                        ('memory', 'INVALID_ARGUMENT'), ('timeout', 'INVALID_ARGUMENT'), ('internal', 'INTERNAL'), (503, 'UNAVAILABLE'),
                        (429, 'RESOURCE_EXHAUSTED'), (500, 'INTERNAL'), (400, 'INVALID_ARGUMENT')):
        emu.fail_http('/operations$', fault)
        status, body = raw(emu, 'GET', f'/v1/projects/{emu.project}/operations')
        check_error_body(status, body, name)
        if isinstance(fault, str): assert body['error']['message'] == EE_ERRORS[fault][2]


def test_default_faults_reach_the_caller_with_the_real_texts(emu):
    for status, text in ((503, 'The service is currently unavailable.'), (429, 'Quota exceeded for quota metric'),
                         ('aggregations', 'Too many concurrent aggregations.'), (400, 'User memory limit exceeded.')):
        emu.fail_http('/operations$', status)
        with pytest.raises(ee.EEException) as e: ee.data.listOperations()
        assert str(e.value).startswith(text) and 'HTTP' not in str(e.value)
    emu.fail_tasks(sites_over(1), 'timeout')
    gateway.start_task(t := export(n=2)); emu.advance(10)
    assert ee.data.getOperation(t.name)['error'] == {'code': 3, 'message': 'Computation timed out.'}


def test_finished_operations_age_out_of_the_listing(tmp_path):
    with Emulator(task_seconds=10, list_retention=3600, out_dir=tmp_path) as emu:
        emu.connect()
        gateway.start_task(old := export('old')); emu.advance(10)
        gateway.start_task(live := export('live', ))
        emu.slow_tasks(lambda b: True, 1e9)
        emu.advance(3600)
        assert {o['metadata']['description'] for o in ee.data.listOperations()} == {'old', 'live'}
        emu.advance(1)
        assert [o['metadata']['description'] for o in ee.data.listOperations()] == ['live']
        assert ee.data.getOperation(old.name)['metadata']['state'] == 'SUCCEEDED'  # GET still answers


def test_forget_from_the_listing_then_from_get(emu):
    gateway.start_task(a := export('a')); gateway.start_task(b := export('b'))
    emu.advance(10)
    gateway.start_task(c := export('c'))
    assert sorted(emu.forget()) == sorted([a.id, b.id])  # only finished ones
    assert [o['metadata']['description'] for o in ee.data.listOperations()] == ['c']
    assert ee.data.getOperation(a.name)['metadata']['state'] == 'SUCCEEDED'
    emu.forget([a.id], get=True)
    with gateway.observe() as calls, pytest.raises(ee.EEException) as e: gateway.get_operation(a.name)
    assert str(e.value) == 'Requested entity was not found.' and gateway.is_not_found(e.value) and len(calls) == 1
    check_error_body(*raw(emu, 'GET', f'/v1/{a.name}'), 'NOT_FOUND')
    assert ee.data.getOperation(b.name)['done'] is True
    assert ee.data.getTaskStatus([a.id])[0]['state'] == 'UNKNOWN'  # the client's legacy call sees the 404 too


@pytest.mark.parametrize('where', [{'folder': '../escape'}, {'folder': '/abs'}, {'folder': 'ok', 'fileNamePrefix': '../../x'}])
def test_drive_destinations_outside_the_folder_are_refused(emu, where):
    kw = {'description': 'esc', 'folder': 'f', 'fileNamePrefix': 'esc', **where}
    t = ee.batch.Export.table.toDrive(fc(), selectors=['site_id'], **kw)
    with pytest.raises(ee.EEException, match='leaves the export folder'): t.start()
    assert emu.ops == {} and emu.log[-1]['status'] == 400


def test_storage_prefix_outside_the_bucket_is_refused(emu, tmp_path):
    t = ee.batch.Export.table.toCloudStorage(fc(), description='esc', bucket='b', fileNamePrefix='../../../x', selectors=['site_id'])
    with pytest.raises(ee.EEException, match='leaves the export folder'): t.start()
    ok = ee.batch.Export.table.toCloudStorage(fc(), description='ok', bucket='b', fileNamePrefix='a/b/x', selectors=['site_id'])
    gateway.start_task(ok); emu.advance(10)
    assert emu.ops[ok.id].path.resolve().is_relative_to(Path(emu.out_dir).resolve())
    assert not list(tmp_path.glob('x.csv'))


def test_log_and_throttle_peaks_are_kept(emu):
    for i in range(5): gateway.start_task(export(f'l{i}'))
    emu.advance(100)
    assert emu.max_running_seen == 2 and emu.max_active == 5
    posts = [e for e in emu.log if e['method'] == 'POST' and e['path'].endswith('table:export')]
    assert len(posts) == 5 and {e['summary']['description'] for e in posts} == {f'l{i}' for i in range(5)}


# --- thumbnails (getThumbURL): projects.thumbnails.create + getPixels, drawn from the evaluator's rasters ---
from gee_polygons.evaluator import sample_evaluator
from gee_polygons.sample_data import SAMPLE_LAYER

SAMPLE_BOX = [-48.0, -15.882, -47.838, -15.72]


def vis(layer=SAMPLE_LAYER):
    codes = range(max(layer.palette) + 1)
    return {'min': 0, 'max': codes[-1], 'palette': [layer.palette.get(c, '#000000') for c in codes]}


@pytest.fixture
def drawing(monkeypatch, tmp_path):
    monkeypatch.setattr(gateway.policy, 'sleep', lambda s: None)
    with Emulator(evaluate=sample_evaluator(), out_dir=tmp_path) as e:
        e.connect(max_retries=0)
        yield e


def test_thumbnail_requests_use_the_documented_paths_and_shapes(drawing):
    img = ee.Image(SAMPLE_LAYER.asset_id).select('classification_2020')
    url = img.getThumbURL({'region': SAMPLE_BOX, 'dimensions': 32, **vis(), 'format': 'png'})
    create, = [e for e in drawing.log if e['path'].endswith('/thumbnails')]
    assert (create['method'], create['path']) == ('POST', f'/v1/projects/{drawing.project}/thumbnails')
    name = url.split('/v1/', 1)[1].removesuffix(':getPixels')
    assert re.fullmatch(SHAPES['Thumbnail']['name_pattern'], name)
    body = drawing.thumbnails[name.rsplit('/', 1)[1]]  # what the client sent (it sends null for unset fields)
    check_fields({k: v for k, v in {**body, 'name': name}.items() if v is not None}, SHAPES['Thumbnail'], 'Thumbnail')
    assert body['fileFormat'] in SHAPES['ImageFileFormat']['thumbnail_values']
    status, echoed = raw(drawing, 'POST', f'/v1/projects/{drawing.project}/thumbnails', {'expression': body['expression'], 'fileFormat': 'PNG'})
    assert status == 200 and set(echoed) == {'name', 'expression', 'fileFormat'}  # without fields=name: the whole Thumbnail
    check_fields(echoed, SHAPES['Thumbnail'], 'Thumbnail')
    with urllib.request.urlopen(url) as r:
        assert r.status == 200 and r.headers['Content-Type'] == 'image/png' and r.read()[:8] == b'\x89PNG\r\n\x1a\n'
    assert urllib.parse.urlsplit(url).path == f'/v1/{name}:getPixels'


def test_thumbnail_errors_are_error_bodies(drawing):
    check_error_body(*raw(drawing, 'GET', f'/v1/projects/{drawing.project}/thumbnails/nope:getPixels'), 'NOT_FOUND')
    check_error_body(*raw(drawing, 'POST', f'/v1/projects/{drawing.project}/thumbnails', {'fileFormat': 'PNG'}), 'INVALID_ARGUMENT')
    img = ee.Image(SAMPLE_LAYER.asset_id).select(['classification_2019', 'classification_2020'])
    url = img.getThumbURL({'region': SAMPLE_BOX, 'dimensions': 8})
    status, body = raw(drawing, 'GET', url.split(drawing.url, 1)[1])
    check_error_body(status, body, 'INVALID_ARGUMENT')
    assert '1 or 3 bands' in body['error']['message']


def test_thumbnail_pixels_have_their_class_colours(drawing):
    from PIL import Image as PILImage
    import io, numpy as np, rasterio
    from gee_polygons.emulator import _rgb
    from gee_polygons.sample_data import sample_raster_path
    png = gateway.thumbnail(ee.Image(SAMPLE_LAYER.asset_id).select('classification_2015'), {'region': SAMPLE_BOX, 'dimensions': 24, **vis(), 'format': 'png'})
    px = np.asarray(PILImage.open(io.BytesIO(png)))
    with rasterio.open(sample_raster_path()) as ds: truth = ds.read(6)[12::25, 12::25]  # 25 raster pixels per thumbnail pixel
    assert px.shape == (24, 24, 4)
    for (r, c), code in np.ndenumerate(truth):
        if code: assert tuple(px[r, c, :3]) == _rgb(SAMPLE_LAYER.palette[int(code)]) and px[r, c, 3] == 255
        else: assert px[r, c, 3] == 0


def test_thumbnail_get_is_retried_through_the_gateway(drawing):
    drawing.fail_http(':getPixels$', 'unavailable', times=3)
    with gateway.observe() as calls:
        png = gateway.thumbnail(ee.Image(SAMPLE_LAYER.asset_id).select('classification_2020'), {'region': SAMPLE_BOX, 'dimensions': 8, **vis(), 'format': 'png'})
    assert png[:4] == b'\x89PNG' and [k for k, _ in calls] == ['getThumbURL'] + ['getPixels'] * 4

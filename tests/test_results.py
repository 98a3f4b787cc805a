"""`results.collect`: whatever happens to the chunk files, every expected (site, year) is either in the table or reported
missing, never both; the rows that load are exactly the interactive path's; and a real export (through the emulator)
collects back to the interactive table."""
import gzip, tempfile
from functools import lru_cache
from pathlib import Path
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from gee_polygons import export as gx, gateway
from gee_polygons.earthengine import CATEGORICAL_COLUMNS
from gee_polygons.emulator import Emulator, site_ids
from gee_polygons.export import ExportConfig, ExportDestination
from gee_polygons.results import chunk_files, collect
from gee_polygons.sample_data import SAMPLE_LAYER, SAMPLE_YEARS, sample_raster_path, sample_sites_path
from gee_polygons.sites import SiteCollection
import gee_polygons.extract

@lru_cache
def sample():
    "The sample sites and their table from the interactive path (local engine)."
    sites = SiteCollection.from_file(sample_sites_path())
    return sites, sites.extract_categorical(SAMPLE_LAYER, SAMPLE_YEARS, source=sample_raster_path(), progress=False).data

def manifest(chunk_size:int):
    "A manifest as export_categorical records it, every chunk COMPLETED."
    sites, _ = sample()
    dest = ExportDestination('drive', 'gee_exports', 'job')
    job = gx._job('cat', sites.ids, dict(layer=SAMPLE_LAYER.asset_id, years=SAMPLE_YEARS, opts={}), CATEGORICAL_COLUMNS, dest,
                  ExportConfig(chunk_size=chunk_size))
    chunks = gx.make_chunks(sites.ids, chunk_size, 'job_cat', 'job')
    for c in chunks: c.state = 'COMPLETED'
    return gx.Manifest(None, job, chunks)

FATES = ['ok', 'missing', 'truncated', 'corrupt', 'duplicated', 'bad_row', 'dropped_year', 'empty', 'foreign_site',
         'foreign_year', 'negative_area', 'big_fraction']

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk_size=st.integers(1, 8), data=st.data())
def test_every_pair_is_present_or_missing(chunk_size, data):
    _, truth = sample()
    m = manifest(chunk_size)
    files = chunk_files(m)
    fates = data.draw(st.lists(st.sampled_from(FATES), min_size=len(files), max_size=len(files)))
    dropped, expect_rows, dups = set(), [], 0
    with tempfile.TemporaryDirectory() as d:
        for (c, name), fate in zip(files, fates):
            rows = truth[truth.site_id.isin(c.site_ids)]
            if fate == 'dropped_year':
                s, y = c.site_ids[0], data.draw(st.sampled_from(SAMPLE_YEARS))
                rows = rows[~((rows.site_id == s) & (rows.year == y))]; dropped.add((s, y))
            text = rows.to_csv(index=False)
            if fate == 'missing': continue
            if fate == 'truncated': text = text[:-data.draw(st.integers(1, 20))]
            if fate == 'duplicated': text += text.split('\n', 1)[1]; dups += len(rows)
            if fate == 'bad_row': text += f'{c.site_ids[0]},2016,3,Forest,,1,1\n'
            if fate == 'foreign_site': text += 'site_from_elsewhere,2016,3,Forest,1,1,0.5\n'
            if fate == 'foreign_year': text += f'{c.site_ids[0]},2031,3,Forest,1,1,0.5\n'
            if fate == 'negative_area': text += f'{c.site_ids[0]},2016,77,Other,1,-0.5,0.5\n'
            if fate == 'big_fraction': text += f'{c.site_ids[0]},2016,77,Other,1,1,7.5\n'
            raw = gzip.compress(text.encode()) if fate == 'corrupt' else b'' if fate == 'empty' else text.encode()
            (Path(d)/name).write_bytes(raw)
            if fate in ('ok', 'duplicated', 'dropped_year'): expect_rows.append(rows)
        res = collect(m, d)
    by_fate = lambda *fs: {name for (c, name), f in zip(files, fates) if f in fs}
    rejected = ('foreign_site', 'foreign_year', 'negative_area', 'big_fraction')
    assert set(res.bad_files) == by_fate('truncated', 'corrupt', 'bad_row', 'empty', *rejected)
    assert all(res.bad_files[n].startswith('belongs to another job') for n in by_fate('foreign_site', 'foreign_year'))
    assert all('impossible values' in res.bad_files[n] for n in by_fate('negative_area', 'big_fraction'))
    assert set(res.missing_chunks.file) == by_fate('missing')
    assert set(res.files_read) == by_fate('ok', 'duplicated', 'dropped_year')
    assert res.duplicates_removed == dups
    assert not res.data.duplicated(['site_id', 'year', 'class_value']).any()
    want = pd.concat(expect_rows).reset_index(drop=True) if expect_rows else truth.iloc[:0].reset_index(drop=True)
    pd.testing.assert_frame_equal(res.data, want)
    present = set(zip(res.data.site_id, res.data.year))
    missing = set(zip(res.missing.site_id, res.missing.year))
    expected = {(s, y) for s in sample()[0].ids for y in SAMPLE_YEARS}
    assert present | missing == expected and not present & missing
    assert {p for p in missing if (p[0], p[1]) in dropped} == dropped
    assert res.complete == (set(fates) <= {'ok', 'duplicated'})

def test_collect_an_export_task(tmp_path, monkeypatch):
    "A real export (the real client over HTTP to the emulator) to Cloud Storage, collected from the ExportTask itself."
    monkeypatch.setattr(gateway.policy, 'sleep', lambda s: None)
    sites, truth = sample()
    rows = truth.astype(object)
    def evaluate(expr):
        return rows[rows.site_id.isin(site_ids(expr))].to_dict('records')
    with Emulator(max_running=3, task_seconds=10, auto_advance=5, evaluate=evaluate, out_dir=tmp_path) as emu:
        emu.connect()
        job = sites.export_categorical(SAMPLE_LAYER, SAMPLE_YEARS, ExportDestination('cloud_storage', 'demo-bucket/runs/a', 'areas'),
                                       ExportConfig(chunk_size=7, poll_interval_sec=0.001))
        assert job.wait(poll_interval_sec=0.001, progress=False)
    res = collect(job, tmp_path/'gcs'/'demo-bucket')
    assert res.complete and res.files_read == [c.file_prefix + '.csv' for c in job.leaves] and len(res.files_read) == 3
    pd.testing.assert_frame_equal(res.data, truth)

# ---- files must belong (issue 9, point 5) ---------------------------------------------------------------------------
def run_job(emu, folder, years, prefix='extraction'):
    "Export the sample to the Drive folder `folder` through the emulator (real client, real HTTP); the finished job."
    sites, _ = sample()
    job = sites.export_categorical(SAMPLE_LAYER, years, ExportDestination('drive', folder, prefix),
                                   ExportConfig(chunk_size=6, poll_interval_sec=0.001))
    assert job.wait(poll_interval_sec=0.001, progress=False)
    return job

def test_other_jobs_files_are_never_merged(tmp_path, monkeypatch):
    "Two jobs (different years, same file names): the second's files in the first's folder are reported, not merged."
    from gee_polygons.testing import sample_evaluator
    monkeypatch.setattr(gateway.policy, 'sleep', lambda s: None)
    with Emulator(max_running=3, task_seconds=10, auto_advance=5, evaluate=sample_evaluator(earth='wgs84'), out_dir=tmp_path) as emu:
        emu.connect()
        a, b = run_job(emu, 'job_a', SAMPLE_YEARS), run_job(emu, 'job_b', [2022, 2023] + [])
    _, truth = sample()
    folder_a, folder_b = tmp_path/'drive'/'job_a', tmp_path/'drive'/'job_b'
    assert collect(a, folder_a).complete
    fa, fb = [n for _, n in chunk_files(a.manifest)], [n for _, n in chunk_files(b.manifest)]
    b_years = b.manifest.job['identity']['years']
    # the second job exports other years; as if it had written the same names, its files replace two of the first's
    c = b.manifest.chunks['0001']
    other = truth[truth.site_id.isin(c.site_ids) & truth.year.isin(b_years)]
    (folder_a/fa[0]).write_text(other.replace({'year': {2022: 2031}}).to_csv(index=False))  # sites and years of another job
    (folder_a/fa[2]).write_bytes((folder_b/fb[1]).read_bytes())  # chunk 0001's sites in chunk 0002's file
    res = collect(a, folder_a)
    assert not res.complete
    assert sorted(res.bad_files) == sorted([fa[0], fa[2]])
    assert all(v.startswith('belongs to another job') for v in res.bad_files.values())
    lost = set(a.manifest.chunks['0000'].site_ids) | set(a.manifest.chunks['0002'].site_ids)
    assert not set(res.data.site_id) & lost
    assert set(res.missing.site_id) == lost and set(res.missing.reason) == {'chunk file belongs to another job'}
    keep = truth[~truth.site_id.isin(lost)].reset_index(drop=True)
    pd.testing.assert_frame_equal(res.data, keep)

@pytest.mark.parametrize('bad,why', [
    (dict(area_ha=-1.0), 'impossible values'), (dict(count=-2.0), 'impossible values'), (dict(fraction=7.5), 'impossible values'),
    (dict(fraction=1 + 1e-3), 'impossible values'), (dict(class_value=-3), 'impossible values'),
    (dict(site_id='site_99'), 'belongs to another job'), (dict(year=2031), 'belongs to another job')])
def test_bad_rows_reject_their_file(tmp_path, bad, why):
    _, truth = sample()
    m = manifest(5)
    for c, name in chunk_files(m):
        rows = truth[truth.site_id.isin(c.site_ids)].copy()
        if c.key == '0001': rows.loc[rows.index[3], list(bad)] = list(bad.values())
        (tmp_path/name).write_text(rows.to_csv(index=False))
    res = collect(m, tmp_path)
    assert list(res.bad_files) == ['job_chunk_0001.csv'] and why in res.bad_files['job_chunk_0001.csv']
    assert 'data row 4' in res.bad_files['job_chunk_0001.csv']
    assert not res.complete and set(res.missing.chunk) == {'0001'}
    assert not res.data.site_id.isin(m.chunks['0001'].site_ids).any()

def test_fraction_tolerance(tmp_path):
    "Fractions a hair outside [0, 1] (float rounding) are accepted."
    _, truth = sample()
    m = manifest(20)
    rows = truth.copy(); rows.loc[rows.index[0], 'fraction'] = 1 + 5e-7; rows.loc[rows.index[1], 'fraction'] = -5e-7
    (tmp_path/'job_chunk_0000.csv').write_text(rows.to_csv(index=False))
    assert collect(m, tmp_path).complete

@pytest.mark.parametrize('edit,contains', [
    (lambda d: d['chunks'].pop(1), "does not cover the job's 20 sites exactly once"),
    (lambda d: d['chunks'].append(dict(d['chunks'][0], key='0009')), "does not cover the job's 20 sites exactly once"),
    (lambda d: d['chunks'][0]['site_ids'].reverse(), "does not cover the job's 20 sites exactly once"),
])
def test_manifest_must_cover_the_sites_once(tmp_path, edit, contains):
    import json
    _, truth = sample()
    m = manifest(5); m.path = tmp_path/'job.json'; m.save()
    for c, name in chunk_files(m): (tmp_path/name).write_text(truth[truth.site_id.isin(c.site_ids)].to_csv(index=False))
    assert collect(m.path, tmp_path).complete
    d = json.loads(m.path.read_text()); edit(d); m.path.write_text(json.dumps(d))
    with pytest.raises(ValueError) as e: collect(m.path, tmp_path)
    msg = str(e.value)
    assert '\n' not in msg and str(m.path) in msg and contains in msg

def test_hand_edited_manifest_is_one_line(tmp_path):
    import json
    m = manifest(5); m.path = tmp_path/'job.json'; m.save()
    d = json.loads(m.path.read_text()); d['chunks'][0]['sites'] = d['chunks'][0].pop('site_ids'); m.path.write_text(json.dumps(d))
    with pytest.raises(ValueError) as e: collect(m.path, tmp_path)
    assert 'job.json' in str(e.value) and 'manifest' in str(e.value) and '\n' not in str(e.value)

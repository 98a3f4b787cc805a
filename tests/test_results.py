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
from gee_polygons.emulator import Emulator
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

FATES = ['ok', 'missing', 'truncated', 'corrupt', 'duplicated', 'bad_row', 'dropped_year', 'empty']

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
            raw = gzip.compress(text.encode()) if fate == 'corrupt' else b'' if fate == 'empty' else text.encode()
            (Path(d)/name).write_bytes(raw)
            if fate in ('ok', 'duplicated', 'dropped_year'): expect_rows.append(rows)
        res = collect(m, d)
    by_fate = lambda *fs: {name for (c, name), f in zip(files, fates) if f in fs}
    assert set(res.bad_files) == by_fate('truncated', 'corrupt', 'bad_row', 'empty')
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
        return rows[rows.site_id.isin(_site_ids(expr))].to_dict('records')
    with Emulator(max_running=3, task_seconds=10, auto_advance=5, evaluate=evaluate, out_dir=tmp_path) as emu:
        emu.connect()
        job = sites.export_categorical(SAMPLE_LAYER, SAMPLE_YEARS, ExportDestination('cloud_storage', 'demo-bucket/runs/a', 'areas'),
                                       ExportConfig(chunk_size=7, poll_interval_sec=0.001))
        assert job.wait(poll_interval_sec=0.001, progress=False)
    res = collect(job, tmp_path/'gcs'/'demo-bucket')
    assert res.complete and res.files_read == ['areas_chunk_0000.csv', 'areas_chunk_0001.csv', 'areas_chunk_0002.csv']
    pd.testing.assert_frame_equal(res.data, truth)

def _site_ids(expr) -> set:
    "Site ids inlined in a serialized export expression."
    out = set()
    def walk(x):
        if isinstance(x, dict):
            v = x.get('constantValue')
            if isinstance(v, list) and v and all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) for r in v):
                out.update(r[0] for r in v)
            for y in x.values(): walk(y)
        elif isinstance(x, list):
            for y in x: walk(y)
    walk(expr)
    return out

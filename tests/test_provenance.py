"""Provenance travels with every table the library writes: CSV sidecars, Parquet schema metadata, atomic writes."""
import json, os
from pathlib import Path
import pandas as pd
import pytest
from gee_polygons import __version__
from gee_polygons.provenance import provenance, read_provenance, sidecar, write_table
from gee_polygons.datasets.mapbiomas import MAPBIOMAS_LULC
from gee_polygons.layers import ContinuousLayer

TABLE = pd.DataFrame({'site_id': pd.array(['a', 'b'], dtype='string'), 'year': [2020, 2021], 'area_ha': [1.5, 2.25]})


@pytest.mark.parametrize('name', ['t.csv', 't.parquet', 'T.PARQUET'])
def test_each_format_round_trips_table_and_provenance(tmp_path, name):
    prov = provenance(MAPBIOMAS_LULC, 'export', earth=None, job={'job_id': 'gp-1', 'manifest': tmp_path/'m.json'})
    p = write_table(TABLE, tmp_path/'sub'/name, prov)
    assert p == tmp_path/'sub'/name and read_provenance(p) == prov
    back = pd.read_csv(p, dtype={'site_id': 'string'}) if p.suffix == '.csv' else pd.read_parquet(p)
    pd.testing.assert_frame_equal(back, TABLE)
    assert (prov['asset_id'], prov['bands'], prov['scale'], prov['engine'], prov['version'], prov['job_id'], prov['manifest']) == (
        MAPBIOMAS_LULC.asset_id, ['classification_{year}'], 30.0, 'export', __version__, 'gp-1', str(tmp_path/'m.json'))


def test_parquet_keeps_provenance_inside_the_file(tmp_path):
    import pyarrow.parquet as pq
    p = write_table(TABLE, tmp_path/'t.parquet', provenance(ContinuousLayer('c/x', ['NDVI']), 'ee'))
    meta = pq.read_schema(p).metadata
    assert b'pandas' in meta and json.loads(meta[b'gee_polygons'])['bands'] == ['NDVI']
    assert not sidecar(p).exists()


def test_csv_without_provenance_removes_a_stale_sidecar(tmp_path):
    p = write_table(TABLE, tmp_path/'t.csv', provenance(MAPBIOMAS_LULC, 'local', 'wgs84'))
    assert sidecar(p).exists() and read_provenance(p)['earth'] == 'wgs84'
    write_table(TABLE, p, None)
    assert not sidecar(p).exists() and read_provenance(p) is None


def test_unknown_suffix_and_missing_table_are_one_line(tmp_path):
    for bad in ('t.xlsx', 't.csv.gz', 't'):
        with pytest.raises(ValueError, match='name the file .csv or .parquet') as e: write_table(TABLE, tmp_path/bad, None)
        assert '\n' not in str(e.value)
    with pytest.raises(FileNotFoundError, match='No table at'): read_provenance(tmp_path/'none.parquet')
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_the_old_table(tmp_path, monkeypatch):
    p = write_table(TABLE, tmp_path/'t.parquet', {'engine': 'old'})
    import pyarrow.parquet as pq
    def boom(table, where, **kw): Path(where).write_bytes(b'half'); raise OSError('disk full')
    monkeypatch.setattr(pq, 'write_table', boom)
    with pytest.raises(OSError, match='disk full'): write_table(TABLE.head(1), p, {'engine': 'new'})
    assert read_provenance(p) == {'engine': 'old'} and len(pd.read_parquet(p)) == 2
    assert sorted(os.listdir(tmp_path)) == ['t.parquet']  # no temporary file left behind

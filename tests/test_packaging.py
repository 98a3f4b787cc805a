"pyproject.toml, settings.ini, setup.py and the package agree; the sync check catches hand-edited modules."
import ast, re, shutil, subprocess, sys
try: import tomllib
except ImportError: import tomli as tomllib  # Python 3.10
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT/'tools'))
from setup import read_settings
import check_sync

PYPROJECT = tomllib.loads((ROOT/'pyproject.toml').read_text())
PROJECT, SETTINGS = PYPROJECT['project'], read_settings(ROOT/'settings.ini')

def _version():
    return re.search(r'__version__ = "([^"]+)"', (ROOT/'gee_polygons'/'__init__.py').read_text())[1]

def test_name_version_python_floor_agree():
    assert PROJECT['name'] == SETTINGS['lib_name'] == SETTINGS['repo'] == 'gee_polygons'
    assert _version() == SETTINGS['version']
    assert PROJECT['requires-python'] == f">={SETTINGS['min_python']}"
    assert tuple(map(int, SETTINGS['min_python'].split('.'))) >= (3, 10)

def test_requirements_agree():
    assert sorted(PROJECT['dependencies']) == sorted(SETTINGS['requirements'].split())
    assert sorted(PROJECT['optional-dependencies']['local']) == sorted(SETTINGS['local_requirements'].split())
    name, target = SETTINGS['console_scripts'].split('=')
    assert PROJECT['scripts'] == {name: target}

def test_earthengine_api_pinned_to_a_range():
    (ee_req,) = [r for r in PROJECT['dependencies'] if r.startswith('earthengine-api')]
    assert '>=' in ee_req and '<' in ee_req.replace('<=', '')

def test_nbdev_config_and_entry_point():
    assert 'nbdev' in PYPROJECT['tool']
    assert PROJECT['entry-points']['nbdev'] == {'gee_polygons': 'gee_polygons._modidx:d'}
    assert 'Apache License' in (ROOT/'LICENSE').read_text() and PROJECT['license'] == 'Apache-2.0'

def test_setup_py_defines_no_metadata_of_its_own():
    calls = [n for n in ast.walk(ast.parse((ROOT/'setup.py').read_text()))
             if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'setup']
    assert len(calls) == 1 and not calls[0].args and not calls[0].keywords

def test_readme_matches_index_notebook():
    import readme
    assert (ROOT/'README.md').read_text() == readme.render()

@pytest.fixture
def project_copy(tmp_path):
    dst = tmp_path/'proj'
    for f in ('nbs', 'gee_polygons', 'pyproject.toml', 'settings.ini'):
        src = ROOT/f
        shutil.copytree(src, dst/f, ignore=shutil.ignore_patterns('__pycache__')) if src.is_dir() else shutil.copy(src, dst/f)
    return dst

def _nbdev(cmd): return str(Path(sys.executable).parent/cmd)

def test_sync_check_passes_on_the_repository(project_copy):
    assert check_sync.check(project_copy, 'gee_polygons', _nbdev('nbdev-export')) == []

def test_sync_check_catches_a_hand_edited_module(project_copy):
    mod = project_copy/'gee_polygons'/'layers.py'
    mod.write_text(mod.read_text() + '\nHAND_EDIT = 1\n')
    assert check_sync.check(project_copy, 'gee_polygons', _nbdev('nbdev-export')) == ['gee_polygons/layers.py']
    cli = subprocess.run([sys.executable, str(ROOT/'tools'/'check_sync.py'), str(project_copy)], capture_output=True, text=True)
    assert cli.returncode == 1 and 'nbdev-export changes gee_polygons/layers.py' in cli.stdout

SIDEBAR = ['Getting started', 'How-to guides', 'Explanations', 'API reference', 'Developers']
# modules only contributors need: the expression builders, the gateway, job bookkeeping, the evaluator and emulator
# internals, sample-data generation, the package's entry points, and the compatibility layers' machinery
INTERNALS = {'02_earthengine', '03_gateway', '05a_jobs', '20_sample_data', '21_evaluator', '22_emulator', '90_package',
             '10a_datasets_compat', '13b_datasets_alpha_embeddings', '15a_upstream_collection'}

def _sidebar():
    import yaml
    side = yaml.safe_load((ROOT/'nbs'/'sidebar.yml').read_text())['website']['sidebar']['contents']
    return {s['section']: [nb.split('.')[0] for nb in s['contents']] for s in side}, [s['section'] for s in side]

def _module_of(stem):
    m = re.search(r'#\|\s*default_exp\s+(\S+)', (ROOT/'nbs'/f'{stem}.ipynb').read_text())
    return m and m[1]

def test_sidebar_lists_every_notebook_once_in_readers_order():
    side, sections = _sidebar()
    assert sections == SIDEBAR
    listed = [nb for s in side.values() for nb in s]
    assert sorted(listed) == sorted(p.stem for p in (ROOT/'nbs').glob('*.ipynb')) and len(set(listed)) == len(listed)

def test_internals_only_under_developers():
    side, _ = _sidebar()
    assert set(side['Developers']) == INTERNALS
    assert side['Getting started'][:2] == ['index', '29_earth_engine_setup']  # install + the no-account run, then a real account

def test_guides_and_explanations_are_not_module_pages():
    side, _ = _sidebar()
    pages = side['Getting started'] + side['How-to guides'] + side['Explanations']
    assert [nb for nb in pages if _module_of(nb)] == []  # no API, and so no internals, outside the reference sections
    assert all(nb.split('_')[1] == 'howto' for nb in side['How-to guides'])
    assert all(nb.split('_')[1] == 'explain' for nb in side['Explanations'])
    assert all(_module_of(nb) for nb in side['API reference'])

import check_outputs, check_links

def _nb(path, *cells, executed=False):
    "A notebook of code cells (source, outputs); executed ones carry execnb's timing metadata."
    meta = {'execution': {'total': 0.0}} if executed else {}
    nb = {'cells': [dict(cell_type='code', source=s, outputs=o, metadata=dict(meta), execution_count=None) for s, o in cells],
          'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(__import__('json').dumps(nb))
    return path

def _val(text): return [dict(output_type='execute_result', data={'text/plain': text}, metadata={}, execution_count=1)]

def test_normalise_forgets_what_changes_between_runs():
    n = check_outputs.normalise
    assert n('<Obj at 0x7f3a2b1c4d50>') == n('<Obj at 0x7f00deadbeef>')
    assert n("'/tmp/tmpab12cd/run.json'") == n("'/tmp/tmpzz99yy/run.json'")
    assert n('http://127.0.0.1:43121/v1') == n('http://127.0.0.1:50002/v1')
    assert n('extraction_4h3cjmuj_chunk_0000.csv') == n('extraction_kwaoee33_chunk_0000.csv')
    assert n('100%|####| 3/3 [00:01<00:00, 2.9it/s]') == n('100%|####| 3/3 [00:02<00:00, 1.4it/s]')
    assert n('24315.66415851789') == n('24315.66415852118') and n('8.5e-13') == n('4.2e-17')
    assert n('ExportPlan(n_tasks=80)') != n('ExportPlan(n_tasks=81)')  # real differences stay

def test_compare_finds_missing_stale_and_extra_outputs(tmp_path):
    (tmp_path/'run').mkdir()
    cells = [('x = 1\nx', _val('1')), ('x + 1', []), ('print(x)', []), ('f()', _val('3')), ('init()', [])]
    now = [('x = 1\nx', _val('1')), ('x + 1', _val('2')), ('print(x)', [dict(output_type='stream', name='stdout', text='1\n')]),
           ('f()', []), ('init()', [])]  # init() returns None: no output, and none is expected
    stored, run = _nb(tmp_path/'a.ipynb', *cells), _nb(tmp_path/'run'/'a.ipynb', *now, executed=True)
    assert [(i, v) for i, v, _ in check_outputs.compare(stored, run)] == [(1, 'MISSING'), (2, 'MISSING'), (3, 'EXTRA')]
    _nb(run, ('x', _val('2')), executed=True)
    assert [v for _, v, _ in check_outputs.compare(_nb(stored, ('x', _val('1'))), run)] == ['STALE']
    # a cell marked as varying by nature must store an output, but its text is not compared
    assert check_outputs.compare(_nb(stored, ('#| output_varies\nx', _val('1'))), run) == []
    assert [v for _, v, _ in check_outputs.compare(_nb(stored, ('#| output_varies\nx', [])), run)] == ['MISSING']
    assert [v for _, v, _ in check_outputs.compare(stored, _nb(run, ('x', _val('2'))))] == ['NOT-RUN']

def test_static_check_knows_values_from_calls():
    sv = check_outputs.shows_value
    assert (sv('x = 1\nx'), sv('f(x)'), sv('x = f()'), sv('f();'), sv('test_eq(1, 1)'), sv('#| hide\nx')) == \
           ('value', 'call', None, None, None, None)

def test_link_check_resolves_names_to_the_page_that_defines_them():
    names = {'collect': {'gee_polygons.cli': 'h/cli.html#collect', 'gee_polygons.results': 'h/results.html#collect'},
             'ExportTask.wait': {'gee_polygons.export': 'h/export.html#exporttask.wait'},
             'wait': {'gee_polygons.cli': 'h/cli.html#wait'}}
    d = check_links.definitions(names, 'wait')
    assert sorted(d) == ['gee_polygons.cli', 'gee_polygons.export']
    assert check_links.expected_pages('wait', d, 'gee_polygons.export', {}) == ({'h/export.html'}, None)
    assert check_links.expected_pages('collect', check_links.definitions(names, 'collect'), None,
                                      {'collect': 'gee_polygons.results'}) == ({'h/results.html'}, None)
    assert check_links.expected_pages('collect', check_links.definitions(names, 'collect'), None, {})[1] == 'AMBIGUOUS'

def test_ci_runs_the_docs_checks_on_one_execution():
    ci = (ROOT/'.ci'/'run').read_text()
    for step in ('check_sync.py', 'readme.py --check', 'nbdev-test --n-workers 2 --do-print --save', 'check_docs.py',
                 'check_outputs.py --executed', 'check_links.py --processed', 'pytest'):
        assert step in ci, step
    assert ci.count('nbdev-test') == 1  # the output check compares the run nbdev-test saved: notebooks execute once
    assert ci.index('nbdev-test') < ci.index('check_outputs.py --executed') < ci.index('check_links.py')

def test_link_check_sees_names_inside_link_texts():
    md = 'See [what `verify` measures](x.html) and `collect`.\n```\n`wait`\n```'
    assert (list(check_links.linkable(md)), list(check_links.linkable(md, in_links=True))) == (['verify', 'collect'], ['verify'])

def test_stderr_counts_by_presence_and_warnings_not_at_all():
    e = check_outputs._stderr
    assert (e('x.py:3: FutureWarning: old Python\n  warn(...)\n'), e('export: 100%|##| 1/1 [00:01<00:00]\n')) == ('', 'yes')

def test_guides_and_explanations_store_their_outputs():
    side, _ = _sidebar()
    pages = side['Getting started'] + side['How-to guides'] + side['Explanations']
    assert [(nb, i) for nb in pages for i, kind, _ in check_outputs.offenders(ROOT/'nbs'/f'{nb}.ipynb') if kind == 'value'] == []
    charts = [c for c in __import__('json').loads((ROOT/'nbs'/'34_howto_charts.ipynb').read_text())['cells'] if c['cell_type'] == 'code']
    assert sum('image/png' in o.get('data', {}) for c in charts for o in c['outputs']) >= 7  # every chart stored as an image

def test_a_chart_must_be_stored_as_an_image(tmp_path):
    (tmp_path/'run').mkdir()
    fig = lambda *mimes: [dict(output_type='execute_result', metadata={}, execution_count=1,
                               data={'text/plain': '<Figure size 640x480 with 1 Axes>', **{m: 'iVBOR' for m in mimes}})]
    run = _nb(tmp_path/'run'/'a.ipynb', ('plot()', fig('image/png')), executed=True)
    assert check_outputs.compare(_nb(tmp_path/'a.ipynb', ('plot()', fig('image/png'))), run) == []
    assert [v for _, v, _ in check_outputs.compare(_nb(tmp_path/'a.ipynb', ('plot()', fig())), run)] == ['STALE']

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

def test_sidebar_lists_every_notebook_once_in_readers_order():
    import yaml
    side = yaml.safe_load((ROOT/'nbs'/'sidebar.yml').read_text())['website']['sidebar']['contents']
    sections = [s['section'] for s in side]
    assert sections == ['Getting started', 'How-to guides', 'API reference', 'Developers']
    internals = {'02_earthengine', '03_gateway', '05a_jobs', '20_sample_data', '21_evaluator', '22_emulator', '90_package'}
    assert {nb.split('.')[0] for nb in side[-1]['contents']} >= internals  # internals only under Developers
    assert not internals & {nb.split('.')[0] for s in side[:-1] for nb in s['contents']}
    listed = [nb for s in side for nb in s['contents']]
    assert sorted(listed) == sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb')) and len(set(listed)) == len(listed)

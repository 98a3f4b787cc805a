#!/usr/bin/env python3
"Fail when `nbdev-export` would change gee_polygons/ or `nbdev-clean` would change nbs/ (notebooks are the source)."
import filecmp, shutil, subprocess, sys, tempfile
from pathlib import Path

def _diff(a:Path, b:Path) -> list:
    "Relative paths that differ between trees `a` and `b` (ignoring caches)."
    cmp = filecmp.dircmp(a, b, ignore=['__pycache__'])
    out = [str(Path(a.name)/p) for p in cmp.left_only + cmp.right_only + cmp.diff_files]
    for sub in cmp.common_dirs: out += _diff(a/sub, b/sub)
    return out

def check(root:Path, tree:str, cmd:str) -> list:
    "Run `cmd` in a copy of the project at `root`, and list files of `tree` it changed."
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)/'proj'
        shutil.copytree(root, work, ignore=shutil.ignore_patterns('.git', '.venv', '.ci-venv', '_docs', '_proc', 'bench'))
        subprocess.run([cmd], cwd=work, check=True, capture_output=True)
        return _diff(root/tree, work/tree)

if __name__ == '__main__':
    root, bin_dir = Path(sys.argv[1] if len(sys.argv) > 1 else '.').resolve(), Path(sys.executable).parent
    bad = False
    for tree, cmd, fix in [('gee_polygons', 'nbdev-export', 'edit the notebook, not the module, then run nbdev-export'),
                                 ('nbs', 'nbdev-clean', 'run nbdev-clean and commit')]:
        changed = check(root, tree, str(bin_dir/cmd))
        if changed:
            bad = True
            print(f'FAIL: {cmd} changes {", ".join(changed)}: {fix}.')
        else: print(f'ok: {cmd} leaves {tree}/ unchanged')
    sys.exit(1 if bad else 0)

#!/usr/bin/env python3
"Fail unless `nbdev-proc-nbs` processes every notebook cleanly (no errors, no cells mixing imports with code)."
import shutil, subprocess, sys, tempfile
from pathlib import Path

PROBLEMS = ('Error in notebook', 'Found cells containing imports')

def check(root:Path) -> list:
    "Problems `nbdev-proc-nbs` reports for a copy of the project at `root`."
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)/'proj'
        shutil.copytree(root, work, ignore=shutil.ignore_patterns('.git', '.venv', '.ci-venv', '_docs', '_proc', 'bench'))
        p = subprocess.run([str(Path(sys.executable).parent/'nbdev-proc-nbs')], cwd=work, capture_output=True, text=True)
        out = p.stdout + p.stderr
        found = [l.strip() for l in out.splitlines() if any(k in l for k in PROBLEMS)]
        if p.returncode and not found: found = [f'nbdev-proc-nbs exited {p.returncode}: {out.strip().splitlines()[-1:]}']
        return found

if __name__ == '__main__':
    problems = check(Path(sys.argv[1] if len(sys.argv) > 1 else '.').resolve())
    for l in problems: print('FAIL:', l)
    if problems: sys.exit('nbdev-proc-nbs does not process the notebooks cleanly: run tools/split_imports.py on them, or fix the cell.')
    print('ok: nbdev-proc-nbs processes every notebook cleanly')

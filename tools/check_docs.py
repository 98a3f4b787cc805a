#!/usr/bin/env python3
"Fail unless `nbdev-proc-nbs` processes every notebook cleanly (no errors, no cells mixing imports with code)."
import shutil, subprocess, sys, tempfile
from pathlib import Path

PROBLEMS = ('Error in notebook', 'Found cells containing imports')

def summary_problems(nbs:Path) -> list:
    "Notebooks whose `> ` summary spans several lines: nbdev keeps only the first line as the page description."
    import json
    out = []
    for f in sorted(nbs.glob('*.ipynb')):
        md = next((c for c in json.loads(f.read_text())['cells'] if c['cell_type'] == 'markdown'), None)
        if md and sum(l.startswith('>') for l in ''.join(md['source']).splitlines()) > 1:
            out.append(f'{f.name}: its "> " summary spans several lines; nbdev keeps only the first as the description')
    return out

def check(root:Path) -> list:
    "Problems `nbdev-proc-nbs` reports for a copy of the project at `root`."
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)/'proj'
        shutil.copytree(root, work, ignore=shutil.ignore_patterns('.git', '.venv', '.ci-venv', '_docs', '_proc', 'bench'))
        p = subprocess.run([str(Path(sys.executable).parent/'nbdev-proc-nbs')], cwd=work, capture_output=True, text=True)
        out = p.stdout + p.stderr
        lines = out.splitlines()
        found = [l.strip() for l in lines if any(k in l for k in PROBLEMS)]
        found += [f'  (the error: {l.strip()})' for l in lines if l[:1].isupper() and l.split(':')[0].endswith(('Error', 'Exception'))
                  and 'Error in notebook' not in l]
        found = list(dict.fromkeys(found))
        if p.returncode and not found: found = [f'nbdev-proc-nbs exited {p.returncode}: {out.strip().splitlines()[-1:]}']
        return found

if __name__ == '__main__':
    root = Path(sys.argv[1] if len(sys.argv) > 1 else '.').resolve()
    problems = summary_problems(root/'nbs') + check(root)
    for l in problems: print('FAIL:', l)
    if problems: sys.exit('nbdev-proc-nbs does not process the notebooks cleanly: run tools/split_imports.py on them, or fix the cell.')
    print('ok: nbdev-proc-nbs processes every notebook cleanly')

#!/usr/bin/env python3
"Execute notebooks offline and save their outputs, so the docs site shows real results: `python tools/execute_nbs.py nbs/07_charts.ipynb ...`"
import os, subprocess, sys
from pathlib import Path
from execnb.shell import CaptureShell
from gee_polygons.testing import block_sockets

if __name__ == '__main__':
    block_sockets()
    os.environ.setdefault('MPLBACKEND', 'Agg')
    paths = [Path(a).resolve() for a in sys.argv[1:]]
    for p in paths:
        here = Path.cwd()
        os.chdir(p.parent)  # notebooks run from nbs/, as nbdev-test runs them
        try: CaptureShell(mpl_format="png").execute(str(p.resolve()), str(p.resolve()), exc_stop=True)
        finally: os.chdir(here)
        print(f'executed {p}')
    for p in paths:  # clean only what was executed: other notebooks may be open in someone's editor
        subprocess.run([str(Path(sys.executable).parent/'nbdev-clean'), '--fname', str(p)], check=True)

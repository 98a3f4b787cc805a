#!/usr/bin/env python3
"Write README.md from nbs/index.ipynb (`--check`: fail if README.md is out of date). Quarto-free, so it runs anywhere."
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
HEADER = '<!-- Generated from nbs/index.ipynb by `python tools/readme.py`: edit the notebook, not this file. -->\n\n'

def _directives(src):
    "Quarto/nbdev `#|` directives at the top of a cell, and the rest of its source."
    lines = src.splitlines()
    n = 0
    while n < len(lines) and lines[n].startswith('#|'): n += 1
    return {l[2:].strip().split(':')[0].split()[0] for l in lines[:n] if l[2:].strip()}, '\n'.join(lines[n:]).strip()

def _outputs(cell):
    "Text outputs of a code cell, as fenced blocks."
    out = []
    for o in cell.get('outputs', []):
        data = o.get('data', {})
        if any(k.startswith('image/') for k in data): continue  # a chart: its text/plain is only "<Figure ...>"
        if 'text/html' in data and '<table' in ''.join(data['text/html']):
            out.append(re.sub(r'<style.*?</style>\s*', '', ''.join(data['text/html']), flags=re.S).strip()); continue
        txt = o.get('text') or data.get('text/markdown') or data.get('text/plain')
        if txt: out.append('    ' + ''.join(txt).rstrip().replace('\n', '\n    '))
    return out

def render(nb_path=root/'nbs'/'index.ipynb'):
    "Markdown of the index notebook: markdown cells as they are, code cells fenced, hidden cells left out."
    parts = []
    for c in json.loads(Path(nb_path).read_text(encoding='utf-8'))['cells']:
        dirs, body = _directives(''.join(c['source']))
        if not body or dirs & {'hide', 'export', 'exporti', 'default_exp'}: continue
        if c['cell_type'] == 'markdown': parts.append(re.sub(r'^> ', '> ', body))
        else:
            if 'echo' not in dirs: parts.append(f'```python\n{body}\n```')
            parts += _outputs(c)
    return HEADER + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    txt, readme = render(), root/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text(encoding='utf-8') != txt:
            sys.exit('README.md is out of date with nbs/index.ipynb: run `python tools/readme.py` and commit.')
        print('README.md matches nbs/index.ipynb')
    else:
        readme.write_text(txt, encoding='utf-8'); print('wrote README.md')

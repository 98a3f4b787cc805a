#!/usr/bin/env python3
"Convert a percent-format script (`# %%` code cells, `# %% [markdown]` markdown cells) into a clean .ipynb."
# Usage: python tools/pct2nb.py SRC.py nbs/NN_name.ipynb
# Markdown cells: every line starts with '# ' (or is '#'), which is stripped.
import json, sys, re, hashlib
from pathlib import Path

def cells_of(text):
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        lines = list(buf)
        while lines and not lines[-1].strip(): lines.pop()
        while lines and not lines[0].strip(): lines.pop(0)
        if kind == 'markdown': lines = [re.sub(r'^# ?', '', l) if l.startswith('#') else l for l in lines]
        cells.append((kind, '\n'.join(lines)))
    for line in text.splitlines():
        m = re.match(r'^# %%( \[markdown\])?\s*$', line)
        if m:
            flush(); kind = 'markdown' if m.group(1) else 'code'; buf = []
        else: buf.append(line)
    flush()
    return cells

def to_nb(cells, stem):
    out = []
    for i, (kind, src) in enumerate(cells):
        cid = hashlib.md5(f'{stem}-{i}-{src}'.encode()).hexdigest()[:8]
        lines = src.splitlines(keepends=True)
        c = dict(cell_type=kind, id=cid, metadata={}, source=lines)
        if kind == 'code': c.update(execution_count=None, outputs=[])
        out.append(c)
    return dict(cells=out, metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')),
                nbformat=4, nbformat_minor=5)

if __name__ == '__main__':
    src, dst = map(Path, sys.argv[1:3])
    nb = to_nb(cells_of(src.read_text()), dst.stem)
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + '\n')
    print(f'wrote {dst} ({len(nb["cells"])} cells)')

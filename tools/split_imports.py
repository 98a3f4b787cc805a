#!/usr/bin/env python3
"Move top-level imports of non-exported notebook cells into cells of their own, so nbdev's doc processing runs only them."
# nbdev executes every cell that imports something when it builds the docs; a cell that also computes would then run
# without the cells before it. Usage: python tools/split_imports.py nbs/*.ipynb
import ast, json, sys, hashlib
from pathlib import Path

def _split(src:str):
    "(imports, rest) of a cell's source, or None when it needs no split."
    lines = src.splitlines(keepends=True)
    dirs = [l for l in lines if l.startswith('#|')]
    if any(d.split()[1].startswith('export') for d in dirs if len(d.split()) > 1): return None
    try: tree = ast.parse(src)
    except SyntaxError: return None
    imps = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    if not imps or len(imps) == len(tree.body): return None
    take = {i for n in imps for i in range(n.lineno - 1, n.end_lineno)}
    shared = {n.lineno - 1 for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))} & take
    imp, rest = [], []
    for i, l in enumerate(lines):
        if i not in take: rest.append(l)
        elif i not in shared: imp.append(l)
        else:  # `import x; code` on one line: the import statements go up, the code stays
            parts = [s.strip() for s in l.split(';')]
            imp.append('; '.join(s for s in parts if s.startswith(('import ', 'from '))) + '\n')
            rest.append('; '.join(s for s in parts if s and not s.startswith(('import ', 'from '))) + '\n')
    keep = [d for d in dirs if d.split()[1].rstrip(':') in ('hide',)]
    return ''.join(keep + imp).rstrip('\n'), ''.join(rest).strip('\n')

def split_nb(path:Path) -> int:
    "Split the cells of notebook `path`; return how many were split."
    nb = json.loads(path.read_text(encoding='utf-8')); out, n = [], 0
    for c in nb['cells']:
        res = _split(''.join(c['source'])) if c['cell_type'] == 'code' else None
        if res:
            n += 1
            cid = hashlib.md5((c.get('id', '') + 'imports').encode()).hexdigest()[:8]
            out.append(dict(cell_type='code', execution_count=None, id=cid, metadata={}, outputs=[],
                            source=res[0].splitlines(keepends=True)))
            c['source'] = res[1].splitlines(keepends=True)
        out.append(c)
    nb['cells'] = out
    if n: path.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + '\n', encoding='utf-8')
    return n

if __name__ == '__main__':
    for p in map(Path, sys.argv[1:]): print(p, split_nb(p))

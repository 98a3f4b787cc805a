#!/usr/bin/env python3
"""List code cells that end in an expression but store no output, so the docs page would show a bare input.

Usage: python tools/check_outputs.py [--strict] [nbs/X.ipynb ...]   (default: every nbs/*.ipynb)

A cell counts when its last statement is an expression whose value IPython would display: not an assignment,
import, def or class; not ending in `;`; not a call of a `test_*` assertion (fastcore.test returns None); not a cell
marked `#| hide`, `#| eval: false`, `#| export`/`#| exporti` (exported code) or `#| output: false`.

Offenders come in two kinds. A cell ending in a name, attribute, subscript, tuple, literal or operator always has
a value to show: missing output there is certain (exit 1). A cell ending in a call may legitimately show nothing
(the function returns None, e.g. `offline_init()`); these are listed as "calls" and fail only with --strict.
End such a cell with `;` (or assign the result) to say it shows nothing on purpose.
"""
import ast, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_DIRECTIVE = re.compile(r'^\s*#\s*\|\s*(.+?)\s*$')
_SKIP = {'hide', 'export', 'exporti', 'eval: false', 'eval:false', 'output: false', 'output:false'}

def directives(src:str) -> set:
    "The cell's `#| ...` directives, normalised (e.g. {'hide', 'eval: false'})."
    out = set()
    for line in src.splitlines():
        m = _DIRECTIVE.match(line)
        if m: out.add(re.sub(r'\s+', ' ', m.group(1).lower()))
    return out

def _python(src:str) -> str:
    "The cell without IPython magics and shell escapes, which `ast` cannot parse."
    return '\n'.join('' if l.lstrip().startswith(('%', '!')) else l for l in src.splitlines())

def _is_assertion(node) -> bool:
    "A call of `test_*` (fastcore.test) or `assert_*`: displays nothing by design."
    f = node.func if isinstance(node, ast.Call) else None
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ''
    return name.startswith(('test_', 'assert_'))

def shows_value(src:str) -> str|None:
    "'value' if IPython would display the last statement's value, 'call' if it would unless the call returns None."
    if any(d in _SKIP or d.startswith('export') for d in directives(src)): return None
    code = _python(src)
    if code.rstrip().endswith(';'): return None
    try: tree = ast.parse(code)
    except SyntaxError: return None
    if not tree.body or not isinstance(tree.body[-1], ast.Expr): return None
    v = tree.body[-1].value
    if _is_assertion(v) or isinstance(v, (ast.Await, ast.Yield, ast.YieldFrom)): return None
    return 'call' if isinstance(v, ast.Call) else 'value'

def offenders(path:Path) -> list:
    "(cell index, kind, first line) of each code cell that shows a value but stores no output."
    nb = json.loads(path.read_text())
    out = []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        kind = shows_value(src)
        if kind and not c.get('outputs'):
            last = [l for l in src.splitlines() if l.strip() and not _DIRECTIVE.match(l)]
            out.append((i, kind, (last[0] if last else '').strip()[:90]))
    return out

def main(args) -> int:
    strict = '--strict' in args
    paths = [Path(a) for a in args if a != '--strict'] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    counts = {}
    for p in paths:
        found = offenders(p)
        for i, kind, first in found: print(f'{p.name}: cell {i} ({kind}): {first}')
        for kind in ('value', 'call'): counts[p.name, kind] = sum(k == kind for _, k, _ in found)
    tot = {k: sum(n for (_, kk), n in counts.items() if kk == k) for k in ('value', 'call')}
    print(f"\n{tot['value']} cells end in a value and {tot['call']} in a call, with no stored output")
    for name in dict.fromkeys(p.name for p in paths):
        v, c = counts[name, 'value'], counts[name, 'call']
        if v or c: print(f'  {name:40s} value {v:3d}  call {c:3d}')
    return 1 if tot['value'] or (strict and tot['call']) else 0

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))

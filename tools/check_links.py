#!/usr/bin/env python3
"""Report backticked names whose automatic nbdev link points to the wrong page.

Usage: python tools/check_links.py [--processed] [nbs/X.ipynb ...]   (default: every nbs/*.ipynb); exit 1 when any is wrong.
  --processed: check the pages after nbdev's docs processors ran (tools/render_docs.py `process`), so the API
  entries `show_doc` renders from docstrings are checked too (slower: it imports and documents every module).

nbdev's `add_links` processor (nbdev.processors) runs `NbdevLookup().linkify` on every markdown cell and every
`text/markdown` output: each `name` or `name()` in backticks, outside code fences and indented code, becomes a link
to the page the package's `_modidx.py` index gives for it. For the project's own names nbdev strips the module
prefix, and when two modules define the same name the FIRST module in the index wins (they are sorted by module
name), so `collect` on any page links to the CLI's `collect` (gee_polygons.cli) rather than gee_polygons.results.

This check runs the same lookup and decides which page each name should link to:
1. the page's own module (its `#| default_exp`), when that module defines the name;
2. else the module the page imports the name from (`from gee_polygons.results import collect`, or the package's
   lazy `from gee_polygons import collect`);
3. else, when several modules define the name, it is reported as AMBIGUOUS with the candidates;
and reports WRONG when the link goes elsewhere, and MISSING-PAGE when the linked page is not built from any notebook.
A name that links to the CLI page from another page while some class also has a method of that name (`wait` ->
cli.html although the page means `ExportTask.wait`) is reported as SUSPECT. Links to other packages' sites
(fastcore, nbdev) are not checked. Exit 1 on WRONG or MISSING-PAGE.
"""
import ast, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = 'gee_polygons'
_re_backticks = re.compile(r'`([^`\s]+?)(?:\(\))?`')  # the pattern nbdev.doclinks uses

def page_of(nb_name:str) -> str:
    "The page nbdev builds from a notebook: '09_cli.ipynb' -> 'cli.html' (numeric prefix dropped)."
    return re.sub(r'^\d+[a-z]?_', '', Path(nb_name).stem) + '.html'

def _index() -> tuple:
    "(name -> {module: page#anchor}) for every symbol of the project's _modidx, with module prefixes stripped."
    from importlib import import_module
    d = import_module(f'{LIB}._modidx').d
    names = {}
    for mod, syms in d['syms'].items():
        for full, (doc, _py) in syms.items():
            names.setdefault(full.removeprefix(mod + '.'), {})[mod] = doc
    return names, d

def _markdown_texts(nb:dict):
    "(cell index, text) of what nbdev linkifies: markdown cells and text/markdown outputs."
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] == 'markdown': yield i, ''.join(c['source'])
        for o in c.get('outputs', []):
            md = o.get('data', {}).get('text/markdown')
            if md: yield i, ''.join(md) if isinstance(md, list) else md

def linkable(md:str):
    "Backticked names in `md` that linkify would consider (outside ``` fences and 4-space indented lines)."
    in_fence = False
    for line in md.splitlines():
        if line.startswith('```'): in_fence = not in_fence
        elif not line.startswith('    ') and not in_fence: yield from (m.group(1) for m in _re_backticks.finditer(line))

def page_modules(nb:dict) -> tuple:
    "(the page's own module or None, {name: module} imported from the package in its code cells)."
    from importlib import import_module
    lazy = getattr(import_module(LIB), '_LAZY', {})
    own, imported = None, {}
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        m = re.search(r'^\s*#\|\s*default_exp\s+(\S+)', src, re.M)
        if m: own = f'{LIB}.{m.group(1)}'
        try: tree = ast.parse('\n'.join('' if l.lstrip().startswith(('%', '!')) else l for l in src.splitlines()))
        except SyntaxError: continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split('.')[0] == LIB and not node.level:
                for a in node.names:
                    mod = f'{LIB}.{lazy[a.name]}' if node.module == LIB and a.name in lazy else node.module
                    imported[a.asname or a.name] = mod
    return own, imported

def _methods(names:dict, name:str) -> list:
    "Pages of methods called `name` (keys 'Class.name')."
    return sorted({v.split('#')[0] for k, mods in names.items() if k.endswith('.' + name) for v in mods.values()})

def _processed(path:Path) -> dict:
    "The notebook after nbdev's docs processors, as `nbdev-proc-nbs` would write it."
    import tempfile
    sys.path.insert(0, str(ROOT / 'tools'))
    from render_docs import process
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / path.name
        process(path.resolve(), out)
        return json.loads(out.read_text())

def check(path:Path, lookup, names:dict, pages:set, home:str, processed:bool=False) -> list:
    "(cell, name, linked page, expected page or candidates, verdict) for each bad link on the page."
    nb = json.loads(path.read_text())
    own_nb = nb
    if processed:
        try: nb = _processed(path)
        except Exception as e: print(f'{path.name}: nbdev could not process it ({str(e).splitlines()[0][:100]}); checked as stored')
    own, imported = page_modules(own_nb)
    out, seen = [], set()
    for i, md in _markdown_texts(nb):
        for name in linkable(md):
            target = lookup.doc(name)
            if target is None or (i, name) in seen: continue
            seen.add((i, name))
            if not target.startswith(home): continue  # another package's site
            linked = target.split('/')[-1].split('#')[0]
            if linked not in pages: out.append((i, name, linked, '-', 'MISSING-PAGE')); continue
            base = name.split('.')[0]
            cands = names.get(name) or names.get(base) or {}
            mods = [m for m in (own, imported.get(base)) if m in cands]
            if mods: expected = cands[mods[0]].split('#')[0]
            elif len(cands) > 1:
                out.append((i, name, linked, ' | '.join(sorted(v.split('#')[0] for v in cands.values())), 'AMBIGUOUS'))
                continue
            else:
                meths = _methods(names, name) if linked == 'cli.html' and page_of(path.name) != 'cli.html' else []
                if meths: out.append((i, name, linked, 'a method on ' + ' | '.join(meths) + '?', 'SUSPECT'))
                continue
            if expected != linked: out.append((i, name, linked, expected, 'WRONG'))
    return out

def main(args) -> int:
    import os
    os.chdir(ROOT)  # nbdev reads the project's configuration from here
    from nbdev.doclinks import NbdevLookup
    lookup, (names, d) = NbdevLookup(), _index()
    home = d['settings']['doc_host'].rstrip('/') + '/' + d['settings']['doc_baseurl'].strip('/')
    all_nbs = sorted((ROOT / 'nbs').glob('*.ipynb'))
    pages = {page_of(p.name) for p in all_nbs}
    counts = {}
    processed = '--processed' in args
    for p in [Path(a) for a in args if a != '--processed'] or all_nbs:
        for i, name, linked, expected, verdict in check(p, lookup, names, pages, home, processed):
            print(f'{p.name}: cell {i}: `{name}` -> {linked}, expected {expected}  [{verdict}]')
            counts[p.name, verdict] = counts.get((p.name, verdict), 0) + 1
    verdicts = ('WRONG', 'AMBIGUOUS', 'SUSPECT', 'MISSING-PAGE')
    tot = {v: sum(n for (_, vv), n in counts.items() if vv == v) for v in verdicts}
    print('\n' + ', '.join(f'{n} {v.lower()}' for v, n in tot.items()))
    for name in dict.fromkeys(k[0] for k in counts):
        print(f'  {name:40s} ' + '  '.join(f'{v.lower()} {counts.get((name, v), 0):3d}' for v in verdicts))
    return 1 if tot['WRONG'] or tot['MISSING-PAGE'] else 0

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))

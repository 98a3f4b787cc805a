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

This check runs the same lookup on every page and resolves each linked name to the page that should define it:
1. the page's own module (its `#| default_exp`), when it defines the name (as a function or class, or as a method
   `Class.name`: `wait` on the export page means `ExportTask.wait`);
2. else the module the page imports the name from (`from gee_polygons.results import collect`, or the package's
   lazy `from gee_polygons import collect`);
3. else any module the page imports from that defines it;
4. else, when modules define it on more than one page, the reader cannot tell which is meant: AMBIGUOUS.
It reports WRONG when the link goes to another page than the one so resolved, and MISSING-PAGE when the linked page
is not built from any notebook or an index entry's source link names a file or line the package does not have,
and NESTED-LINK for a linked name in backticks inside a markdown link's text (nbdev would put a link in the link).
Links to other packages' sites (fastcore, nbdev) are not checked. Exit 1 on any of them. Fix one by renaming the
clashing name, or by writing the qualified name (`ExportTask.wait`, `results.collect`), which links unambiguously.
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

_re_link_text = re.compile(r'\[([^\[\]]*)\]\(')  # the text of a markdown link: [text](

def linkable(md:str, in_links:bool=False):
    "Backticked names in `md` that linkify would consider (outside ``` fences and 4-space indented lines)."
    in_fence = False
    for line in md.splitlines():
        if line.startswith('```'): in_fence = not in_fence
        elif not line.startswith('    ') and not in_fence:
            if in_links: line = ' '.join(m.group(1) for m in _re_link_text.finditer(line))
            yield from (m.group(1) for m in _re_backticks.finditer(line))

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

def definitions(names:dict, name:str) -> dict:
    "{module: page#anchor} of every definition of `name`: a top-level name, or a method `Class.name`."
    out = dict(names.get(name, {}))
    if '.' not in name:
        for k, mods in names.items():
            if k.endswith('.' + name) and k.count('.') == 1: out.update({m: v for m, v in mods.items() if m not in out})
    return out

def _processed(path:Path) -> dict:
    "The notebook after nbdev's docs processors, as `nbdev-proc-nbs` would write it."
    import tempfile
    sys.path.insert(0, str(ROOT / 'tools'))
    from render_docs import process
    import warnings, contextlib, io
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter('ignore')  # nbdev's "imports and other code" warnings: tools/check_docs.py reports those
        out = Path(tmp) / path.name
        process(path.resolve(), out)
        return json.loads(out.read_text())

def expected_pages(name:str, defs:dict, own:str|None, imported:dict) -> tuple:
    "(pages `name` should link to on this page, verdict when it cannot be decided): own module, then imports."
    base = name.split('.')[0]
    for mods in ([own], [imported.get(base)], sorted(set(imported.values()))):
        found = {defs[m].split('#')[0] for m in mods if m in defs}
        if found: return found, None
    pages = {v.split('#')[0] for v in defs.values()}
    return (pages, None) if len(pages) <= 1 else (pages, 'AMBIGUOUS')

def check(path:Path, lookup, names:dict, pages:set, home:str, processed:bool=False) -> list:
    "(cell, name, linked page, expected page or candidates, verdict) for each bad link on the page."
    nb = json.loads(path.read_text())
    own_nb = nb
    if processed:
        try: nb = _processed(path)
        except Exception as e: print(f'{path.name}: nbdev could not process it ({str(e).splitlines()[0][:100]}); checked as stored')
    own, imported = page_modules(own_nb)
    out, seen = [], set()
    for i, md in _markdown_texts(own_nb):  # a linked name inside a link's text makes a link in a link
        for name in linkable(md, in_links=True):
            if lookup.doc(name): out.append((i, name, '-', 'no backticks inside a link text', 'NESTED-LINK'))
    for i, md in _markdown_texts(nb):
        for name in linkable(md):
            target = lookup.doc(name)
            if target is None or (i, name) in seen: continue
            seen.add((i, name))
            if not target.startswith(home): continue  # another package's site
            linked = target.split('/')[-1].split('#')[0]
            if linked not in pages: out.append((i, name, linked, '-', 'MISSING-PAGE')); continue
            defs = definitions(names, name) or definitions(names, name.split('.')[-1])
            expected, verdict = expected_pages(name, defs, own, imported)
            if verdict: out.append((i, name, linked, ' | '.join(sorted(expected)), verdict))
            elif expected and linked not in expected: out.append((i, name, linked, ' | '.join(sorted(expected)), 'WRONG'))
    return out

def source_problems(d:dict) -> list:
    "Index entries whose source link names a file or line the package does not have."
    out, lines = [], {}
    for mod, syms in d['syms'].items():
        for full, (_doc, py) in syms.items():
            f, _, line = py.partition('#L')
            if f not in lines:
                p = ROOT / f
                lines[f] = len(p.read_text().splitlines()) if p.exists() else 0
            if not lines[f] or (line and int(line) > lines[f]): out.append(f'{full}: source link {py} does not exist')
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
    for l in source_problems(d): print(l); counts['_modidx.py', 'MISSING-PAGE'] = counts.get(('_modidx.py', 'MISSING-PAGE'), 0) + 1
    verdicts = ('WRONG', 'AMBIGUOUS', 'NESTED-LINK', 'MISSING-PAGE')
    tot = {v: sum(n for (_, vv), n in counts.items() if vv == v) for v in verdicts}
    print('\n' + ', '.join(f'{n} {v.lower()}' for v, n in tot.items()))
    for name in dict.fromkeys(k[0] for k in counts):
        print(f'  {name:40s} ' + '  '.join(f'{v.lower()} {counts.get((name, v), 0):3d}' for v in verdicts))
    return 1 if any(tot.values()) else 0

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))

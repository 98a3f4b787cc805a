#!/usr/bin/env python3
"""Check that the outputs stored in the notebooks (what the docs site shows) are there and are current.

Usage:
  python tools/check_outputs.py [--strict] [nbs/X.ipynb ...]       static check: cells that show a value but store none
  python tools/check_outputs.py --copy-to DIR                       copy the project to DIR, for `nbdev-test --save`
  python tools/check_outputs.py --executed DIR/nbs [nbs/X.ipynb ...]   compare the stored outputs with executed copies
  (default notebooks: every nbs/*.ipynb; exit 1 on any offender)

CI (`.ci/run`) executes the notebooks once: `nbdev-test --save` runs in a copy of the project (`--copy-to`), which
tests them exactly as `nbdev-test` always does and keeps what each cell showed; `--executed` then compares those
copies with the notebooks in nbs/, cell by cell. No notebook runs twice. A cell is an offender when
- MISSING: executing it shows something (a value, a table, a chart, printed text) and the notebook stores nothing.
  A call that returns None shows nothing when executed, so it is never flagged;
- STALE: what it stores differs from what it shows now. Compared: `text/plain`, `text/markdown` and what it printed,
  after normalising what changes from run to run by nature (memory addresses, temporary paths and the project's
  own location, 127.0.0.1 ports, timings, dates and times, UUIDs, job and task ids, process ids, numpy 2's
  scalar reprs, progress-bar redraws, warnings' line numbers, float noise in the last digits);
  images and HTML count by kind only (a chart must be stored, its pixels are not compared), and so does stderr
  (progress bars; Python's warnings are left out, as they depend on the Python and library versions);
- EXTRA: it stores output that executing it no longer shows.
Cells nbdev-test does not run (`#| eval: false`, skipped flags) are not compared. A cell whose output changes by
nature beyond the normaliser (random sampling, wall-clock measurements) carries the directive `#| output_varies`:
it must still store an output when it shows one, but its text is not compared.

Without `--executed` (a quick local check, nothing executed): a cell that ends in a name, attribute, subscript,
literal or operator always shows a value, so missing output there is certain (exit 1); a cell ending in a call may
legitimately show nothing (the call returns None) and is listed as "call", failing only with --strict.
Fix offenders with `python tools/execute_nbs.py nbs/X.ipynb`, which executes offline and stores the outputs.
"""
import ast, json, re, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_DIRECTIVE = re.compile(r'^\s*#\s*\|\s*(.+?)\s*$')
_SKIP = {'hide', 'export', 'exporti', 'eval: false', 'eval:false', 'output: false', 'output:false'}
VARIES = 'output_varies'

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

def _last_line(src:str) -> str:
    "The cell's last line of code, to name it in a report."
    lines = [l for l in src.splitlines() if l.strip() and not _DIRECTIVE.match(l)]
    return (lines[-1] if lines else '').strip()[:90]

def offenders(path:Path) -> list:
    "(cell index, kind, last line) of each code cell that shows a value but stores no output (static check)."
    nb = json.loads(path.read_text())
    out = []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        kind = shows_value(src)
        if kind and not c.get('outputs'): out.append((i, kind, _last_line(src)))
    return out

_NORMAL = [  # (pattern, replacement): what differs between two runs of the same deterministic cell
    (r'\x1b\[[0-9;]*[A-Za-z]', ''),                                  # terminal colours
    (r'0x[0-9a-fA-F]{6,}', '0x<addr>'),                              # memory addresses
    (r'(?:/private)?/(?:tmp|var/folders)/[^\s\'",)\]}>]*', '<tmp>'),  # temporary files and directories
    (r'(?:127\.0\.0\.1|localhost):\d+', '127.0.0.1:<port>'),          # the emulator's port
    (r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>'),
    (r'\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?', '<datetime>'),
    (r'\d{8}T\d{6}Z?', '<datetime>'),                                # compact UTC stamps in job ids
    (r'\[\d+:\d\d(?::\d\d)?<[^\]]*\]', '[<eta>]'),                   # tqdm's [00:01<00:02, 3.1it/s]
    (r'\b\d+(?:\.\d+)?\s?(?:s|ms|µs|us|ns|sec|seconds|min|it/s|s/it)\b', '<time>'),
    (r'\.py:\d+', '.py:<line>'),                                     # warnings name the line that warned
    (r'(?<=_)[a-z0-9]{8}(?=_(?:chunk|cat|cont|trans)|\.json)', '<jobid>'),  # random job ids in names and files
    (r"(job_id['\"]?[=:]\s*['\"]?|\bjob \(?['\"])[a-z0-9]{8}\b", r'\1<jobid>'),
    (r'\b[A-Z0-9]{24}\b', '<taskid>'),                                # Earth Engine task ids (the emulator's too)
    (r'\bpid \d+', 'pid <pid>'),                                      # process ids
    (r'\bnp\.(?:float|int|uint|bool_?)\d*\(([^()]*)\)', r'\1'),          # numpy 2's scalar reprs, as numpy 1 prints them
    (r'-?\d+(?:\.\d+)?e-(?:1\d|[2-9]\d)\b', '~0'),                        # rounding noise around zero
    (r'\d+\.\d{10,}', lambda m: f'{float(m[0]):.10g}'),                 # the last digits of a float sum
    (r'[ \t]+$', ''),
]

def normalise(text:str) -> str:
    "`text` with what changes from run to run by nature replaced by placeholders (see _NORMAL)."
    text = '\n'.join(l.rsplit('\r', 1)[-1] for l in text.replace('\r\n', '\n').split('\n'))  # progress redraws
    for root in {str(ROOT), str(ROOT.resolve())}: text = text.replace(root, '<root>')
    for pat, rep in _NORMAL: text = re.sub(pat, rep, text, flags=re.M)
    return text.strip()

def _text(v) -> str: return ''.join(v) if isinstance(v, list) else str(v)

_WARNING = re.compile(r'^\S.*\b\w*Warning: ')

def _stderr(text:str) -> str:
    "Whether a cell wrote to stderr, beyond warnings (which depend on the Python and library versions): '' or 'yes'."
    lines, keep, in_warning = text.replace('\r', '\n').splitlines(), [], False
    for l in lines:
        if _WARNING.match(l): in_warning = True
        elif in_warning and l.startswith((' ', '\t')): continue
        else: in_warning = False; keep.append(l)
    return 'yes' if any(l.strip() for l in keep) else ''

def shown(cell:dict, copy_root:str|None=None) -> list:
    "What a code cell's outputs show, as comparable (kind, normalised text) pairs: printed text first, then values."
    streams, values = {}, []
    for o in cell.get('outputs', []):
        t = o.get('output_type')
        if t == 'stream': streams[o.get('name', 'stdout')] = streams.get(o.get('name', 'stdout'), '') + _text(o.get('text', ''))
        elif t == 'error': values.append(('error', o.get('ename', '')))
        elif t in ('execute_result', 'display_data'):
            d = o.get('data', {})
            text = next((m for m in ('text/markdown', 'text/plain') if m in d), None)
            if any(m.startswith('image/') for m in d): values.append(('image', ''))  # a chart: stored as an image
            if text: values.append((text, _text(d[text])))
            else: values += [(m, '') for m in sorted(d) if m.startswith(('image/', 'text/html'))][:1]
    if 'stderr' in streams: streams['stderr'] = _stderr(streams['stderr'])
    found = [('stream:' + n, s) for n, s in sorted(streams.items()) if s.strip()] + values
    return [(k, normalise(s.replace(copy_root, str(ROOT)) if copy_root else s)) for k, s in found]

def _executed(nb:dict) -> bool:
    "Whether execnb ran this notebook (it records each cell's timing in its metadata; nbdev-clean removes it)."
    return any('execution' in c.get('metadata', {}) for c in nb['cells'] if c['cell_type'] == 'code')

def compare(stored_path:Path, executed_path:Path) -> list:
    "(cell index, verdict, detail) of each cell whose stored outputs are missing, stale or extra."
    stored, run = json.loads(stored_path.read_text()), json.loads(executed_path.read_text())
    runnable = [c for c in stored['cells'] if c['cell_type'] == 'code' and 'eval: false' not in directives(''.join(c['source']))]
    if not runnable: return []
    if not _executed(run): return [(-1, 'NOT-RUN', 'the executed copy has no execution record (did nbdev-test fail on it?)')]
    if len(stored['cells']) != len(run['cells']): return [(-1, 'CHANGED', 'the notebook changed while it was executed')]
    copy_root, out = str(executed_path.resolve().parents[1]), []
    for i, (s, r) in enumerate(zip(stored['cells'], run['cells'])):
        if s['cell_type'] != 'code' or 'execution' not in r.get('metadata', {}): continue  # a cell nbdev-test skipped
        src = ''.join(s['source'])
        have, now = shown(s, copy_root), shown(r, copy_root)
        if have == now: continue
        if VARIES in directives(src) and bool(have) == bool(now): continue
        if not have: out.append((i, 'MISSING', f'{_last_line(src)}  (shows {", ".join(k for k, _ in now)})'))
        elif not now: out.append((i, 'EXTRA', f'{_last_line(src)}  (stores output it no longer shows)'))
        else: out.append((i, 'STALE', f'{_last_line(src)}  ({_first_difference(have, now)})'))
    return out

def _first_difference(have:list, now:list) -> str:
    "Where the stored and the executed outputs first differ, for the report."
    a, b = '\n'.join(f'[{k}] {t}' for k, t in have), '\n'.join(f'[{k}] {t}' for k, t in now)
    i = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f'stored {a[max(0, i-25):i+45]!r}, now {b[max(0, i-25):i+45]!r}'

def copy_project(dst:Path) -> Path:
    "Copy the project (notebooks, package, tools, configuration) to `dst`, where `nbdev-test --save` may write."
    shutil.copytree(ROOT, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        '.git', '.venv*', 'venv', '.ci-venv*', '_docs', '_proc', '.quarto', 'bench', '__pycache__', '*.egg-info', '.pytest_cache',
        '.hypothesis'))
    return dst

def _report(rows:dict) -> int:
    "Print offenders per notebook; the number of offenders."
    n = sum(len(v) for v in rows.values())
    for name, found in rows.items():
        for i, verdict, detail in found: print(f'{name}: cell {i}: {verdict}: {detail}')
    print(f'\n{n} cells with missing, stale or extra stored output')
    for name, found in rows.items():
        if found: print(f'  {name:40s} ' + '  '.join(f'{v.lower()} {sum(f[1] == v for f in found)}' for v in dict.fromkeys(f[1] for f in found)))
    return n

def main(args) -> int:
    if args[:1] == ['--copy-to']: print(f'copied the project to {copy_project(Path(args[1]))}'); return 0
    strict = '--strict' in args
    executed = Path(args[args.index('--executed') + 1]) if '--executed' in args else None
    rest = [a for j, a in enumerate(args) if a not in ('--strict', '--executed') and not (executed and j and args[j-1] == '--executed')]
    paths = [Path(a) for a in rest] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    if executed:
        rows = {p.name: compare(p, executed / p.name) if (executed / p.name).exists() else [(-1, 'NOT-RUN', 'no executed copy')]
                for p in paths}
        if _report(rows): print('Refresh the outputs: python tools/execute_nbs.py nbs/<notebook>.ipynb (or mark a cell '
                                'whose output changes by nature with `#| output_varies`).'); return 1
        return 0
    counts = {}
    for p in paths:
        found = offenders(p)
        for i, kind, last in found: print(f'{p.name}: cell {i} ({kind}): {last}')
        for kind in ('value', 'call'): counts[p.name, kind] = sum(k == kind for _, k, _ in found)
    tot = {k: sum(n for (_, kk), n in counts.items() if kk == k) for k in ('value', 'call')}
    print(f"\n{tot['value']} cells end in a value and {tot['call']} in a call, with no stored output")
    for name in dict.fromkeys(p.name for p in paths):
        v, c = counts[name, 'value'], counts[name, 'call']
        if v or c: print(f'  {name:40s} value {v:3d}  call {c:3d}')
    return 1 if tot['value'] or (strict and tot['call']) else 0

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Render docs pages to HTML with pandoc and screenshot them in headless Chromium, to look at pages without Quarto.

Usage: python tools/render_docs.py [nbs/X.ipynb ...] [--out DIR] [--height PX] [--no-shots]
  default: every nbs/*.ipynb, into _proc/preview/ (git-ignored): DIR/<page>.html and DIR/<page>.png

Needs the Debian packages: `apt-get update && apt-get install -y pandoc chromium`.

Each notebook first goes through nbdev's own docs processors (`nbdev.processors.FilterDefaults`, what
`nbdev-proc-nbs` runs for Quarto): hidden cells dropped, `show_doc` entries rendered, automatic links added, the
title cell turned into front matter. pandoc then reads the processed notebook (`-f ipynb`) and writes standalone
HTML with the saved outputs (tables, images, text); Chromium takes a 1280 px wide screenshot. Quarto's callouts,
tabsets and sidebar are not reproduced: this shows the content and the outputs, which is what to check.
Open the PNGs in an image viewer, or the HTML in a browser.
"""
import argparse, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1.5em;line-height:1.5;color:#222}
pre,code{font-family:ui-monospace,monospace;font-size:.9em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;border-radius:4px}
div.cell-output pre, .output pre{background:#fff;border-left:3px solid #ccd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:left}
blockquote{color:#555;border-left:4px solid #ddd;margin-left:0;padding-left:1em}
img{max-width:100%}
header#title-block-header .subtitle, p.description{font-size:1.1em;color:#555}
"""

def page_name(nb:Path) -> str:
    "nbdev's page name for a notebook: '31_howto_batch_export.ipynb' -> 'howto_batch_export'."
    return re.sub(r'^\d+[a-z]?_', '', nb.stem)

def _echo_off(cell):
    "What Quarto shows of a cell marked `#| echo: false`: its outputs only (`show_doc`'s markdown as markdown)."
    from fastcore.basics import AttrDict
    if cell.cell_type != 'code' or not re.search(r'^#\|\s*echo:\s*false', cell.source, re.M): return cell
    md = [''.join(o['data']['text/markdown']) for o in cell.get('outputs', []) if 'text/markdown' in o.get('data', {})]
    if md and len(md) == len(cell.outputs): return AttrDict(cell_type='markdown', source='\n\n'.join(md), metadata={}, id=cell.get('id'))
    cell.source = ''
    return cell

def process(src:Path, dst:Path):
    "Run nbdev's docs processors on `src`, as nbdev-proc-nbs does, writing the processed notebook to `dst`."
    from fastcore.nbio import read_nb, write_nb
    from nbdev.processors import FilterDefaults
    os.environ['IN_TEST'] = '1'
    here = Path.cwd(); os.chdir(src.parent)
    try:
        nb = read_nb(src)
        FilterDefaults()(nb)
        nb.cells = [_echo_off(c) for c in nb.cells]
        nb.setdefault('nbformat', 4); nb.setdefault('nbformat_minor', 5)  # pandoc refuses a notebook without them
        for i, c in enumerate(nb.cells):  # ... or with the null execution counts nbdev-clean leaves
            if c.cell_type != 'code': continue
            c.execution_count = i
            for o in c.get('outputs', []):
                if o.get('output_type') == 'execute_result': o['execution_count'] = i
        write_nb(nb, dst)
    finally: os.chdir(here); os.environ.pop('IN_TEST', None)

def _front_matter(processed:Path) -> tuple:
    "(title, description) from the front-matter raw cell nbdev adds, which is then dropped (pandoc would print it)."
    import json, yaml
    nb = json.loads(processed.read_text())
    for i, c in enumerate(nb['cells']):
        s = ''.join(c['source'])
        if c['cell_type'] == 'raw' and s.startswith('---'):
            fm = yaml.safe_load(s.strip().strip('-')) or {}
            del nb['cells'][i]; processed.write_text(json.dumps(nb))
            return str(fm.get('title', '')), str(fm.get('description', ''))
    return '', ''

def to_html(processed:Path, out:Path, css:Path) -> Path:
    "Standalone HTML of a processed notebook, with its images extracted next to it."
    title, desc = _front_matter(processed)
    html = out / f'{processed.stem}.html'
    cmd = ['pandoc', '-f', 'ipynb+link_attributes', '-t', 'html5', '--standalone', '--mathml', '--css', css.name, '--extract-media', str(out / 'media' / processed.stem),
           '--metadata', f'pagetitle={title or processed.stem}', '-o', str(html), str(processed)]
    if title: cmd[-3:-3] = ['--metadata', f'title={title}']
    if desc: cmd[-3:-3] = ['--metadata', f'subtitle={desc}']
    subprocess.run(cmd, check=True, cwd=out)
    return html

def screenshot(html:Path, png:Path, height:int=4000):
    "A 1280 px wide screenshot of `html` in headless Chromium, with a fresh profile and no network services."
    browser = shutil.which('chromium') or shutil.which('chromium-browser')
    if not browser: sys.exit('chromium not found: apt-get update && apt-get install -y chromium')
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                        '--disable-component-update', '--disable-sync', '--no-first-run', f'--user-data-dir={profile}',
                        '--hide-scrollbars', f'--screenshot={png}', f'--window-size=1280,{height}', html.as_uri()],
                       check=True, capture_output=True, timeout=120)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='*', type=Path)
    ap.add_argument('--out', type=Path, default=ROOT / '_proc' / 'preview')
    ap.add_argument('--height', type=int, default=4000, help='screenshot height in pixels')
    ap.add_argument('--no-shots', action='store_true', help='HTML only')
    a = ap.parse_args(argv)
    if not shutil.which('pandoc'): sys.exit('pandoc not found: apt-get update && apt-get install -y pandoc')
    nbs = [p.resolve() for p in a.notebooks] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    a.out.mkdir(parents=True, exist_ok=True)
    css = a.out / 'preview.css'; css.write_text(CSS)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for nb in nbs:
            processed = Path(tmp) / f'{page_name(nb)}.ipynb'
            try: process(nb, processed)
            except Exception as e:  # one broken notebook should not hide every other page
                failed.append(nb.name); print(f'{nb.name}: nbdev could not process it: {str(e).splitlines()[0][:80]} {str(e).splitlines()[-1][:120]}'); continue
            html = to_html(processed, a.out, css)
            if not a.no_shots: screenshot(html, a.out / f'{page_name(nb)}.png', a.height)
            print(f'{nb.name} -> {html}' + ('' if a.no_shots else f" + {html.with_suffix('.png').name}"))
    if failed: sys.exit(f'{len(failed)} notebooks could not be processed: {", ".join(failed)}')

if __name__ == '__main__': main()

"Shared by the bench/ scripts: put a benchmark's section into BENCHMARKS.md."
import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent/'BENCHMARKS.md'

def write_section(text:str, path:Path=BENCHMARKS):
    "Replace the section that `text` starts with (its '## ' heading), or append it; other sections stay as they are."
    heading = text.lstrip().splitlines()[0]
    if not heading.startswith('## '): raise ValueError(f'A section starts with a "## " heading, not {heading!r}.')
    old = path.read_text() if path.exists() else '# Benchmarks\n'
    pat = re.compile(rf'^{re.escape(heading)}\n.*?(?=^## |\Z)', re.S | re.M)
    new = pat.sub(lambda m: text.strip() + '\n\n', old) if pat.search(old) else old.rstrip() + '\n\n' + text.strip() + '\n'
    path.write_text(new.rstrip() + '\n')

"""Where raw results and pages live, and how pages are rewritten from them.

Raw results: `docs/bench/<benchmark>.json` (callgrind's stays `docs/callgrind.json`). A page is
either written whole by its renderer, or (docs/benchmarks.md, docs/loadgen-benchmark.md) holds
hand-written prose around generated blocks between `<!-- NAME: begin -->` and
`<!-- NAME: end -->`: only the blocks are rewritten.
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def begin(name):
    return f"<!-- {name}: begin -->"


def end(name):
    return f"<!-- {name}: end -->"


def replace_block(text, name, content):
    """`text` with the block `name` holding `content`; appended at the end when missing."""
    block = f"{begin(name)}\n{content}\n{end(name)}"
    if begin(name) in text and end(name) in text:
        head, rest = text.split(begin(name), 1)
        return head + block + rest.split(end(name), 1)[1]
    return text.rstrip("\n") + "\n\n" + block + "\n"


class Store:
    """The JSON files and pages under `base` (the repository, or a scratch directory for smoke
    runs: what is missing there is read from the repository)."""

    def __init__(self, base=None):
        self.base = Path(base).resolve() if base else ROOT

    def json_path(self, name, base=None):
        docs = (base or self.base) / "docs"
        return docs / "callgrind.json" if name == "callgrind" else docs / "bench" / f"{name}.json"

    def load(self, name):
        for base in (self.base, ROOT):
            path = self.json_path(name, base)
            if path.exists():
                return json.loads(path.read_text())
        return None

    def save(self, name, data):
        path = self.json_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return path

    def page(self, name):
        for base in (self.base, ROOT):
            path = base / "docs" / name
            if path.exists():
                return path.read_text()
        return None

    def write_page(self, name, text):
        path = self.base / "docs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

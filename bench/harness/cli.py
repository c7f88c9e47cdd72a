"""`python3 -m bench <command>`: one command per benchmark, plus `render`.

Every measuring command builds the release binaries it needs (unless `--no-build`), measures,
writes its raw results to `docs/bench/<command>.json` (callgrind: `docs/callgrind.json`) and
re-renders every page from the JSON. `--out DIR` writes the JSON and the pages under
`DIR/docs/` instead (smoke runs: the committed docs stay as they are). `render` measures
nothing: it rewrites the pages from the committed JSON (`--check` only compares).
"""

import argparse
import sys

from bench.harness import callgrind, canary, loadgen, macro, soak, stacks, wiring
from bench.harness.pages import Store, replace_block

COMMANDS = {
    "macro": (macro, "the full suite behind docs/benchmarks.md (well over half an hour)"),
    "wiring": (wiring, "the lab's tracing wiring against the article's, over TCP"),
    "canary": (canary, "the canary (console build) against the release build"),
    "soak": (soak, "overload of a lock route, and a 3-minute soak"),
    "stacks": (stacks, "frame pointers' cost and the time to the `worker blocked` line"),
    "callgrind": (callgrind, "instructions per request under callgrind, one column per --label"),
    "loadgen": (loadgen, "loadgen against wrk and oha, and its highest open-loop rate"),
}
BENCHMARKS_PAGE = "benchmarks.md"


def pages(store):
    """{page: text} rendered from the JSON in `store` (pages with blocks keep their prose)."""
    out = {}
    for module in (wiring, canary, soak, stacks):
        data = store.load(module.__name__.rsplit(".", 1)[1])
        if data:
            out[module.PAGE] = module.render(data)
    text = store.page(BENCHMARKS_PAGE) or "# Benchmarks\n"
    blocks = {}
    if (data := store.load("macro")):
        blocks.update(macro.blocks(data))
    if (data := store.load("canary")):
        blocks["canary"] = canary.body(data)
    if (data := store.load("stacks")):
        blocks["stacks"] = stacks.body(data, level=3)
    if (data := store.load("soak")):
        blocks["soak"] = soak.render(data, level=2).rstrip("\n")
    if (data := store.load("callgrind")):
        blocks["callgrind"] = callgrind.render(data)
    for name, content in blocks.items():
        text = replace_block(text, name, content)
    out[BENCHMARKS_PAGE] = text
    if (data := store.load("loadgen")):
        out[loadgen.PAGE] = replace_block(store.page(loadgen.PAGE) or "", loadgen.BLOCK, loadgen.render(data))
    return out


def render(store, check=False):
    stale = []
    for page, text in pages(store).items():
        if store.page(page) != text:
            stale.append(page)
            if not check:
                print(f"wrote {store.write_page(page, text)}", file=sys.stderr)
    if check and stale:
        sys.exit("stale (run `python3 -m bench render`): " + ", ".join(f"docs/{p}" for p in stale))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, what) in COMMANDS.items():
        p = sub.add_parser(name, help=what, description=module.__doc__.split("\n\n")[0])
        p.add_argument("--no-build", action="store_true",
                       help="use the binaries of the last build (target/bench-bin)"
                       + ("; callgrind: RELEASE_DIR, default target/release" if name == "callgrind" else ""))
        p.add_argument("--out", metavar="DIR", help="write the JSON and pages under DIR/docs/")
        module.add_arguments(p)
    p = sub.add_parser("render", help="rewrite every page from the committed JSON, measuring nothing")
    p.add_argument("--check", action="store_true", help="only report pages that differ (exit 1)")
    p.add_argument("--out", metavar="DIR", help="read and write under DIR/docs/ first")
    args = parser.parse_args(argv)
    store = Store(args.out)
    if args.command == "render":
        return render(store, args.check)
    module = COMMANDS[args.command][0]
    data = module.run(args, store)
    if data is None:
        return None
    print(f"wrote {store.save(args.command, data)}", file=sys.stderr)
    return render(store)

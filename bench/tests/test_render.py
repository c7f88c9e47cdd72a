"""Rendering the committed JSON reproduces the committed pages, and the blocks of a page are
rewritten without touching the prose around them."""

import copy
import json
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from bench.harness import callgrind, cli, macro, pages, proc
from bench.harness.pages import Store, replace_block


class CommittedPages(unittest.TestCase):
    def test_every_page_renders_from_the_committed_json_unchanged(self):
        store = Store()
        rendered = cli.pages(store)
        self.assertEqual(sorted(rendered), sorted([
            "benchmarks.md", "wiring-benchmark.md", "canary-benchmark.md", "soak-benchmark.md",
            "stacks-benchmark.md", "loadgen-benchmark.md"]))
        for page, text in rendered.items():
            with self.subTest(page=page):
                self.assertEqual(text, store.page(page), f"docs/{page} differs from its JSON: "
                                 "run `python3 -m bench render` and review the diff")

    def test_every_block_of_benchmarks_md_is_present(self):
        text = Store().page("benchmarks.md")
        for name in ("macro", "wiring", "canary", "stacks", "soak", "commands", "callgrind"):
            with self.subTest(block=name):
                self.assertEqual(text.count(pages.begin(name)), 1)
                self.assertEqual(text.count(pages.end(name)), 1)

    def test_a_changed_figure_changes_the_page(self):
        data = copy.deepcopy(Store().load("macro"))
        data["reproduction"]["p99_ratio"] = 1.0
        self.assertIn("bug / fix: **1.0×**", macro.render_macro(data))
        self.assertNotIn("bug / fix: **1.0×**", Store().page("benchmarks.md"))


class Blocks(unittest.TestCase):
    def test_replace_keeps_the_prose_around_the_block(self):
        text = "intro\n<!-- x: begin -->\nold\n<!-- x: end -->\noutro\n"
        self.assertEqual(replace_block(text, "x", "new"),
                         "intro\n<!-- x: begin -->\nnew\n<!-- x: end -->\noutro\n")

    def test_a_missing_block_is_appended(self):
        self.assertEqual(replace_block("# T\n", "y", "body"),
                         "# T\n\n<!-- y: begin -->\nbody\n<!-- y: end -->\n")


class Parsing(unittest.TestCase):
    WRK = """Running 10s test @ http://127.0.0.1:1/api/orders/1
  Latency Distribution
     50%  300.00us
     99%    1.29ms
  893000 requests in 10.00s, 100.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:  89300.12
"""

    def test_wrk_report(self):
        r = proc.parse_wrk(self.WRK)
        self.assertEqual((r["requests"], r["rate"], r["p99_ms"], r["non2xx"], r["errors"]),
                         (893000, 89300.12, 1.29, 3, 6))

    def test_wrk_p99_in_microseconds_and_seconds(self):
        self.assertAlmostEqual(proc.parse_wrk(self.WRK.replace("1.29ms", "900.00us"))["p99_ms"], 0.9)
        self.assertAlmostEqual(proc.parse_wrk(self.WRK.replace("1.29ms", "1.20s"))["p99_ms"], 1200)


if __name__ == "__main__":
    unittest.main()


class CallgrindRecord(unittest.TestCase):
    def test_a_label_is_added_beside_the_committed_ones_and_rendered_as_a_column(self):
        counts = {name: {"idle": 1, "busy": 2, "per_request": 1000 + i}
                  for i, name in enumerate(callgrind.CONFIGS)}
        with tempfile.TemporaryDirectory() as tmp, \
                mock.patch.object(callgrind, "measure", return_value=counts), \
                mock.patch.object(proc, "require"):
            cli.main(["callgrind", "--no-build", "--label", "smoke", "--commit", "abc1234", "--out", tmp])
            raw = json.loads((Path(tmp) / "docs/callgrind.json").read_text())
            page = (Path(tmp) / "docs/benchmarks.md").read_text()
        committed = Store().load("callgrind")
        self.assertEqual(list(raw), [*committed, "smoke"])
        self.assertEqual(raw["smoke"]["counts"], counts)
        self.assertEqual(raw["smoke"]["commit"], "abc1234")
        self.assertIn("| lab, RUST_LOG=info | " + " | ".join(
            f"{committed[l]['counts']['lab, RUST_LOG=info']['per_request']:,}" for l in committed)
            + " | 1,002 |", page)
        self.assertIn("smoke: commit `abc1234`", page)

#!/usr/bin/env python3
"""`python3 bench/callgrind.py ARGS` = `python3 -m bench callgrind ARGS` (kept for its users)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness.cli import main  # noqa: E402

main(["callgrind", *sys.argv[1:]])

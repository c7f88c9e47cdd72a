"""Tests of the benchmark harness: `python3 -m unittest discover -s bench -t .` from the
repository root (no build, no server, a second or two)."""

"""`python3 -m bench <command>`: the one entry point of the benchmark harness."""

from bench.harness.cli import main

main()

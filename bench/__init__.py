"""The lab's benchmark harness: `python3 -m bench <command>` from the repository root.

See `bench/harness/cli.py` for the commands and docs/testing.md for how they are used.
"""

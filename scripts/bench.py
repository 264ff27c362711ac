#!/usr/bin/env python3
"""Thin wrapper: ``scripts/bench.py ARGS`` is ``raftkv bench ARGS`` (see
``raftkv bench --help`` and docs/performance.md), runnable from a checkout."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from raftkv.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))

#!/usr/bin/env python3
"""The load runner: drive the engine with simulated WhatsApp traffic and report on it.

Usage: ``python scripts/loadrun.py [options]`` (or ``scripts/run [options]``); ``--help``
lists every option. Prints a report table on stdout, progress on stderr, and exits 0 when
every accepted message got exactly one outcome, 1 when not, 2 for bad options.

Importable too: ``main(argv) -> int`` and ``run(parse_args(argv)) -> dict`` (the report).
The code lives in the installed package ``apps.loadrun`` (console command ``wae-loadrun``).
"""

from __future__ import annotations

import sys

from apps.loadrun import RunOptions, parse_args, render, run, write_json
from apps.loadrun.cli import main

__all__ = ["RunOptions", "main", "parse_args", "render", "run", "write_json"]

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The load runner: drive the engine with simulated WhatsApp traffic and report on it.

Usage: ``python scripts/loadrun.py [options]`` (or ``scripts/run [options]``, which makes
``.venv`` first); ``--help`` lists every option. Prints a report table on stdout, progress
on stderr, and exits 0 when every accepted message got exactly one outcome, 1 when not, 2
for bad options or missing dependencies.

Importable too: ``main(argv) -> int`` and ``run(parse_args(argv)) -> dict`` (the report).
The code lives in the installed package ``apps.loadrun`` (console command ``wae-loadrun``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file from a checkout: its packages, from any working directory.
if (_root := str(Path(__file__).resolve().parents[1])) not in sys.path:
    sys.path.insert(0, _root)

from apps.deps import CORE, CORE_INSTALL, require

require("loadrun.py", CORE, CORE_INSTALL)  # one line, not a traceback, when they are missing

from apps.loadrun import RunOptions, parse_args, render, run, write_json  # noqa: E402
from apps.loadrun.cli import main  # noqa: E402

__all__ = ["RunOptions", "main", "parse_args", "render", "run", "write_json"]

if __name__ == "__main__":
    sys.exit(main())

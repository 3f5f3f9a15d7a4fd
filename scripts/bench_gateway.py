#!/usr/bin/env python3
"""The gateway benchmark: the real gateway against a bare aiohttp handler, in one run.

Usage: ``python scripts/bench_gateway.py [--concurrency 1,10,100] [--duration 10]
[--json PATH] [--profile DIR]``; ``--help`` lists every option. Signed WhatsApp webhooks go
over loopback HTTP, with the same client code, to the gateway (an embedded engine on
multiprocTCPBase, loopback numbers, the instant echo provider) and to an aiohttp handler
that only checks the same signature and answers 200; it prints both rates per concurrency,
their ratio, and the CPU each process spent per webhook. Exit status 0 when every answer
was a 200, every accepted message got its outcome and no process or file was left; 1 if
not; 2 for bad options or missing dependencies. The code is in ``apps.bench``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file from a checkout: its packages, from any working directory.
if (_root := str(Path(__file__).resolve().parents[1])) not in sys.path:
    sys.path.insert(0, _root)

from apps.deps import CORE, HTTP, HTTP_INSTALL, require

require("bench_gateway.py", (*CORE, *HTTP), HTTP_INSTALL)  # one line, not a traceback

from apps.bench.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

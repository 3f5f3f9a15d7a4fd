#!/usr/bin/env python3
"""Run the reference webhook gateway: ``scripts/gateway.py --config gateway.toml`` (or ``--demo``).

The same as ``python -m apps.gateway`` and the ``wae-gateway`` command.
"""

import sys
from pathlib import Path

# Run as a file from a checkout: its packages, from any working directory.
if (_root := str(Path(__file__).resolve().parents[1])) not in sys.path:
    sys.path.insert(0, _root)

from apps.deps import CORE, HTTP, HTTP_INSTALL, require

require("gateway.py", (*CORE, *HTTP), HTTP_INSTALL)  # one line, not a traceback, if missing

from apps.gateway.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="gateway.py"))

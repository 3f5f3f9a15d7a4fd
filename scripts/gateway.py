#!/usr/bin/env python3
"""Run the reference webhook gateway: ``scripts/gateway.py --config gateway.toml``.

The same as ``python -m apps.gateway`` and the ``wae-gateway`` command.
"""

import sys

from apps.gateway.__main__ import main

if __name__ == "__main__":
    sys.exit(main())

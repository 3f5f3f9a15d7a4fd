"""The gateway benchmark: the real gateway against a bare aiohttp handler, in one run.

``scripts/bench_gateway.py`` (:func:`~apps.bench.run.main`) starts both servers
(:mod:`apps.bench.serve`, each in a process of its own, :mod:`apps.bench.servers`),
drives them with the same client (:mod:`apps.bench.client`) at each concurrency, and
prints one table (:mod:`apps.bench.report`); ``--profile`` samples the gateway process
with py-spy meanwhile (:mod:`apps.bench.profile`). Needs the ``http`` extra.

The names below load on first use (PEP 562): the servers run as ``python -m
apps.bench.serve``, which imports this package first, and must not find their own module
imported already.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apps.bench.report import Level, Report
    from apps.bench.run import main, parse_args

__all__ = ["Level", "Report", "main", "parse_args"]

_HOMES = {
    "Level": "apps.bench.report",
    "Report": "apps.bench.report",
    "main": "apps.bench.run",
    "parse_args": "apps.bench.run",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'apps.bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value

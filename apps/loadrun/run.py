"""The load runner's entry: one run, or the three of ``--durability-compare``."""

from __future__ import annotations

from typing import Any

from .compare import compare
from .options import RunOptions
from .single import run_single

__all__ = ["run"]


def run(opts: RunOptions) -> dict[str, Any]:
    """Run the load described by ``opts`` and return the report (see ``report.build``).

    With ``--durability-compare``, the combined report of three runs (``compare.py``).

    Raises:
        ConfigError: a bad ``--set``/``--config`` value.
        EngineError: the engine could not start or set up its accounts.
    """
    return compare(opts) if opts.durability_compare else run_single(opts)

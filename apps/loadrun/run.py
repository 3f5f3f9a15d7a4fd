"""The load runner's entry: one run, the three of ``--durability-compare``, or a sweep."""

from __future__ import annotations

from typing import Any

from .compare import compare
from .options import RunOptions
from .single import run_single
from .sweep import sweep

__all__ = ["run"]


def run(opts: RunOptions) -> dict[str, Any]:
    """Run the load described by ``opts`` and return the report (see ``report.build``).

    With ``--durability-compare``, the combined report of three runs (``compare.py``);
    with ``--accounts-sweep``, of one run per account count (``sweep.py``).

    Raises:
        ConfigError: a bad ``--set``/``--config`` value.
        EngineError: the engine could not start or set up its accounts.
    """
    if opts.accounts_sweep:
        return sweep(opts)
    return compare(opts) if opts.durability_compare else run_single(opts)

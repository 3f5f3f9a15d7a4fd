"""``--durability-compare``: the same traffic with durability fsync, os and off, side by side.

Three runs back to back in one invocation (:data:`~apps.loadrun.options.DURABILITY_ORDER`),
each on a fresh store of its own (see ``store.py``) with the same options and seed, so the
same messages are offered; each runs ``--duration`` (default
:data:`~apps.loadrun.options.COMPARE_DURATION_S`) or ``--messages``. The report gives
each run's completed messages/s and its ratio to ``off`` (no file: the store in memory),
with the target ``fsync >= 0.9x off``; ``--json`` keeps each run's whole report (without
its time series). The verdict holds only if every run balanced its books.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .options import DURABILITY_ORDER, RunOptions, engine_config
from .report import REPORT_VERSION
from .single import run_once
from .store import RunStore

__all__ = ["TARGET_VS_OFF", "compare"]

TARGET_VS_OFF = 0.9
"""fsync's completed messages/s should be at least this fraction of off's (issue 10)."""


def compare(opts: RunOptions) -> dict[str, Any]:
    """Run the three measurements and return the combined report.

    Raises:
        ConfigError: a bad ``--set``/``--config`` value.
        EngineError: an engine could not start.
    """
    cfg = engine_config(opts)
    reports: dict[str, dict[str, Any]] = {}
    for n, durability in enumerate(DURABILITY_ORDER):
        leg_opts = opts if n == 0 else dataclasses.replace(opts, baseline=False)
        store, leg_cfg = RunStore.fresh(
            dataclasses.replace(cfg, durability=durability), f"-{durability}"
        )
        reports[durability] = run_once(leg_opts, leg_cfg, store)
    return combine(opts, reports)


def _leg(durability: str, r: dict[str, Any], off_per_s: float) -> dict[str, Any]:
    t, c = r["throughput"], r["counts"]
    counters = r.get("engine_counters", {})
    return {
        "durability": durability,
        "offered": c["offered"],
        "accepted": c["accepted"],
        "outcomes": c["outcomes"],
        "offered_per_s": t["offered_per_s"],
        "accepted_per_s": t["accepted_per_s"],
        "completed_per_s": t["completed_per_s"],
        "vs_off": t["completed_per_s"] / off_per_s if off_per_s else None,
        "p50_ms": r["latency_ms"]["p50"],
        "p99_ms": r["latency_ms"]["p99"],
        "store_commits": int(counters.get("intake.commits", 0)),
        "exactly_once": r["exactly_once"]["ok"],
        "store": r.get("intake_store"),
    }


def combine(opts: RunOptions, reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One report from the three runs' reports (keyed by durability)."""
    first = next(iter(reports.values()))
    off = reports.get("off", {}).get("throughput", {}).get("completed_per_s", 0.0)
    legs = [_leg(d, r, off) for d, r in reports.items()]
    fsync = next((leg["vs_off"] for leg in legs if leg["durability"] == "fsync"), None)
    problems = [f"{d}: {p}" for d, r in reports.items() for p in r["exactly_once"]["problems"]]
    config = {
        k: v for k, v in first["engine_config"].items() if k not in ("durability", "intake_path")
    }
    return {
        "version": REPORT_VERSION,
        "mode": "durability_compare",
        "machine": first["machine"],
        "options": {k: v for k, v in dataclasses.asdict(opts).items() if k != "argv"},
        "engine_config": config,
        "durability_compare": {
            "order": list(reports),
            "legs": legs,
            "target_vs_off": TARGET_VS_OFF,
            "fsync_vs_off": fsync,
            "met": fsync is not None and fsync >= TARGET_VS_OFF,
        },
        "baseline": first.get("baseline"),
        "runs": {d: {k: v for k, v in r.items() if k != "series"} for d, r in reports.items()},
        "exactly_once": {
            "ok": not problems,
            "accepted": sum(r["exactly_once"]["accepted"] for r in reports.values()),
            "outcomes": sum(r["exactly_once"]["outcomes"] for r in reports.values()),
            "runs": len(reports),
            "problems": problems,
        },
    }

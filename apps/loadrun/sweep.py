"""``--accounts-sweep``: the same traffic with a different number of accounts, in one table.

The engine's cost is per Thespian message, and every hop fans out to one message per
account: this mode shows how throughput, latency, batch sizes and memory change with the
number of accounts, from one invocation. It measures raw Thespian once (one-item tells,
``baseline.py``: the figure each step is set against), then runs the load once per account
count, in the order given, each on a fresh engine and a fresh intake store
(:func:`~apps.loadrun.single.run_once`) for ``--duration`` (default
:data:`~apps.loadrun.options.SWEEP_DURATION_S`) or ``--messages``, with the same options
and seed otherwise. Each step checks exactly-once on its own; the sweep's verdict holds
only if every step's does. ``--json`` keeps each step's whole report (without its time
series).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from actors import ConfigError

from .options import RunOptions, engine_config
from .report import REPORT_VERSION
from .sampler import HOPS
from .single import run_once
from .store import RunStore
from .tables import table

__all__ = ["RSS_ROLES", "combine", "sweep", "sweep_lines"]

RSS_ROLES = ("router", "ai_pool", "account_max", "gateway")
"""RSS columns of the table, read at the end of each step (``gateway``: this process, the
one that embeds the engine's facade)."""

_HOP_HEADERS = ("submit", "outcomes", "to pool", "from pool", "to acct", "from acct")
_RSS_HEADERS = ("router MB", "pool MB", "acct max MB", "runner MB")


def sweep(opts: RunOptions) -> dict[str, Any]:
    """Run every step of ``opts.accounts_sweep`` and return the combined report.

    A step interrupted by Ctrl-C ends the sweep there (its report is kept).

    Raises:
        ConfigError: a bad ``--set``/``--config`` value, or more accounts than
            ``max_instances`` allows.
        EngineError: an engine could not start.
    """
    cfg = engine_config(opts)
    over = [n for n in opts.accounts_sweep if n > cfg.max_instances]
    if over:
        raise ConfigError(
            f"--accounts-sweep {','.join(map(str, over))}: more than max_instances "
            f"({cfg.max_instances}) accounts (raise it with --set max_instances=N)"
        )
    reports: list[dict[str, Any]] = []
    for n, accounts in enumerate(opts.accounts_sweep):
        # The raw measurement runs once, before the first step, as --baseline does.
        step = dataclasses.replace(opts, accounts=accounts, baseline=n == 0, accounts_sweep=())
        store, step_cfg = RunStore.fresh(cfg, f"-{accounts}acct")
        reports.append(run_once(step, step_cfg, store))
        if reports[-1]["phases"]["interrupted"]:
            break
    return combine(opts, reports)


def _end_kb(report: dict[str, Any], role: str) -> int | None:
    # 0: no such process (every actor lives in this one on simpleSystemBase): shown as "-".
    return report.get("rss_kb", {}).get(role, {}).get("end") or None


def _step(r: dict[str, Any], reference: float, raw: float | None) -> dict[str, Any]:
    c, lat = r["counts"], r["latency_ms"]
    completed = r["throughput"]["completed_per_s"]
    hops = r.get("hops") or {}
    return {
        "accounts": r["options"]["accounts"],
        "offered": c["offered"],
        "accepted": c["accepted"],
        "rejected": c["rejected"],
        "outcomes": c["outcomes"],
        "completed_per_s": completed,
        "p50_ms": lat["p50"],
        "p99_ms": lat["p99"],
        "vs_fewest": completed / reference if reference else None,
        "vs_raw_tell": completed / raw if raw else None,
        "items_per_batch": {h: (hops.get(h) or {}).get("items_per_batch") for h in HOPS},
        "rss_end_kb": {role: _end_kb(r, role) for role in RSS_ROLES},
        "slow_outcomes": r.get("tail", {}).get("slow", 0),
        "last_outcome_s": r["phases"]["last_outcome_s"],
        "interrupted": r["phases"]["interrupted"],
        "exactly_once": r["exactly_once"]["ok"],
        "store": r.get("intake_store"),
    }


def combine(opts: RunOptions, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from the steps' reports, in the order they ran."""
    first = reports[0]
    baseline = first.get("baseline")
    raw = baseline["tell_per_s"] if baseline else None
    fewest = min(reports, key=lambda r: r["options"]["accounts"])
    reference = fewest["throughput"]["completed_per_s"]
    steps = [_step(r, reference, raw) for r in reports]
    problems = [
        f"{r['options']['accounts']} accounts: {p}"
        for r in reports
        for p in r["exactly_once"]["problems"]
    ]
    return {
        "version": REPORT_VERSION,
        "mode": "accounts_sweep",
        "machine": first["machine"],
        "options": {k: v for k, v in dataclasses.asdict(opts).items() if k != "argv"},
        "engine_config": {k: v for k, v in first["engine_config"].items() if k != "intake_path"},
        "accounts_sweep": {
            "order": [s["accounts"] for s in steps],
            "reference_accounts": fewest["options"]["accounts"],
            "raw_tell_per_s": raw,
            "hops": list(HOPS),
            "steps": steps,
        },
        "baseline": baseline,
        "runs": [{k: v for k, v in r.items() if k != "series"} for r in reports],
        "exactly_once": {
            "ok": not problems and len(reports) == len(opts.accounts_sweep),
            "accepted": sum(r["exactly_once"]["accepted"] for r in reports),
            "outcomes": sum(r["exactly_once"]["outcomes"] for r in reports),
            "runs": len(reports),
            "problems": problems
            + (
                [f"the sweep stopped after {len(reports)} of {len(opts.accounts_sweep)} steps"]
                if len(reports) < len(opts.accounts_sweep)
                else []
            ),
        },
    }


def _ratio(v: float | None) -> str | None:
    return None if v is None else f"{v:.2f}x"


def sweep_lines(r: dict[str, Any]) -> list[str]:
    """The sweep's table: one row per step, then what its columns mean."""
    s = r["accounts_sweep"]
    b = r.get("baseline") or {}
    o = r["options"]
    amount = f"{o['messages']:,} messages" if o["messages"] else f"{o['duration']:g} s"
    out = [
        "",
        f"accounts sweep: one run per account count, each on a fresh engine, {amount} each "
        "(completed = while offering)",
    ]
    if b:
        out.append(
            f"  raw Thespian on {b['base']} (same run, before the first step): "
            f"{b['tell_per_s']:,.1f} one-item tells/s, {b['batch_items_per_s']:,.0f} items/s "
            f"in tells of {b['batch_size']}"
        )
    rows = []
    for step in s["steps"]:
        rows.append(
            [
                str(step["accounts"]),
                step["completed_per_s"],
                step["p50_ms"],
                step["p99_ms"],
                _ratio(step["vs_fewest"]),
                _ratio(step["vs_raw_tell"]),
                *(step["items_per_batch"].get(h) for h in s["hops"]),
                *(
                    None if step["rss_end_kb"][role] is None else step["rss_end_kb"][role] / 1024
                    for role in RSS_ROLES
                ),
                ("OK" if step["exactly_once"] else "FAILED")
                + (" (interrupted)" if step["interrupted"] else ""),
            ]
        )
    header = [
        "accounts",
        "msgs/s",
        "p50 ms",
        "p99 ms",
        f"vs {s['reference_accounts']}",
        "vs raw",
        *_HOP_HEADERS,
        *_RSS_HEADERS,
        "exactly-once",
    ]
    out += table(header, rows)
    out += [
        f"  vs {s['reference_accounts']}: completed msgs/s against the step with the fewest "
        "accounts; vs raw: against raw one-item tells/s",
        "  submit .. from acct: items per batch on each hop (facade -> router, router -> "
        "facade, router -> pool, pool -> router, router -> accounts, accounts -> router), "
        "counted by the router; - when it does not count them",
        "  RSS at the end of each step: router, ai_pool, the largest account, and this "
        "process (the facade's); - when the process is not separate",
    ]
    for step in s["steps"]:
        store = step.get("store")
        if store and not store.get("removed"):
            out.append(f"  store of {step['accounts']} accounts: {store['path']}: {store['note']}")
    return out

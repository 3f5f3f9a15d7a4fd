"""The report: one dict with everything (for ``--json``) and its human rendering."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from typing import Any

from actors import EngineConfig
from actors.router.requests import MAX_EVENTS
from protocols import ShutdownReport, StatsReply

from .driver import Phases
from .edges import account_stats, pool_stats
from .options import RunOptions
from .sampler import ROLES, Sampler, hop_sizes
from .tail import analyse
from .tracker import Tracker

__all__ = ["GROWTH_LIMIT_PCT", "REPORT_VERSION", "build", "write_json"]

REPORT_VERSION = 1
GROWTH_LIMIT_PCT = 5.0
"""Soak: an actor process growing more than this from the middle to the end is flagged."""

_SENT_MEMORY = 10_000  # AccountCore's default sent_memory; not a config key


def build(
    *,
    opts: RunOptions,
    cfg: EngineConfig,
    tracker: Tracker,
    sampler: Sampler,
    phases: Phases,
    shutdown: ShutdownReport | None,
    leftover_pids: list[int],
    baseline: dict[str, Any] | None,
    dead_letters: dict[str, Any] | None,
    edges: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Gather the whole run into one JSON-ready dict."""
    active_s = max(phases.last_outcome_s, phases.offer_s, 1e-9)
    offer_s = max(phases.offer_s, 1e-9)
    lat = tracker.latencies.percentiles((50, 90, 99, 100))
    throughput = {
        "offered_per_s": tracker.offered / offer_s,
        "accepted_per_s": tracker.accepted / offer_s,
        # Steady state: outcomes while submitting. A few rate-limited stragglers can stretch
        # the tail after the last submission by seconds; it is reported apart.
        "completed_per_s": phases.outcomes_while_offering / offer_s,
        "completed_overall_per_s": phases.outcomes_in_run / active_s,
        "replied_per_s": phases.replied_while_offering / offer_s,
    }
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "options": {k: v for k, v in dataclasses.asdict(opts).items() if k != "argv"},
        "engine_config": cfg.as_dict(),
        "phases": {
            "offer_s": phases.offer_s,
            "collect_s": phases.collect_s,
            "last_outcome_s": phases.last_outcome_s,
            "collect_timed_out": phases.collect_timed_out,
            "interrupted": phases.interrupted,
            "error": phases.error,
            "outcomes_in_run": phases.outcomes_in_run,
            "outcomes_while_offering": phases.outcomes_while_offering,
        },
        "counts": {
            "offered": tracker.offered,
            "accepted": tracker.accepted,
            "rejected": tracker.rejected_total,
            "outcomes": tracker.outcomes,
            "duplicates_offered": tracker.duplicates_offered,
            "duplicates_rejected": tracker.duplicates_rejected,
            "duplicates_accepted": tracker.duplicates_accepted,
        },
        "throughput": throughput,
        "latency_ms": {
            "count": tracker.latencies.count,
            "p50": lat[0] * 1000,
            "p90": lat[1] * 1000,
            "p99": lat[2] * 1000,
            "max": lat[3] * 1000,
        },
        "outcomes": dict(sorted(tracker.by_outcome.items())),
        "outcomes_by_status": dict(sorted(tracker.by_status.items())),
        "rejections": dict(sorted(tracker.rejected.items())),
        "restarts": _restarts(sampler, phases),
        "bounds": _bounds(cfg, tracker, sampler, phases),
        "rss_kb": _rss(sampler),
        "rss_growth": _growth(sampler),
        "shutdown": _shutdown(shutdown),
        "leftover_processes": leftover_pids,
        "dead_letters": dead_letters,
        "engine_counters": dict(sampler.last_stats.counters) if sampler.last_stats else {},
        "hops": hop_sizes(sampler.last_stats),
        "tail": analyse(opts=opts, cfg=cfg, tracker=tracker, sampler=sampler, phases=phases),
        "stats_failures": sampler.failures,
        "baseline": baseline,
        "ratios": _ratios(throughput, lat, baseline),
        "edges": _edges(edges or {"kind": opts.edges}, sampler),
        "series": sampler.rows,
        "exactly_once": _exactly_once(tracker, phases),
    }
    if opts.soak:
        report["soak"] = _soak(report)
    return report


def _edges(edges: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    """The fake servers' counts, and the HTTP calls the pool and the accounts held at once.

    Exact peaks: the fake servers' ``peak_in_flight`` and each account's
    ``transport.peak_http``; the pool's providers keep no peak, so theirs is the highest
    ``in_flight`` the samples saw (every ``--sample-every`` seconds).
    """
    if edges.get("kind") != "fake":
        return edges
    stats = sampler.last_stats
    peaks = sampler.peaks
    return {
        **edges,
        "pool": {
            **pool_stats(stats),
            "sampled_peak_in_flight": int(peaks.get("provider_in_flight", 0)),
        },
        "accounts": {
            **account_stats(stats),
            "sampled_peak_in_http_sum": int(peaks.get("http_in_flight", 0)),
            "sampled_peak_in_http_max": int(peaks.get("account_http_max", 0)),
        },
    }


def _soak(report: dict[str, Any]) -> dict[str, Any]:
    """The soak's two questions: flat memory, and every bound reached and held."""
    bounds = report["bounds"]
    return {
        "growth_limit_pct": GROWTH_LIMIT_PCT,
        "grew_too_much": [g["process"] for g in report["rss_growth"] if g["flag"]],
        "reached_cap": [b["name"] for b in bounds if b["reached"]],
        "not_reached": [b["name"] for b in bounds if not b["reached"]],
        "held_cap_second_half": [
            b["name"] for b in bounds if b.get("at_cap_second_half", 0) >= 0.9
        ],
    }


def _restarts(sampler: Sampler, phases: Phases) -> dict[str, Any]:
    stats = sampler.last_stats or StatsReply(in_flight=0)
    by_role: dict[str, int] = {}
    for a in stats.actors:
        by_role[a.role] = by_role.get(a.role, 0) + a.restarts
    c = stats.counters
    return {
        "total": int(c.get("restarts", 0)),
        "by_role": by_role,
        "router_relocations": int(c.get("router_relocations", 0)),
        "readmitted": int(c.get("readmitted", 0)),
        "failed_actors": [f"{a.role}:{a.name}" for a in stats.actors if a.state == "failed"],
        "kills": [dataclasses.asdict(k) for k in phases.kills],
    }


def _bounds(
    cfg: EngineConfig, tracker: Tracker, sampler: Sampler, phases: Phases
) -> list[dict[str, Any]]:
    """Each bounded structure: its peak against its cap, and how long it stayed there."""
    stats = sampler.last_stats or StatsReply(in_flight=0)
    c = stats.counters
    # A failed or restarting actor reports capacity 0: fall back to what the config implies.
    caps = {a.role: a.capacity for a in stats.actors if a.capacity}
    accounts = stats.of_role("account")
    acc = [a.counters for a in accounts]
    account_cap = max((a.capacity for a in accounts), default=0) or cfg.max_concurrent_processing
    peaks = sampler.peaks
    mcp = cfg.max_concurrent_processing
    ledger_cap = mcp * (1 + cfg.max_pending_per_customer) + cfg.max_uncollected_outcomes
    router_accepted = int(c.get("router.accepted", 0))
    rows = [
        (
            "gate: customers in processing",
            "gate_processing",
            max(peaks.get("gate_processing", 0), int(c.get("router.gate.peak_processing", 0))),
            mcp,
            "max_concurrent_processing",
            f"{tracker.rejected.get('capacity', 0):,} rejected capacity",
        ),
        (
            "gate: messages queued behind them",
            "gate_queued",
            peaks.get("gate_queued", 0),
            mcp * cfg.max_pending_per_customer,
            "max_concurrent_processing x max_pending_per_customer",
            "",
        ),
        (
            "gate: queue of one customer",
            None,
            cfg.max_pending_per_customer if tracker.rejected.get("customer_backlog") else None,
            cfg.max_pending_per_customer,
            "max_pending_per_customer",
            f"{tracker.rejected.get('customer_backlog', 0):,} rejected customer_backlog",
        ),
        (
            "router: accepted, no outcome yet",
            "router_depth",
            peaks.get("router_depth", 0),
            caps.get("router", mcp * (1 + cfg.max_pending_per_customer)),
            "router capacity",
            "",
        ),
        (
            "router: uncollected outcomes",
            "uncollected",
            peaks.get("uncollected", 0),
            cfg.max_uncollected_outcomes,
            "max_uncollected_outcomes",
            "",
        ),
        (
            "router: dedupe ids",
            None,
            min(router_accepted, cfg.dedupe_capacity),
            cfg.dedupe_capacity,
            "dedupe_capacity",
            f"{int(c.get('router.dedupe.evictions', 0)):,} evicted (current router generation)",
        ),
        (
            "facade ledger: unresolved",
            "in_flight",
            peaks.get("in_flight", 0),
            ledger_cap,
            "ledger capacity",
            "",
        ),
        (
            "ai_pool: calls outstanding",
            "pool_depth",
            peaks.get("pool_depth", 0),
            caps.get("ai_pool", mcp),
            "pool capacity",
            "",
        ),
        (
            "account: replies pending (max)",
            "account_depth_max",
            peaks.get("account_depth_max", 0),
            account_cap,
            "account capacity",
            "",
        ),
        (
            "account: rate-log recipients (max)",
            "recipients_max",
            max([peaks.get("recipients_max", 0)] + [int(x.get("recipients_peak", 0)) for x in acc]),
            cfg.max_queue_recipients,
            "max_queue_recipients",
            f"{sum(int(x.get('evictions', 0)) for x in acc):,} evicted live, "
            f"{sum(int(x.get('rate_waits', 0)) for x in acc):,} rate waits",
        ),
        (
            "account: rate-log entries/recipient",
            None,
            cfg.max_queue_size_per_recipient
            if any(int(x.get("dropped_entries", 0)) for x in acc)
            else None,
            cfg.max_queue_size_per_recipient,
            "max_queue_size_per_recipient",
            f"{sum(int(x.get('dropped_entries', 0)) for x in acc):,} entries dropped",
        ),
        (
            "account: sent-id memory (max)",
            "sent_memory_max",
            peaks.get("sent_memory_max", 0),
            _SENT_MEMORY,
            "AccountCore sent_memory",
            f"{sum(int(x.get('sent_memory_evictions', 0)) for x in acc):,} evicted",
        ),
        (
            "router: account events kept",
            None,
            None,
            MAX_EVENTS,
            "router MAX_EVENTS",
            f"{int(c.get('router.events_dropped', 0)):,} dropped",
        ),
    ]
    second_half = [r for r in sampler.rows if phases.offer_s / 2 <= r["t"] <= phases.offer_s]
    out = []
    for name, gauge, peak, cap, key, note in rows:
        row: dict[str, Any] = {"name": name, "peak": peak, "cap": cap, "cap_key": key, "note": note}
        row["reached"] = peak is not None and peak >= cap
        if gauge is not None and second_half:
            at_cap = sum(1 for r in second_half if r.get(gauge, 0) >= cap)
            row["at_cap_second_half"] = at_cap / len(second_half)
        out.append(row)
    return out


def _rss(sampler: Sampler) -> dict[str, dict[str, int]]:
    rows = [r for r in sampler.rows if "rss_kb" in r]
    if not rows:
        return {}
    middle = next((r for r in rows if r.get("middle")), None)
    out = {}
    for role in ROLES:
        out[role] = {
            "start": rows[0]["rss_kb"].get(role, 0),
            "peak": int(sampler.peaks.get(f"rss.{role}", 0)),
            "end": rows[-1]["rss_kb"].get(role, 0),
        }
        if middle is not None:
            out[role]["middle"] = middle["rss_kb"].get(role, 0)
    return out


def _growth(sampler: Sampler) -> list[dict[str, Any]]:
    mid, end = sampler.snapshots.get("middle"), sampler.snapshots.get("end")
    if not mid or not end:
        return []
    out = []
    for proc, (pid, kb) in sorted(mid.items()):
        if proc not in end:
            continue
        end_pid, end_kb = end[proc]
        row: dict[str, Any] = {"process": proc, "pid": end_pid, "middle_kb": kb, "end_kb": end_kb}
        if end_pid != pid:
            row.update(growth_pct=None, flag=False, note="restarted in between")
        else:
            pct = 100.0 * (end_kb - kb) / kb if kb else 0.0
            row.update(growth_pct=pct, flag=pct > GROWTH_LIMIT_PCT, note="")
        out.append(row)
    return out


def _shutdown(report: ShutdownReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {
        "stages": [
            {"name": s.name, "seconds": s.seconds, "drained": s.drained, "abandoned": s.abandoned}
            for s in report.stages
        ],
        "total_s": report.total_s,
        "abandoned": len(report.abandoned),
    }


def _ratios(
    throughput: dict[str, float], lat: list[float], baseline: dict[str, Any] | None
) -> dict[str, float]:
    if not baseline:
        return {}
    return {
        "completed_vs_raw_tell": throughput["completed_per_s"] / baseline["tell_per_s"],
        "completed_vs_raw_batched": throughput["completed_per_s"] / baseline["batch_items_per_s"],
        "p50_latency_vs_raw_rtt": lat[0] * 1000 / baseline["rtt_median_ms"],
    }


def write_json(report: dict[str, Any], path: str) -> None:
    """Write the report as JSON (``--json PATH``)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=1, default=str)
        fh.write("\n")


def _exactly_once(tracker: Tracker, phases: Phases) -> dict[str, Any]:
    verdict = tracker.exactly_once()
    if phases.error is not None:
        # The books may balance after the shutdown, but the engine broke its API contract.
        verdict["ok"] = False
        verdict["problems"].insert(0, f"the engine raised {phases.error}")
    return verdict

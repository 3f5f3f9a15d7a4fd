"""Periodic samples of the engine: gauges of every bounded structure and RSS by role.

One sample = one ``engine.stats()`` plus /proc reads. Per-process RSS is kept only at a
few moments (start, middle, end, peak) so a long soak does not grow the runner itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actors import EngineError
from actors.router.links import HOPS  # the router names its hops: one list, there
from protocols import StatsReply

from . import procs

if TYPE_CHECKING:
    from .hosted import EngineLike

__all__ = ["HOPS", "ROLES", "Sampler", "hop_sizes"]

ROLES = ("gateway", "admin", "logger", "supervisor", "router", "ai_pool", "accounts", "account_max")
"""RSS columns: the process of the Engine facade (this one, or the engine host with
``--crash-every``), Thespian's admin and logger, the actors."""


_GAUGES = (
    "in_flight",
    "gate_processing",
    "gate_queued",
    "router_depth",
    "uncollected",
    "pool_depth",
    "account_depth_max",
    "recipients_max",
    "sent_memory_max",
    "provider_in_flight",
    "http_in_flight",
    "account_http_max",
)


class Sampler:
    """Samples an engine; keeps a compact time series and per-process RSS snapshots."""

    def __init__(self, engine: EngineLike, gateway_pid: Callable[[], int] = os.getpid) -> None:
        self.engine = engine
        self.gateway_pid = gateway_pid
        self.multiproc = engine.base.startswith("multiproc")
        self.rows: list[dict[str, Any]] = []
        self.last_stats: StatsReply | None = None
        self.first_stats: StatsReply | None = None
        self.failures = 0
        self.peaks: dict[str, float] = {}
        self.snapshots: dict[str, dict[str, tuple[int, int]]] = {}  # moment -> proc -> (pid, kB)
        self.proc_peak: dict[str, tuple[int, int]] = {}
        self._logger_pid: int | None = None

    def sample(self, t: float, extra: dict[str, Any]) -> dict[str, Any] | None:
        """Take one sample at run time ``t``; ``extra`` (the runner's counts) joins the row."""
        try:
            stats = self.engine.stats()
        except EngineError:
            self.failures += 1  # e.g. the supervisor was busy restarting the router
            return None
        if self.first_stats is None:
            self.first_stats = stats
        self.last_stats = stats
        row: dict[str, Any] = {"t": round(t, 3), **extra, **self._gauges(stats)}
        rss, per_proc = self._rss(stats)
        row["rss_kb"] = rss
        for key, value in row.items():
            if key in _GAUGES:
                self.peaks[key] = max(self.peaks.get(key, 0), value)
        for name, value in rss.items():
            self.peaks[f"rss.{name}"] = max(self.peaks.get(f"rss.{name}", 0), value)
        for proc, (pid, kb) in per_proc.items():
            if kb > self.proc_peak.get(proc, (0, 0))[1]:
                self.proc_peak[proc] = (pid, kb)
        self.snapshots.setdefault("start", per_proc)
        self.snapshots["end"] = per_proc
        self.rows.append(row)
        return row

    def mark(self, moment: str) -> None:
        """Remember the latest per-process RSS as ``moment`` (e.g. ``"middle"``)."""
        if "end" in self.snapshots:
            self.snapshots[moment] = self.snapshots["end"]
            self.rows[-1][moment] = True

    # -- gauges -------------------------------------------------------------------------------

    @staticmethod
    def _gauges(stats: StatsReply) -> dict[str, int]:
        c = stats.counters
        g = {
            "in_flight": stats.in_flight,
            "gate_processing": int(c.get("router.gate.processing", 0)),
            "gate_queued": int(c.get("router.gate.queued", 0)),
            "uncollected": int(c.get("router.outcomes_ready", 0)),
            "restarts": int(c.get("restarts", 0)),
            "router_depth": 0,
            "pool_depth": 0,
            "account_depth_max": 0,
            "recipients_max": 0,
            "recipients_sum": 0,
            "sent_memory_max": 0,
            # HTTP edges only (--edges fake): calls held at once, as sampled.
            "provider_in_flight": 0,  # the pool's providers' in_flight
            "http_in_flight": 0,  # transport.in_http, summed over the accounts
            "account_http_max": 0,  # transport.in_http of the busiest account
        }
        for a in stats.actors:
            if a.role == "router":
                g["router_depth"] = a.depth
            elif a.role == "ai_pool":
                g["pool_depth"] = a.depth
                ps = a.provider_stats
                g["provider_in_flight"] = sum(int(p.get("in_flight", 0)) for p in ps.values())
            elif a.role == "account":
                ac = a.counters
                g["account_depth_max"] = max(g["account_depth_max"], a.depth)
                g["recipients_max"] = max(g["recipients_max"], int(ac.get("recipients", 0)))
                g["recipients_sum"] += int(ac.get("recipients", 0))
                g["sent_memory_max"] = max(g["sent_memory_max"], int(ac.get("sent_memory", 0)))
                in_http = int(ac.get("transport.in_http", 0))
                g["http_in_flight"] += in_http
                g["account_http_max"] = max(g["account_http_max"], in_http)
        return g

    # -- memory -------------------------------------------------------------------------------

    def _rss(self, stats: StatsReply) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
        per_proc: dict[str, tuple[int, int]] = {}
        pid = self.gateway_pid()
        gateway = procs.rss_kb(pid) or 0
        per_proc["gateway"] = (pid, gateway)
        rss = dict.fromkeys(ROLES, 0)
        rss["gateway"] = gateway
        if not self.multiproc:
            return rss, per_proc  # every actor lives in this process
        admin = stats.admin_pid
        actor_pids = {a.pid for a in stats.actors if a.pid}
        if admin:
            self._find_logger(admin, actor_pids)
            kb = procs.rss_kb(admin)
            if kb is not None:
                rss["admin"] = kb
                per_proc["admin"] = (admin, kb)
        if self._logger_pid is not None:
            kb = procs.rss_kb(self._logger_pid)
            if kb is not None:
                rss["logger"] = kb
                per_proc["logger"] = (self._logger_pid, kb)
        for a in stats.actors:
            if not a.pid:
                continue
            kb = procs.rss_kb(a.pid)
            if kb is None:
                continue
            if a.role == "account":
                rss["accounts"] += kb
                rss["account_max"] = max(rss["account_max"], kb)
                per_proc[f"account:{a.name}"] = (a.pid, kb)
            elif a.role in rss:
                rss[a.role] = kb
                per_proc[a.role] = (a.pid, kb)
        return rss, per_proc

    def _find_logger(self, admin: int, actor_pids: set[int]) -> None:
        # Thespian's logger is the admin's child that is no actor (the supervisor is the
        # other). Looked up again only when the one found is gone.
        if self._logger_pid is not None and procs.parent(self._logger_pid) == admin:
            return
        others = procs.children(admin) - actor_pids
        self._logger_pid = others.pop() if len(others) == 1 else None


def hop_sizes(stats: StatsReply | None) -> dict[str, dict[str, float] | None]:
    """Batches, items and items per batch of each hop, from the router's stats entry.

    Counted by the router since it started (a restarted router starts again); a hop the
    router does not count (yet) is None, so a report of an older engine still renders.
    """
    router = stats.of_role("router") if stats is not None else ()
    counters: dict[str, int] = dict(router[0].counters) if router else {}
    out: dict[str, dict[str, float] | None] = {}
    for hop in HOPS:
        batches = counters.get(f"hop.{hop}.batches")
        items = counters.get(f"hop.{hop}.items")
        if batches is None or items is None:
            out[hop] = None
            continue
        out[hop] = {
            "batches": batches,
            "items": items,
            "items_per_batch": items / batches if batches else 0.0,
        }
    return out

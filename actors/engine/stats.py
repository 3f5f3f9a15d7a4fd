"""Build ``Engine.stats()``: the supervisor's per-actor reports and the facade's own counters.

The facade holds the ledger, the router link, the listeners and the journal; each keeps
its own counters, and :func:`build_stats` gathers them with the actors' reports into one
typed :class:`protocols.StatsReply`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from actors.runtime.convention import LEADER
from actors.runtime.wiring import ActorReport, SupervisorStats
from protocols import ActorStats, StatsReply

if TYPE_CHECKING:
    from actors.engine.journal import DeadLetterJournal
    from actors.engine.ledger import Ledger
    from actors.engine.listeners import Listeners
    from actors.engine.router_link import RouterLink
    from actors.runtime.system import SystemHandle

__all__ = ["build_stats", "merge_stats"]


def build_stats(
    reply: SupervisorStats,
    own: Mapping[str, int],
    *,
    ledger: Ledger,
    listeners: Listeners,
    link: RouterLink | None,
    system: SystemHandle | None,
    journal: DeadLetterJournal | None,
    base: str,
    now: float,
    intake: Mapping[str, int] | None = None,
) -> StatsReply:
    """The engine's stats: ``reply`` merged with the facade's counters and ledger.

    Args:
        reply: the supervisor's answer to a stats query.
        own: the facade's own counters (rejections it decided, journaled messages).
        ledger, listeners, link, system, journal: the facade's parts, read for their counters.
        base: the Thespian base the engine runs on.
        now: the wall-clock time, for the age of the oldest message in flight.
        intake: the intake store's counters, already prefixed ``intake.``.

    Returns:
        The ``StatsReply``; the pids it names on this host are also remembered by
        ``system`` (to be reaped at stop). An account on a convention member reports the
        pid it has there: never remembered, since it may name another process here.
    """
    counters: Counter[str] = Counter(own)
    if link is not None:
        counters["router_relocations"] = link.relocations
        counters["readmitted"] = link.readmitted
        counters["orphaned_admissions"] = link.orphaned_admissions
        counters["stale_answers"] = system.stale if system else 0
    counters.update(ledger.counters())
    counters["late_outcomes"] = ledger.late_outcomes
    counters.update({f"listeners.{k}": int(v) for k, v in listeners.stats().items()})
    if journal is not None:
        counters["journal.overflow"] = journal.overflow
    counters.update(intake or {})
    # Where the accounts run: ``placement.<host>`` counts them per host (``leader`` or a
    # member id); the supervisor's table names the host of each.
    counters.update(Counter(f"placement.{host}" for host in reply.placement.values()))
    merged_counters, actors = merge_stats(reply, counters)
    if system is not None:
        remote = {name for name, host in reply.placement.items() if host != LEADER}
        system.remember_pids(
            {a.pid for a in actors if a.pid and not (a.role == "account" and a.name in remote)}
        )
    return StatsReply(
        in_flight=ledger.in_flight,
        oldest_in_flight_s=ledger.oldest_age(now),
        counters=merged_counters,
        actors=actors,
        router_generation=link.generation if link else 0,
        admin_pid=system.admin_pid if system else None,
        base=base,
    )


def merge_stats(
    reply: SupervisorStats, counters: Mapping[str, int]
) -> tuple[dict[str, int], tuple[ActorStats, ...]]:
    """The counters (``counters`` plus the actors', prefixed by role) and one entry per actor.

    ``depth`` is what the engine holds at that actor against its declared ``capacity``: for
    the pool and the accounts, the items the router has outstanding there (the router's
    credit window); for the router, its accepted messages without an outcome. Children the
    supervisor knows but which did not answer (down, restarting, failed) appear with their
    state, no pid and capacity 0. Every account's ``host`` is the convention member it runs
    on, or ``leader``.
    """
    merged: Counter[str] = Counter(counters)
    merged.update({f"supervisor.{k}": v for k, v in reply.counters.items()})
    restarts = {(role, name): r for role, name, _, _, r in reply.children}
    states = {(role, name): state for role, name, _, state, _ in reply.children}
    by_role: dict[str, ActorReport] = {r.role: r for r in reply.reports}
    router = by_role.get("router")
    pool_depth = int(router.extra.get("pool_depth", 0)) if router else 0
    account_depth: dict[str, int] = router.extra.get("account_depth", {}) if router else {}

    def depth_of(role: str, name: str, own: int) -> int:
        if role == "ai_pool":
            return pool_depth
        if role == "account":
            return int(account_depth.get(name, 0))
        return own

    actors: list[ActorStats] = []
    for r in reply.reports:
        if r.role != "account":
            merged.update({f"{r.role}.{k}": v for k, v in r.counters.items()})
        actors.append(
            ActorStats(
                role=r.role,
                name=r.name,
                pid=r.pid,
                depth=depth_of(r.role, r.name, r.depth),
                capacity=r.capacity,
                restarts=restarts.get((r.role, r.name), 0),
                generation=r.generation,
                state=states.get((r.role, r.name), "up"),
                counters={k: int(v) for k, v in r.counters.items()},
                host=_host(r.role, r.name, reply.placement),
                providers=tuple(r.extra.get("providers", ())),
                provider_stats=_provider_stats(r.extra.get("provider_stats", {})),
                transport_failed=str(r.extra.get("transport_failed", "")),
            )
        )
    reported = {(a.role, a.name) for a in actors}
    for role, name, generation, state, restarts_n in reply.children:
        if (role, name) not in reported:
            actors.append(
                ActorStats(
                    role=role,
                    name=name,
                    pid=None,
                    depth=depth_of(role, name, 0),
                    capacity=0,
                    restarts=restarts_n,
                    generation=generation,
                    state=state,
                    host=_host(role, name, reply.placement),
                )
            )
    merged["restarts"] = sum(restarts.values())
    merged["refused_frames"] = sum(r.counters.get("refused_frames", 0) for r in reply.reports)
    return {k: int(v) for k, v in merged.items()}, tuple(actors)


def _host(role: str, name: str, placement: Mapping[str, str]) -> str:
    # Where an account runs (``leader`` or a member id); empty for the other roles.
    return placement.get(name, "") if role == "account" else ""


def _provider_stats(raw: Mapping[str, Any]) -> dict[str, dict[str, int | float]]:
    # A provider's stats() is its own business: keep the finite numbers, drop the rest,
    # so one odd value cannot make stats() fail validation.
    return {
        str(name): {
            str(k): v
            for k, v in dict(values).items()
            if type(v) is int or (type(v) is float and math.isfinite(v))
        }
        for name, values in raw.items()
    }

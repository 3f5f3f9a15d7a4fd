"""Turn the supervisor's per-actor reports into the ``stats()`` dict of the engine."""

from __future__ import annotations

from collections import Counter
from typing import Any

from actors.runtime.wiring import ActorReport, SupervisorStats

__all__ = ["merge_stats"]


def merge_stats(reply: SupervisorStats, counters: Counter[str]) -> dict[str, Any]:
    """One entry per actor (role, name, pid, depth, capacity, restarts, ...) and counters.

    ``depth`` is what the engine holds at that actor against its declared ``capacity``: for
    the pool and the accounts, the items the router has outstanding there (the router's
    credit window); for the router, its accepted messages without an outcome. Children the
    supervisor knows but which did not answer (down, restarting, failed) appear with their
    state and no pid.
    """
    counters = Counter(counters)
    counters.update({f"supervisor.{k}": v for k, v in reply.counters.items()})
    restarts = {(role, name): r for role, name, _, _, r in reply.children}
    states = {(role, name): state for role, name, _, state, _ in reply.children}
    by_role: dict[str, ActorReport] = {r.role: r for r in reply.reports}
    router = by_role.get("router")
    pool_depth = router.extra.get("pool_depth", 0) if router else 0
    account_depth: dict[str, int] = router.extra.get("account_depth", {}) if router else {}
    actors: list[dict[str, Any]] = []
    for r in reply.reports:
        depth = r.depth
        if r.role == "ai_pool":
            depth = pool_depth
        elif r.role == "account":
            depth = account_depth.get(r.name, 0)
        if r.role != "account":
            counters.update({f"{r.role}.{k}": v for k, v in r.counters.items()})
        actors.append(
            {
                "role": r.role,
                "name": r.name,
                "pid": r.pid,
                "depth": depth,
                "capacity": r.capacity,
                "restarts": restarts.get((r.role, r.name), 0),
                "generation": r.generation,
                "state": states.get((r.role, r.name), "up"),
                "counters": r.counters,
                "extra": r.extra,
            }
        )
    reported = {(a["role"], a["name"]) for a in actors}
    for role, name, generation, state, restarts_n in reply.children:
        if (role, name) not in reported:
            actors.append(
                {
                    "role": role,
                    "name": name,
                    "pid": None,
                    "depth": 0,
                    "capacity": 0,
                    "restarts": restarts_n,
                    "generation": generation,
                    "state": state,
                    "counters": {},
                    "extra": {},
                }
            )
    counters["restarts"] = sum(restarts.values())
    counters["refused_frames"] = sum(r.counters.get("refused_frames", 0) for r in reply.reports)
    return {"counters": dict(counters), "actors": actors}

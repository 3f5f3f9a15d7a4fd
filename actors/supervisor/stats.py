"""The supervisor's stats fan-out: ask every live child, answer when all did or after 1 s."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from actors.runtime.wiring import ActorReport, Address, StatsQuery, SupervisorStats

if TYPE_CHECKING:
    from actors.supervisor.actor import SupervisorActor

__all__ = ["STATS_TIMEOUT_S", "StatsFanout"]

STATS_TIMEOUT_S = 1.0
"""A child that has not answered by then is reported from the supervisor's own table."""


class StatsFanout:
    """Collects one ``ActorReport`` per live child for the facade's ``stats()``."""

    def __init__(self, actor: SupervisorActor) -> None:
        self.actor = actor
        self.pending: dict[int, tuple[Address, list[ActorReport], int]] = {}

    def query(self, msg: StatsQuery, sender: Address) -> None:
        actor = self.actor
        token = actor._next_token()
        up = [c for c in actor._core.children.values() if c.state == "up"]
        self.pending[token] = (sender, [], len(up))
        for child in up:
            actor.send(actor.addresses[(child.role, child.name)], StatsQuery(token=token))
        if not up:
            self.finish(token)
        else:
            actor.wakeupAfter_at(time.time() + STATS_TIMEOUT_S, ("stats", token))

    def report(self, msg: ActorReport, sender: Address) -> None:
        pending = self.pending.get(msg.token)
        if pending is None:
            return
        pending[1].append(msg)
        if len(pending[1]) >= pending[2]:
            self.finish(msg.token)

    def finish(self, token: int) -> None:
        pending = self.pending.pop(token, None)
        if pending is None:
            return
        actor = self.actor
        asker, reports, _ = pending
        core = actor._core
        own = ActorReport(
            token=token,
            role=actor.role,
            name=actor.role,
            generation=1,
            pid=os.getpid() if actor.pid else None,
            depth=len(actor.waiting),
            capacity=core.config.max_instances + 2,
            counters={**core.counters(), **actor.process_counters()},
            extra={"admin_pid": os.getppid() if actor.pid else None},
        )
        actor.send(
            asker,
            SupervisorStats(
                reports=(own, *reports), children=core.child_table(), counters=core.counters()
            ),
        )

"""The supervisor's stats fan-out: ask every live child, answer when all did or after 1 s."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from actors.runtime.wiring import ActorReport, Address, StatsQuery, SupervisorStats
from actors.supervisor.core import SupervisorCore
from actors.supervisor.lifecycle import ChildState
from actors.supervisor.placement import Placement

__all__ = ["STATS_TIMEOUT_S", "StatsFanout"]

STATS_TIMEOUT_S = 1.0
"""A child that has not answered by then is reported from the supervisor's own table."""


class StatsFanout:
    """Collects one ``ActorReport`` per live child for the facade's ``stats()``.

    Args:
        core: the supervisor's children and counters.
        addresses: the children's addresses by ``(role, name)`` (read, never changed).
        send: sends a message to an address.
        wake_at: arms a timer that calls ``finish(token)`` at a time (the actor routes
            the ``("stats", token)`` payload back).
        next_token: a fresh token for one query.
        pid: the supervisor's process id (None on simpleSystemBase).
        depth: how many commands the supervisor waits to answer.
        process_counters: the counters of the supervisor's process.
        placement: where each account runs, and the convention's members (counted as
            ``members_up``, ``members_lost``); None: every account on the leader.
        fencing: the lease counters (``Relocation.counters``), when there are leases.
        clock: the time now (``time.time``; tests pass a fake clock).
    """

    def __init__(
        self,
        core: SupervisorCore,
        *,
        addresses: Mapping[tuple[str, str], Address],
        send: Callable[[Address, Any], None],
        wake_at: Callable[[float, Any], None],
        next_token: Callable[[], int],
        pid: int | None,
        depth: Callable[[], int],
        process_counters: Callable[[], dict[str, int]],
        placement: Placement | None = None,
        fencing: Callable[[], dict[str, int]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.core = core
        self._addresses = addresses
        self._send = send
        self._wake_at = wake_at
        self._next_token = next_token
        self._pid = pid
        self._depth = depth
        self._process_counters = process_counters
        self._placement = placement
        self._fencing = fencing
        self._clock = clock
        self.pending: dict[int, tuple[Address, list[ActorReport], int]] = {}

    def query(self, msg: StatsQuery, sender: Address) -> None:
        token = self._next_token()
        up = [c for c in self.core.children.values() if c.state is ChildState.UP]
        self.pending[token] = (sender, [], len(up))
        for child in up:
            self._send(self._addresses[(child.role, child.name)], StatsQuery(token=token))
        if not up:
            self.finish(token)
        else:
            self._wake_at(self._clock() + STATS_TIMEOUT_S, ("stats", token))

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
        asker, reports, _ = pending
        core = self.core
        own = ActorReport(
            token=token,
            role="supervisor",
            name="supervisor",
            generation=1,
            pid=self._pid,
            depth=self._depth(),
            capacity=core.config.max_instances + 2,
            counters={
                **core.counters(),
                **self._process_counters(),
                **(self._placement.counters() if self._placement else {}),
                **(self._fencing() if self._fencing else {}),
            },
            extra={"admin_pid": os.getppid() if self._pid else None},
        )
        self._send(
            asker,
            SupervisorStats(
                reports=(own, *reports),
                children=core.child_table(),
                counters=core.counters(),
                placement=self._placement.placements() if self._placement else {},
            ),
        )

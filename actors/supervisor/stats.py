"""The supervisor's stats fan-out: ask every live child, answer when all did or after 1 s.

At most one question is outstanding per child: a child that has not answered the last
one (a frozen member's account, a hung process) is not asked again until it answers or
:data:`STATS_REASK_S` passed, and is reported from the supervisor's own table meanwhile.
Each question to a peer that does not read is a transmit Thespian keeps pending for up to
its transmit timeout (:mod:`actors.runtime.transmits`); a ``stats()`` polled every 100 ms
would otherwise pile up ten a second per silent child in the supervisor.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from actors.runtime.wiring import ActorReport, Address, StatsQuery, SupervisorStats
from actors.supervisor.core import SupervisorCore
from actors.supervisor.lifecycle import ChildState
from actors.supervisor.placement import Placement

__all__ = ["STATS_REASK_S", "STATS_TIMEOUT_S", "StatsFanout"]

STATS_TIMEOUT_S = 1.0
"""A child that has not answered by then is reported from the supervisor's own table."""
STATS_REASK_S = 10.0
"""A child whose last question is unanswered is asked again only this long after it."""


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
        monotonic: the clock of the re-ask bound (``time.monotonic``: a step of the wall
            clock must not keep a child unasked).
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
        monotonic: Callable[[], float] = time.monotonic,
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
        self._monotonic = monotonic
        self.pending: dict[int, tuple[Address, list[ActorReport], int]] = {}
        # (role, name) -> (generation, when) of a question not answered yet
        self._unanswered: dict[tuple[str, str], tuple[int, float]] = {}
        self.not_asked = 0  # questions not sent: the child's last one was unanswered

    def query(self, msg: StatsQuery, sender: Address) -> None:
        token = self._next_token()
        now, asked_at = self._clock(), self._monotonic()
        up = {(c.role, c.name): c for c in self.core.children.values() if c.state is ChildState.UP}
        for key in [k for k, (gen, _) in self._unanswered.items() if _key_gone(up, k, gen)]:
            del self._unanswered[key]
        asked = 0
        for key, child in up.items():
            last = self._unanswered.get(key)
            if last is not None and asked_at - last[1] < STATS_REASK_S:
                self.not_asked += 1
                continue
            self._unanswered[key] = (child.generation, asked_at)
            self._send(self._addresses[key], StatsQuery(token=token))
            asked += 1
        self.pending[token] = (sender, [], asked)
        if not asked:
            self.finish(token)
        else:
            self._wake_at(now + STATS_TIMEOUT_S, ("stats", token))

    def report(self, msg: ActorReport, sender: Address) -> None:
        last = self._unanswered.get((msg.role, msg.name))
        if last is not None and last[0] == msg.generation:  # late or not, it reads again
            del self._unanswered[(msg.role, msg.name)]
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
                "stats_unanswered": len(self._unanswered),
                "stats_not_asked": self.not_asked,
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


def _key_gone(up: Mapping[tuple[str, str], Any], key: tuple[str, str], generation: int) -> bool:
    """True when the child asked as ``key`` in ``generation`` is no longer up as such."""
    child = up.get(key)
    return child is None or child.generation != generation

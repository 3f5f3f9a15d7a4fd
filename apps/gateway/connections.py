"""The gateway's open client connections, by phase, with deadlines: a pure core.

A connection is in one phase at a time:

- ``head``: waiting for a request's line and headers. A new connection starts here (a
  client that connects and sends nothing is stalled too); a kept-alive one enters it
  with the first byte of its next request.
- ``body``: the headers are in; the handler is waiting for the body.
- ``busy``: the request is read; the gateway is working on it or answering. No deadline:
  the client is not the one keeping it.
- ``idle``: answered and kept alive, waiting for the next request.

``head``, ``body`` and ``idle`` each have a fixed limit, so within one phase the
deadlines are in the order the connections entered it: each phase is an insertion-ordered
dict, the earliest deadline is its first item, and every operation is O(1) (expiry is
O(1) per connection it closes). At the cap, a new connection is admitted by shedding the
connection that has waited longest on its client (the oldest entry of the three timed
phases): a client that sends its request promptly is not kept out by stalled ones. Only
when every open connection is ``busy`` is the new one refused.

Pure: the caller passes ``now`` and closes what it is told to (:mod:`apps.gateway.guard`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

__all__ = ["FD_HEADROOM", "Admission", "ConnectionTable", "Phase", "fd_budget"]

K = TypeVar("K", bound=Hashable)
Phase = Literal["head", "body", "busy", "idle"]
_TIMED: tuple[Phase, ...] = ("head", "body", "idle")

FD_HEADROOM = 256
"""File descriptors kept free of client connections: the engine's sockets, logs, journal."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission(Generic[K]):
    """What :meth:`ConnectionTable.admit` decided.

    Attributes:
        admitted: the new connection is in the table (in phase ``head``).
        shed: the connection taken out of the table to make room; the caller closes it.
    """

    admitted: bool
    shed: K | None = None


class ConnectionTable(Generic[K]):
    """Open connections by phase, each timed phase with its deadline.

    Args:
        max_connections: the most connections open at once.
        head_s: the limit of phase ``head`` (seconds).
        body_s: the limit of phase ``body``.
        idle_s: the limit of phase ``idle`` (the keep-alive timeout).

    Raises:
        ValueError: a limit is not a positive number, or the cap is below 1.
    """

    def __init__(
        self, *, max_connections: int, head_s: float, body_s: float, idle_s: float
    ) -> None:
        self._limit: dict[Phase, float] = {"head": head_s, "body": body_s, "idle": idle_s}
        for phase, limit in self._limit.items():
            if not (limit > 0 and math.isfinite(limit)):
                raise ValueError(f"the {phase} limit must be a positive number, not {limit!r}")
        self.max_connections = max_connections
        self._phase: dict[K, Phase] = {}
        # key -> deadline, in the order of entry (which is the order of the deadlines).
        self._timed: dict[Phase, dict[K, float]] = {p: {} for p in _TIMED}

    @property
    def max_connections(self) -> int:
        """The most connections open at once (lowering it sheds none already open)."""
        return self._max

    @max_connections.setter
    def max_connections(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"max_connections must be at least 1, not {value!r}")
        self._max = value

    def __len__(self) -> int:
        return len(self._phase)

    def __contains__(self, key: object) -> bool:
        return key in self._phase

    def phase(self, key: K) -> Phase | None:
        """The phase of ``key``, or None when it is not in the table."""
        return self._phase.get(key)

    def count(self, phase: Phase) -> int:
        """How many connections are in ``phase``."""
        if phase in self._timed:
            return len(self._timed[phase])
        return sum(1 for p in self._phase.values() if p == phase)

    def admit(self, key: K, now: float) -> Admission[K]:
        """Take a new connection in, in phase ``head``; at the cap, shed one to make room.

        Returns:
            refused (nothing changed) when the table is full of ``busy`` connections;
            else admitted, with the connection shed to make room if there was one.
        """
        shed = None
        if len(self._phase) >= self._max:
            shed = self._longest_waiting()
            if shed is None:
                return Admission(admitted=False)
            self.forget(shed)
        self._phase[key] = "head"
        self._timed["head"][key] = now + self._limit["head"]
        return Admission(admitted=True, shed=shed)

    def enter(self, key: K, phase: Phase, now: float) -> float | None:
        """Move ``key`` to ``phase`` as of ``now`` (a key not in the table is ignored).

        Returns:
            the new deadline, or None (phase ``busy``, or an unknown key).
        """
        old = self._phase.get(key)
        if old is None:
            return None
        if old != "busy":
            del self._timed[old][key]
        self._phase[key] = phase
        if phase == "busy":
            return None
        deadline = now + self._limit[phase]
        self._timed[phase][key] = deadline
        return deadline

    def forget(self, key: K) -> Phase | None:
        """Take ``key`` out (its connection closed); returns the phase it was in."""
        phase = self._phase.pop(key, None)
        if phase is not None and phase != "busy":
            del self._timed[phase][key]
        return phase

    def expired(self, now: float) -> list[tuple[K, Phase]]:
        """Take out every connection whose deadline is at or before ``now``.

        Returns:
            each with the phase it overstayed, the earliest deadlines of a phase first.
        """
        out: list[tuple[K, Phase]] = []
        for phase, queue in self._timed.items():
            while queue:
                key = next(iter(queue))
                if queue[key] > now:
                    break
                del queue[key]
                del self._phase[key]
                out.append((key, phase))
        return out

    def next_deadline(self) -> float | None:
        """The earliest deadline in the table, or None when no connection has one."""
        firsts = [queue[next(iter(queue))] for queue in self._timed.values() if queue]
        return min(firsts) if firsts else None

    def _longest_waiting(self) -> K | None:
        best: K | None = None
        best_since = math.inf
        for phase, queue in self._timed.items():
            if queue:
                key = next(iter(queue))
                since = queue[key] - self._limit[phase]
                if since < best_since:
                    best, best_since = key, since
        return best


def fd_budget(max_connections: int, soft: int, hard: int, *, infinity: int) -> tuple[int, int]:
    """The open-file limit to ask for, and the connection cap that fits under it.

    Each client connection holds one descriptor; :data:`FD_HEADROOM` more are kept for
    everything else. The soft limit is raised towards the hard one when it is too low
    (an unprivileged process may); when even the hard limit is too low, the cap is
    lowered instead, so that ``accept`` never fails for want of descriptors (asyncio
    then stops accepting for a second, valid clients included).

    Args:
        max_connections: the configured cap.
        soft, hard: the current ``RLIMIT_NOFILE`` limits.
        infinity: the value that means "no limit" (``resource.RLIM_INFINITY``).

    Returns:
        ``(soft limit to set, cap)``; the soft limit is the current one when it suffices.
    """
    need = max_connections + FD_HEADROOM
    if soft == infinity or soft >= need:
        return soft, max_connections
    target = need if hard == infinity else min(need, hard)
    target = max(target, soft)
    return target, max(1, min(max_connections, target - FD_HEADROOM))

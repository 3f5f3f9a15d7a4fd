"""The pool core's pending requests, and the parked ones: waiting for a provider, by retry time.

:class:`Pending` lives here, not in ``core.py``, because both modules use it: the core
imports this module, so this module must not import the core.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field

from actors.pool.providers import Provider
from protocols import AIRequest

__all__ = ["ParkingLot", "Pending"]


@dataclass(slots=True, eq=False)
class Pending:
    """One request the pool core holds, from ``submit`` until it is answered or cancelled."""

    request: AIRequest
    token: int  # tells this request's heap entries from a former one with the same id
    tried: set[str] = field(default_factory=set)
    last: str | None = None  # the last provider whose call failed
    last_error: str = ""
    provider: Provider | None = None  # the call in flight, if any
    provider_name: str = ""
    park_token: int = 0  # nonzero while parked: the live entry of the parked heap


class ParkingLot:
    """A heap of ``(retry_at, park_token, message_id)`` with lazy deletes, compacted.

    An entry is live while its request is pending with that ``park_token``; a request that
    is unparked or finished leaves a stale entry behind, dropped when it comes up or when
    stale entries dominate.

    Args:
        pending: the core's pending requests by message id, read (never changed) here.
    """

    __slots__ = ("_heap", "_n_parked", "_pending")

    def __init__(self, pending: Mapping[str, Pending]) -> None:
        self._pending = pending
        self._heap: list[tuple[float, int, str]] = []
        self._n_parked = 0

    def __len__(self) -> int:
        """Requests parked now."""
        return self._n_parked

    def park(self, p: Pending, retry_at: float, token: int) -> None:
        """Park ``p`` until ``retry_at``; ``token`` (nonzero) tells this parking apart."""
        p.park_token = token
        heapq.heappush(self._heap, (retry_at, token, p.request.message_id))
        self._n_parked += 1

    def take(self, limit: float) -> list[Pending]:
        """Unpark and return the requests whose retry time is at or before ``limit``."""
        due: list[Pending] = []
        heap = self._heap
        while heap and heap[0][0] <= limit:
            entry = heapq.heappop(heap)
            if self._live(entry):
                p = self._pending[entry[2]]
                p.park_token = 0
                self._n_parked -= 1
                due.append(p)
        return due

    def release(self, p: Pending) -> None:
        """Forget ``p`` (finished, parked or not); rebuild the heap when stale entries dominate."""
        if p.park_token:
            p.park_token = 0
            self._n_parked -= 1
        if len(self._heap) > 2 * self._n_parked + 64:
            self._heap = [e for e in self._heap if self._live(e)]
            heapq.heapify(self._heap)

    def next_due(self) -> float | None:
        """When the first parked request may retry, or None when none is parked."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def clear(self) -> None:
        """Forget every parked request."""
        self._heap.clear()
        self._n_parked = 0

    def _live(self, entry: tuple[float, int, str]) -> bool:
        p = self._pending.get(entry[2])
        return p is not None and p.park_token == entry[1]

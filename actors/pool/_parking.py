"""The pool core's parked requests: those waiting for a provider to free up, by retry time."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.pool.core import _Pending

__all__ = ["ParkingLot"]


class ParkingLot:
    """A heap of ``(retry_at, park_token, message_id)`` with lazy deletes, compacted.

    An entry is live while its request is pending with that ``park_token``; a request that
    is unparked or finished leaves a stale entry behind, dropped when it comes up or when
    stale entries dominate.

    Args:
        pending: the core's pending requests by message id, read (never changed) here.
    """

    __slots__ = ("_heap", "_n_parked", "_pending")

    def __init__(self, pending: Mapping[str, _Pending]) -> None:
        self._pending = pending
        self._heap: list[tuple[float, int, str]] = []
        self._n_parked = 0

    def __len__(self) -> int:
        """Requests parked now."""
        return self._n_parked

    def park(self, p: _Pending, retry_at: float, token: int) -> None:
        """Park ``p`` until ``retry_at``; ``token`` (nonzero) tells this parking apart."""
        p.park_token = token
        heapq.heappush(self._heap, (retry_at, token, p.request.message_id))
        self._n_parked += 1

    def take(self, limit: float) -> list[_Pending]:
        """Unpark and return the requests whose retry time is at or before ``limit``."""
        due: list[_Pending] = []
        heap = self._heap
        while heap and heap[0][0] <= limit:
            entry = heapq.heappop(heap)
            if self._live(entry):
                p = self._pending[entry[2]]
                p.park_token = 0
                self._n_parked -= 1
                due.append(p)
        return due

    def release(self, p: _Pending) -> None:
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

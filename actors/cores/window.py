"""Adaptive batching toward one peer: a window of unacknowledged batches, no timer.

The cost of an actor hop is per Thespian message, not per item it carries. Sending one
batch per receiver per turn still sends many small batches when each turn handles little
(at 100 accounts the router's turns each carried a few items to many peers). A
:class:`BatchWindow` lets a batch leave **at once** when fewer than ``window`` batches to
that peer are unacknowledged, and otherwise keeps the items until the peer acknowledges
one: at low load every item leaves in the turn it was produced (no added latency), under
load items gather while the peer works and batches grow by themselves. There is no fixed
delay and no timer: the peer's acknowledgement is the only trigger.

Acknowledgements are cumulative: the peer reports the highest sequence number it has
received (``ack``), so a lost or reordered acknowledgement is made good by the next one.
When the peer is replaced (a restart: new address, new generation), :meth:`reset`
forgets what was in flight to the old one; sequence numbers keep growing, so a late
acknowledgement from the old peer never counts for the new one.

Silence: :meth:`take` is given the time, and :attr:`unacked_since` is when the oldest
batch still unacknowledged left. A peer that has not acknowledged a batch for long is not
reading (a frozen host, a hung process): the router refuses new work for it rather than
let it fill the engine's capacity (``account_silence_s``).

Bounds: ``window`` batches in flight; the items waiting are not bounded here — they are
bounded by their producer's credit window (the router's ``ConversationGate``: at most
``max_concurrent_processing`` messages are in processing, so at most that many items
wait or fly toward any peer). Pure: no Thespian, no clock.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

__all__ = ["BatchWindow"]

T = TypeVar("T")


class BatchWindow(Generic[T]):
    """The batching state toward one peer; see the module docstring.

    Args:
        window: the most batches sent and not yet acknowledged (>= 1).
    """

    __slots__ = ("_acked", "_pending", "_sent", "_sent_at", "batches", "items", "window")

    def __init__(self, window: int = 2) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._pending: list[T] = []
        self._sent = 0  # sequence number of the last batch sent
        self._acked = 0  # highest sequence number acknowledged (or forgotten by reset)
        self._sent_at: deque[tuple[int, float]] = deque()  # (seq, when) of each unacked
        self.batches = 0
        self.items = 0

    def offer(self, items: list[T]) -> None:
        """Queue items for this peer; :meth:`take` says when they leave."""
        self._pending += items

    def take(self, now: float = 0.0) -> tuple[int, list[T]] | None:
        """The next batch to send at ``now``, with its sequence number, if there is room.

        Returns:
            ``(seq, items)`` — every item waiting, in the order offered — or None when
            nothing waits or ``window`` batches are unacknowledged.
        """
        if not self._pending or self.in_flight >= self.window:
            return None
        items, self._pending = self._pending, []
        self._sent += 1
        self._sent_at.append((self._sent, now))
        self.batches += 1
        self.items += len(items)
        return self._sent, items

    def ack(self, seq: int) -> bool:
        """The peer received every batch up to ``seq``; returns whether that freed room."""
        if seq <= self._acked or seq > self._sent:
            return False  # old, repeated, or not ours (a sequence of another router)
        self._acked = seq
        sent_at = self._sent_at
        while sent_at and sent_at[0][0] <= seq:
            sent_at.popleft()
        return True

    def reset(self) -> list[T]:
        """The peer was replaced or went away: forget what was in flight to it.

        Returns:
            The items that were waiting (the caller decides whether they still go).
        """
        self._acked = self._sent
        self._sent_at.clear()
        items, self._pending = self._pending, []
        return items

    @property
    def in_flight(self) -> int:
        """Batches sent and not acknowledged yet."""
        return self._sent - self._acked

    @property
    def unacked_since(self) -> float | None:
        """When the oldest unacknowledged batch left (the ``now`` of its :meth:`take`)."""
        return self._sent_at[0][1] if self._sent_at else None

    @property
    def waiting(self) -> int:
        """Items queued until the window has room."""
        return len(self._pending)

    @property
    def last_sent(self) -> int:
        return self._sent

"""The account core's waiting replies: a FIFO queue per customer and the timers that wake them.

A reply waits when the per-recipient rate log (or the transport) says "later". Each waiting
reply has a timer just after its deadline, and each customer's queue has one live timer for
retrying its head. Timers are never removed early, only recognised as stale when they come
up; the heap is rebuilt once stale ones outnumber the live ones, so it stays O(waiting).
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict

from protocols import OutboundReply

__all__ = ["DONE", "SENDING", "WAITING", "Pending", "WaitList", "WaitQueue"]

WAITING, SENDING, DONE = 0, 1, 2
"""The states of a :class:`Pending`: waiting here, in the transport, reported or dropped."""


class Pending:
    """A reply the core owes a report for; ``not_before`` delays a retry the transport asked for."""

    __slots__ = ("not_before", "reply", "state")

    def __init__(self, reply: OutboundReply, state: int, not_before: float = -math.inf) -> None:
        self.reply = reply
        self.state = state
        self.not_before = not_before


class WaitQueue:
    """One customer's waiting replies in FIFO order and the sequence number of its live timer."""

    __slots__ = ("customer_id", "items", "retry_seq")

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.items: OrderedDict[str, Pending] = OrderedDict()
        self.retry_seq = -1


# A timer: (time, seq, what). A WaitQueue entry retries its head; a Pending entry fires just
# after that reply's deadline.
_Timer = tuple[float, int, "WaitQueue | Pending"]


class WaitList:
    """The waiting replies of one account, by customer, with their retry and deadline timers.

    A registered queue is never empty: removing or starting its last reply forgets it.
    """

    __slots__ = ("_n_waiting", "_queues", "_seq", "_timers")

    def __init__(self) -> None:
        self._queues: dict[str, WaitQueue] = {}
        self._n_waiting = 0
        self._timers: list[_Timer] = []
        self._seq = 0

    def __len__(self) -> int:
        """Waiting replies, over all customers."""
        return self._n_waiting

    @property
    def customers(self) -> int:
        """Customers with at least one waiting reply."""
        return len(self._queues)

    def __contains__(self, customer_id: object) -> bool:
        """True when ``customer_id`` has replies waiting."""
        return customer_id in self._queues

    def append(self, pending: Pending) -> None:
        """Queue ``pending`` behind its customer's waiting replies (they must have some)."""
        self._add(self._queues[pending.reply.customer_id], pending, last=True)

    def start(self, pending: Pending, retry_at: float) -> None:
        """Open a queue holding ``pending`` (its customer has none); retry it at ``retry_at``."""
        customer_id = pending.reply.customer_id
        queue = self._queues[customer_id] = WaitQueue(customer_id)
        self._add(queue, pending, last=True)
        self.schedule(queue, retry_at)

    def put_first(self, pending: Pending, retry_at: float) -> None:
        """Put ``pending`` at the head of its customer's queue, opening one if needed.

        A new queue is retried at ``retry_at``; an existing one keeps its timer, and the
        head's ``not_before`` holds the retry back until then.
        """
        customer_id = pending.reply.customer_id
        queue = self._queues.get(customer_id)
        if queue is None:
            queue = self._queues[customer_id] = WaitQueue(customer_id)
            self.schedule(queue, retry_at)
        self._add(queue, pending, last=False)

    def remove(self, pending: Pending) -> None:
        """Take ``pending`` out of its customer's queue and mark it done."""
        reply = pending.reply
        queue = self._queues[reply.customer_id]
        del queue.items[reply.message_id]
        pending.state = DONE
        self._n_waiting -= 1
        if not queue.items:
            del self._queues[reply.customer_id]

    def head(self, queue: WaitQueue) -> Pending | None:
        """Return the first waiting reply of ``queue``, or None when it is empty."""
        return next(iter(queue.items.values()), None)

    def start_head(self, queue: WaitQueue) -> None:
        """Take the head of ``queue`` out as handed to the transport."""
        _, head = queue.items.popitem(last=False)
        self._n_waiting -= 1
        head.state = SENDING
        if not queue.items and self._queues.get(queue.customer_id) is queue:
            del self._queues[queue.customer_id]

    def schedule(self, queue: WaitQueue, at: float) -> None:
        """Retry the head of ``queue`` at ``at``; an earlier retry timer of it becomes stale."""
        # Mark the new timer live before pushing it: the push may rebuild the heap, and a
        # rebuild keeps only live timers.
        queue.retry_seq = self._seq + 1
        self._push(at, queue)

    def pop_due(self, now: float) -> WaitQueue | Pending | None:
        """Return the next live timer's target due by ``now`` (dropping stale ones), or None.

        A queue is due for a retry of its head; a pending reply is past its deadline.
        """
        # Re-read self._timers each time: the caller's work between calls may rebuild it.
        while self._timers and self._timers[0][0] <= now:
            timer = heapq.heappop(self._timers)
            if self._live(timer):
                return timer[2]
        return None

    def next_due(self) -> float | None:
        """Return when the next live timer fires, or None when there is none."""
        timers = self._timers
        while timers and not self._live(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def clear(self) -> None:
        """Forget every queue and timer (the caller has settled the replies)."""
        self._queues.clear()
        self._timers.clear()
        self._n_waiting = 0

    def _add(self, queue: WaitQueue, pending: Pending, *, last: bool) -> None:
        message_id = pending.reply.message_id
        queue.items[message_id] = pending
        if not last:
            queue.items.move_to_end(message_id, last=False)
        self._n_waiting += 1
        # Fires at the first instant after the deadline: a send exactly at it is allowed.
        self._push(math.nextafter(pending.reply.deadline, math.inf), pending)

    def _push(self, at: float, what: WaitQueue | Pending) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (at, self._seq, what))
        # Stale timers linger until due; rebuild once they outnumber the live ones (one per
        # waiting reply, one per waiting customer) so the heap stays O(pending).
        if len(self._timers) > 2 * (self._n_waiting + len(self._queues)) + 64:
            self._timers = [timer for timer in self._timers if self._live(timer)]
            heapq.heapify(self._timers)

    def _live(self, timer: _Timer) -> bool:
        _, seq, what = timer
        if isinstance(what, WaitQueue):
            return self._queues.get(what.customer_id) is what and what.retry_seq == seq
        return what.state == WAITING

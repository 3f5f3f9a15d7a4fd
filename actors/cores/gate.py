"""Per-customer admission gate: one item in processing per customer, bounded queues, deadlines.

The memory-safe replacement of the seed's ConversationService ``processingQueue``
(MAX_CONCURRENT_PROCESSING = 1000, PROCESSING_TIMEOUT = 120 s). Where the seed dropped a
message with a log line when full, :meth:`ConversationGate.offer` returns an explicit
:class:`Offer`; where a hung promise stayed in the map forever, every accepted item has a
deadline and :meth:`ConversationGate.expire` removes it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Generic

from actors.cores._args import require_int, require_number
from actors.cores.gate_records import (
    REJECT_REASONS,
    Customer,
    Decision,
    Item,
    Offer,
    PayloadT,
    RejectReason,
    Step,
    remove_queued,
)

__all__ = [
    "ConversationGate",
    "Decision",
    "Item",
    "Offer",
    "RejectReason",
    "Step",
]


class ConversationGate(Generic[PayloadT]):
    """Admit at most one item per customer into processing, queue the rest, expire late ones.

    Memory is bounded by ``max_processing * (1 + max_queue_per_customer)`` live items no
    matter the throughput: every structure is deleted from as items leave.

    Time is injected: each ``now`` is in seconds on any non-decreasing clock, and every
    method taking one raises ValueError if it is not finite. A ``now`` smaller than the
    largest one seen so far is clamped up to it, so deadlines stay in offer order (which is
    what lets one insertion-ordered map serve as the deadline queue). An item offered with
    its own ``deadline`` (a re-admission keeps the one it was first given) may break that
    order: the map is then re-sorted once, before the next :meth:`expire` or
    :meth:`next_deadline` (O(n log n), only after such offers; stable, so items with equal
    deadlines stay in offer order).

    Item ids are unique among live items only; an id may be offered again once its item left.

    Args:
        max_processing: customers in processing at once (seed: 1000).
        max_queue_per_customer: items waiting behind a customer's item in processing.
        timeout_s: seconds from offer to expiry, waiting included (seed: 120.0).
        warn_ratio: occupancy alert level as a fraction of ``max_processing`` (seed: 0.9).

    Raises:
        ValueError: an argument is of the wrong type or out of range.
    """

    __slots__ = (
        "_alert_armed",
        "_cancelled_total",
        "_completed_total",
        "_customers",
        "_deadlines",
        "_expired_total",
        "_late_completions",
        "_max_processing",
        "_max_queue",
        "_now",
        "_peak_processing",
        "_processing",
        "_rejected",
        "_timeout_s",
        "_unsorted",
        "_warn_at",
        "_warn_ratio",
    )

    def __init__(
        self,
        *,
        max_processing: int,
        max_queue_per_customer: int,
        timeout_s: float,
        warn_ratio: float = 0.9,
    ) -> None:
        self._max_processing = require_int("max_processing", max_processing, minimum=1)
        self._max_queue = require_int("max_queue_per_customer", max_queue_per_customer, minimum=0)
        self._timeout_s = require_number("timeout_s", timeout_s, minimum=0, min_exclusive=True)
        self._warn_ratio = require_number(
            "warn_ratio", warn_ratio, minimum=0, maximum=1, min_exclusive=True
        )
        # Rounding first keeps e.g. 0.7 * 10 == 7.000000000000001 from meaning 8.
        self._warn_at = max(1, math.ceil(round(self._warn_ratio * self._max_processing, 9)))
        # Every live item, in offer order == deadline order (timeout is constant, now clamped)
        # unless an explicit deadline broke it: then _unsorted until _sort() runs.
        self._deadlines: OrderedDict[str, Item[PayloadT]] = OrderedDict()
        self._unsorted = False
        # Only customers with an item in processing (outside expire()) have an entry.
        self._customers: dict[str, Customer[PayloadT]] = {}
        self._processing = 0
        self._now = -math.inf
        self._alert_armed = True
        self._peak_processing = 0
        self._late_completions = 0
        self._expired_total = 0
        self._completed_total = 0
        self._cancelled_total = 0
        self._rejected: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)

    # -- operations -----------------------------------------------------------------------

    def offer(
        self,
        key: str,
        item_id: str,
        payload: PayloadT,
        now: float,
        *,
        deadline: float | None = None,
    ) -> Offer[PayloadT]:
        """Admit, queue or reject one item for customer ``key``.

        Args:
            key, item_id, payload, now: the customer, the item's id and payload, the time.
            deadline: when the item expires; None (the default) means ``now + timeout_s``.
                A re-admitted item passes the deadline it was first given.

        Raises:
            ValueError: ``now`` or ``deadline`` is not a finite number.
        """
        now = self._advance(now)
        if deadline is not None:
            deadline = require_number("deadline", deadline)
        if item_id in self._deadlines:
            return self._reject("duplicate")
        customer = self._customers.get(key)
        if customer is None:
            if self._processing >= self._max_processing:
                return self._reject("capacity")
            item = self._new_item(key, item_id, payload, now, deadline)
            self._customers[key] = Customer(item)
            self._processing += 1
            self._peak_processing = max(self._peak_processing, self._processing)
            alert = self._alert_armed and self._processing >= self._warn_at
            if alert:
                self._alert_armed = False
            return Offer(decision="admit", item=item, occupancy_alert=alert)
        if len(customer.queue) >= self._max_queue:
            return self._reject("customer_backlog")
        item = self._new_item(key, item_id, payload, now, deadline)
        customer.queue.append(item)
        return Offer(decision="queue", item=item)

    def complete(self, item_id: str, now: float) -> Step[PayloadT]:
        """Finish the item in processing and start the customer's next queued item.

        A completion for an item that is not in processing (expired, cancelled, unknown or
        still queued) is late: it is counted in ``late_completions`` and changes nothing.
        A completion that arrives after the deadline but before :meth:`expire` removed the
        item still counts as a completion.
        """
        self._advance(now)
        item = self._deadlines.get(item_id)
        if item is None or self._customers[item.key].processing is not item:
            self._late_completions += 1
            return Step(late=True)
        customer = self._customers[item.key]
        del self._deadlines[item_id]
        self._completed_total += 1
        started = self._release(item.key, customer)
        return Step(completed=item, started=started)

    def expire(self, now: float) -> Step[PayloadT]:
        """Remove every item whose deadline <= now, oldest first, and start the next ones.

        An item that would start and expire in the same call is only reported as expired.
        Cost is proportional to the number of items expired, not to the gate's size.
        """
        now = self._advance(now)
        expired: list[Item[PayloadT]] = []
        freed: dict[str, Customer[PayloadT]] = {}
        deadlines = self._sorted()
        while deadlines:
            item = next(iter(deadlines.values()))
            if item.deadline > now:
                break
            deadlines.popitem(last=False)
            expired.append(item)
            customer = self._customers[item.key]
            if customer.processing is item:
                customer.processing = None
                self._processing -= 1
                freed[item.key] = customer
            else:
                # Usually its queue's head (a customer's items expire in offer order), but
                # an explicit deadline can expire an item behind others.
                remove_queued(customer, item)
        if not expired:
            return Step()
        self._expired_total += len(expired)
        started: list[Item[PayloadT]] = []
        for key, customer in freed.items():
            started.extend(self._start_next(key, customer))
        self._rearm()
        return Step(expired=tuple(expired), started=tuple(started))

    def cancel(self, item_id: str) -> Step[PayloadT]:
        """Remove one live item wherever it is; if it was in processing, start the next one.

        Cancelling an id that is not live changes nothing and returns an empty step.
        """
        item = self._deadlines.pop(item_id, None)
        if item is None:
            return Step()
        self._cancelled_total += 1
        customer = self._customers[item.key]
        if customer.processing is not item:
            remove_queued(customer, item)
            return Step(cancelled=item)
        return Step(cancelled=item, started=self._release(item.key, customer))

    def drain(self) -> tuple[Item[PayloadT], ...]:
        """Remove every live item (e.g. at shutdown) and return them in deadline order.

        That is offer order, unless items were offered with their own deadlines.
        """
        items = tuple(self._sorted().values())
        self._deadlines.clear()
        self._customers.clear()
        self._processing = 0
        self._rearm()
        return items

    # -- queries --------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest deadline among live items, for arming a timer; None when empty."""
        if not self._deadlines:
            return None
        return next(iter(self._sorted().values())).deadline

    def is_processing(self, item_id: str) -> bool:
        """True when ``item_id`` is live and in processing (not merely queued)."""
        item = self._deadlines.get(item_id)
        if item is None:
            return False
        customer = self._customers.get(item.key)
        return customer is not None and customer.processing is item

    def __len__(self) -> int:
        return len(self._deadlines)

    @property
    def max_processing(self) -> int:
        """Customers allowed in processing at once."""
        return self._max_processing

    @property
    def max_queue_per_customer(self) -> int:
        """Items allowed to wait behind a customer's item in processing."""
        return self._max_queue

    @property
    def timeout_s(self) -> float:
        """Seconds from offer to expiry."""
        return self._timeout_s

    @property
    def warn_at(self) -> int:
        """Number of customers in processing at which the occupancy alert fires."""
        return self._warn_at

    @property
    def processing(self) -> int:
        """Items (equivalently customers) in processing now."""
        return self._processing

    @property
    def queued(self) -> int:
        """Items waiting behind another item of the same customer."""
        return len(self._deadlines) - self._processing

    @property
    def customers(self) -> int:
        """Customers with at least one live item."""
        return len(self._customers)

    @property
    def peak_processing(self) -> int:
        """Highest ``processing`` seen since construction."""
        return self._peak_processing

    @property
    def late_completions(self) -> int:
        """Completions for items that were not in processing."""
        return self._late_completions

    @property
    def expired_total(self) -> int:
        """Items removed by :meth:`expire` since construction."""
        return self._expired_total

    @property
    def completed_total(self) -> int:
        """Items finished by :meth:`complete` since construction (late ones excluded)."""
        return self._completed_total

    @property
    def cancelled_total(self) -> int:
        """Items removed by :meth:`cancel` since construction."""
        return self._cancelled_total

    @property
    def rejected(self) -> dict[str, int]:
        """A snapshot of rejections by reason; every reason is present, zero or not."""
        return dict(self._rejected)

    # -- internals ------------------------------------------------------------------------

    def _advance(self, now: float) -> float:
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite number, got {now!r}")
        if now > self._now:
            self._now = now
        return self._now

    def _new_item(
        self, key: str, item_id: str, payload: PayloadT, now: float, deadline: float | None
    ) -> Item[PayloadT]:
        item = Item(
            item_id=item_id,
            key=key,
            payload=payload,
            offered_at=now,
            deadline=now + self._timeout_s if deadline is None else deadline,
        )
        deadlines = self._deadlines
        if deadlines and item.deadline < next(reversed(deadlines.values())).deadline:
            self._unsorted = True
        deadlines[item_id] = item
        return item

    def _sorted(self) -> OrderedDict[str, Item[PayloadT]]:
        """The live items in deadline order, re-sorted first if an offer broke the order."""
        if self._unsorted:
            self._unsorted = False
            # Stable: items with equal deadlines keep their offer order.
            ordered = sorted(self._deadlines.items(), key=lambda kv: kv[1].deadline)
            self._deadlines = OrderedDict(ordered)
        return self._deadlines

    def _reject(self, reason: RejectReason) -> Offer[PayloadT]:
        self._rejected[reason] += 1
        return Offer(decision="reject", reason=reason)

    def _release(self, key: str, customer: Customer[PayloadT]) -> tuple[Item[PayloadT], ...]:
        """Free ``customer``'s processing slot and hand it to its queue's head, if any."""
        customer.processing = None
        self._processing -= 1
        started = self._start_next(key, customer)
        self._rearm()
        return started

    def _start_next(self, key: str, customer: Customer[PayloadT]) -> tuple[Item[PayloadT], ...]:
        """Start the head of a freed customer's queue, or forget the customer if it is empty."""
        if not customer.queue:
            del self._customers[key]
            return ()
        head = customer.queue.popleft()
        customer.processing = head
        # The slot goes back to the same customer, so max_processing still holds.
        self._processing += 1
        return (head,)

    def _rearm(self) -> None:
        if self._processing < self._warn_at:
            self._alert_armed = True

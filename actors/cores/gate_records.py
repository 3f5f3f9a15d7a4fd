"""The conversation gate's records: its items, its answers, and a customer's slot and queue.

:class:`Item`, :class:`Offer` and :class:`Step` are what ``ConversationGate`` hands its
caller (importable from ``actors.cores.gate`` too). :class:`Customer` and
:func:`remove_queued` are the gate's own bookkeeping, kept here so that the gate module
holds only its policy.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

__all__ = [
    "REJECT_REASONS",
    "Customer",
    "Decision",
    "Item",
    "Offer",
    "PayloadT",
    "RejectReason",
    "Step",
    "remove_queued",
]

PayloadT = TypeVar("PayloadT")

Decision = Literal["admit", "queue", "reject"]
RejectReason = Literal["capacity", "customer_backlog", "duplicate"]

REJECT_REASONS: tuple[RejectReason, ...] = ("capacity", "customer_backlog", "duplicate")


@dataclass(frozen=True, slots=True, kw_only=True)
class Item(Generic[PayloadT]):
    """One accepted item: who it belongs to, its opaque payload and its deadline."""

    item_id: str
    key: str
    payload: PayloadT
    offered_at: float
    deadline: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer(Generic[PayloadT]):
    """The gate's answer to :meth:`ConversationGate.offer`.

    ``decision`` is ``"admit"`` (start work on ``item`` now), ``"queue"`` (``item`` waits
    behind the customer's current item) or ``"reject"`` (``item`` is None and ``reason``
    says why). ``occupancy_alert`` is True on exactly the offer that brought the number of
    customers in processing up to the warning level.
    """

    decision: Decision
    item: Item[PayloadT] | None = None
    reason: RejectReason | None = None
    occupancy_alert: bool = False

    @property
    def accepted(self) -> bool:
        """True when the item is now live in the gate (admitted or queued)."""
        return self.decision != "reject"


@dataclass(frozen=True, slots=True, kw_only=True)
class Step(Generic[PayloadT]):
    """What a complete/expire/cancel call changed.

    ``started`` lists the items that entered processing as a consequence: the caller starts
    work on each. ``late`` is True for a completion of an item that was not in processing.
    """

    late: bool = False
    completed: Item[PayloadT] | None = None
    cancelled: Item[PayloadT] | None = None
    expired: tuple[Item[PayloadT], ...] = ()
    started: tuple[Item[PayloadT], ...] = ()


class Customer(Generic[PayloadT]):
    """A customer's item in processing and the FIFO of items waiting behind it."""

    __slots__ = ("processing", "queue")

    def __init__(self, processing: Item[PayloadT] | None) -> None:
        self.processing = processing
        self.queue: deque[Item[PayloadT]] = deque()


def remove_queued(customer: Customer[PayloadT], item: Item[PayloadT]) -> None:
    """Remove ``item`` from the queue by identity; O(max_queue_per_customer) at worst."""
    # By identity: Item equality would compare payloads, which may be costly or ambiguous.
    queue = customer.queue
    if queue[0] is item:
        queue.popleft()
        return
    for index, queued in enumerate(queue):
        if queued is item:
            del queue[index]
            return

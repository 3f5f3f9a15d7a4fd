"""Batches that carry work between the engine's actors.

One Thespian message per chat message per hop caps a TCP pipeline at a few hundred
messages/s; a batch carries every item one actor has for another at the end of a turn.
The router numbers its batches to each peer (``seq``) and the peer acknowledges them
(``ack``, on its results or alone): the router's batch windows
(``actors.cores.window``) let a batch leave at once while few are unacknowledged, and
otherwise gather items until an acknowledgement comes.
Each batch also says which generation of the receiver it was meant for, because a
restarted actor has a new address and TCP ports get reused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from protocols._schema import Message, check_range, message
from protocols.ai import AIFailure, AIReply, AIRequest
from protocols.chat import (
    Accepted,
    DeliveryReport,
    InboundMessage,
    OutboundReply,
    Outcome,
    Rejected,
)
from protocols.management import AccountEvent


class _Batch(Message):
    """A batch's ``str`` counts its items instead of spelling them out.

    Thespian formats ``str(message)`` for a debug line on every send and throws it away
    (asyncTransportBase._submitTransmit): spelling out 200 messages cost the router ~9 % of
    its CPU. ``repr`` still shows everything.
    """

    __slots__ = ()

    def __str__(self) -> str:
        parts = [
            f"{f.name}={len(value)}" if isinstance(value, tuple) else f"{f.name}={value!r}"
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            for value in (getattr(self, f.name),)
        ]
        return f"{type(self).__name__}({', '.join(parts)})"


__all__ = [
    "AIBatch",
    "AIResults",
    "CancelBatch",
    "CollectOutcomes",
    "DeliveryBatch",
    "OutcomeBatch",
    "SendBatch",
    "SubmitBatch",
    "SubmitResults",
]


@message("submit_batch")
@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitBatch(_Batch):
    """Gateway -> router: inbound messages to admit, answered by ``SubmitResults``.

    ``readmit`` marks messages the engine had already accepted before (a router restart,
    a recovery from the intake store): they keep their acceptance and are not checked for
    duplicates again.
    """

    messages: tuple[InboundMessage, ...]
    generation: int = 0
    readmit: bool = False
    request_id: int = 0
    """Echoed in the answer. The same id asked again is answered again, not re-applied."""
    deadlines: tuple[float, ...] = ()
    """Empty, or one per message: the deadline (epoch seconds) it keeps. A re-admission
    passes the deadline each message was first accepted with; empty: the router gives
    each ``now + processing_timeout_s``."""

    def _validate(self) -> None:
        if self.deadlines and len(self.deadlines) != len(self.messages):
            self._fail(
                "deadlines",
                f"must be empty or one per message ({len(self.messages)}), "
                f"got {len(self.deadlines)}",
            )


@message("submit_results")
@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitResults(_Batch):
    """Router -> gateway: one ``Accepted`` or ``Rejected`` per submitted message, in order."""

    results: tuple[Accepted | Rejected, ...]
    generation: int = 0
    request_id: int = 0


@message("collect_outcomes")
@dataclass(frozen=True, slots=True, kw_only=True)
class CollectOutcomes(Message):
    """Gateway -> router: hand over up to ``max_items`` outcomes, waiting up to ``wait_s``."""

    max_items: int
    wait_s: float = 0.0
    generation: int = 0
    request_id: int = 0

    def _validate(self) -> None:
        check_range(self, "max_items", self.max_items, lo=1)
        check_range(self, "wait_s", self.wait_s, lo=0)


@message("outcome_batch")
@dataclass(frozen=True, slots=True, kw_only=True)
class OutcomeBatch(_Batch):
    """Router -> gateway: outcomes ready now, and account events for listeners."""

    outcomes: tuple[Outcome, ...] = ()
    events: tuple[AccountEvent, ...] = ()
    generation: int = 0
    request_id: int = 0


@message("ai_batch")
@dataclass(frozen=True, slots=True, kw_only=True)
class AIBatch(_Batch):
    """Router -> AI pool: requests to answer."""

    requests: tuple[AIRequest, ...]
    generation: int = 0
    seq: int = 0
    """The router's sequence number of this batch to the pool, acknowledged by ``ack``."""


@message("cancel_batch")
@dataclass(frozen=True, slots=True, kw_only=True)
class CancelBatch(_Batch):
    """Router -> AI pool: stop working on these (timed out, or their account is gone).

    Without it the pool would hold them against its capacity until their deadline.
    """

    message_ids: tuple[str, ...]
    generation: int = 0


@message("ai_results")
@dataclass(frozen=True, slots=True, kw_only=True)
class AIResults(_Batch):
    """AI pool -> router: a reply or a failure per request, in completion order."""

    results: tuple[AIReply | AIFailure, ...]
    generation: int = 0
    ack: int = 0
    """The highest ``AIBatch.seq`` the pool has received (0: none). May carry no results."""


@message("send_batch")
@dataclass(frozen=True, slots=True, kw_only=True)
class SendBatch(_Batch):
    """Router -> account: replies to send."""

    replies: tuple[OutboundReply, ...]
    generation: int = 0
    seq: int = 0
    """The router's sequence number of this batch to this account, acknowledged by ``ack``."""


@message("delivery_batch")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryBatch(_Batch):
    """Account -> router: one report per reply, in completion order."""

    reports: tuple[DeliveryReport, ...]
    generation: int = 0
    ack: int = 0
    """The highest ``SendBatch.seq`` the account has received (0: none). May carry no reports."""
    account_id: str = ""
    """The account that sends it (whose batch window ``ack`` frees)."""

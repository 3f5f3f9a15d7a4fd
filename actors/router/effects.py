"""What the router's pure parts hand its actor to do: messages to send, warnings to log.

``RouterCore`` fills an :class:`Outbox` during a turn; :func:`batches` turns it into one
message per receiver (what keeps a TCP pipeline fast). ``RequestDesk`` returns its answers
as :class:`Send` and its complaints as :class:`Warn`. The actor performs them in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.runtime.wiring import Address
from protocols import AIBatch, AIRequest, CancelBatch, OutboundReply, SendBatch

__all__ = ["Effect", "Outbox", "Send", "Warn", "batches"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """Send ``msg`` to ``to``."""

    to: Address
    msg: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Warn:
    """Log ``text`` as a warning; with ``sample``, at most once an interval under that key."""

    text: str
    sample: str = ""


Effect = Send | Warn


@dataclass(slots=True)
class Outbox:
    """The sends ``RouterCore`` accumulated in one turn."""

    to_pool: list[AIRequest] = field(default_factory=list)
    to_accounts: dict[str, list[OutboundReply]] = field(default_factory=dict)
    cancel_pool: list[str] = field(default_factory=list)


def batches(
    to_pool: list[AIRequest],
    to_accounts: Mapping[str, list[OutboundReply]],
    cancel_pool: list[str],
    *,
    pool: Address,
    accounts: Mapping[str, Address],
    generation: int,
) -> list[Send]:
    """One batch per receiver: the AI requests, each account's replies, the cancellations.

    Args:
        to_pool, to_accounts, cancel_pool: what ``RouterCore.take_outbox`` handed over.
        pool: the pool's address; None (not known yet) drops what is meant for it.
        accounts: the address of each account the router knows; replies for any other
            are dropped (an account removed between the core's turn and this one).
        generation: the router's generation, which tags every batch.

    Returns:
        The sends, the pool's requests first and its cancellations last.
    """
    sends: list[Send] = []
    if to_pool and pool is not None:
        sends.append(Send(to=pool, msg=AIBatch(requests=tuple(to_pool), generation=generation)))
    for account_id, replies in to_accounts.items():
        address = accounts.get(account_id)
        if address is not None:
            sends.append(
                Send(to=address, msg=SendBatch(replies=tuple(replies), generation=generation))
            )
    if cancel_pool and pool is not None:
        sends.append(
            Send(to=pool, msg=CancelBatch(message_ids=tuple(cancel_pool), generation=generation))
        )
    return sends

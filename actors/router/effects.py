"""What the router's pure parts hand its actor to do: messages to send, warnings to log.

``RouterCore`` fills an :class:`Outbox` during a turn; ``actors.router.links.Links`` turns
it into batches, one per receiver, through each receiver's batch window. ``RequestDesk``
returns its answers as :class:`Send` and its complaints as :class:`Warn`. The actor
performs them in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.runtime.wiring import Address
from protocols import AIRequest, OutboundReply

__all__ = ["Effect", "Outbox", "Send", "Warn"]


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

"""Chat messages: what the gateway submits, what the engine answers, what accounts send.

Statuses and reasons are short stable strings, safe to count, alert and branch on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from protocols._schema import (
    Message,
    _short,
    check_customer_id,
    check_id,
    check_one_of,
    check_slug,
    check_text,
    is_bsuid,
    message,
)

__all__ = [
    "REJECT_REASONS",
    "STATUSES",
    "Accepted",
    "DeliveryReport",
    "InboundMessage",
    "OutboundReply",
    "Outcome",
    "Reason",
    "Rejected",
    "Status",
    "is_bsuid",
]

_KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")


class Status(StrEnum):
    """How an accepted message ended; every accepted message ends in exactly one."""

    REPLIED = "replied"  # a reply was produced and handed to the account's transport
    REJECTED = "rejected"  # refused after acceptance (e.g. its account was removed)
    TIMEOUT = "timeout"  # not finished within processing_timeout_s of acceptance
    FAILED = "failed"  # provider or transport failure; the reason says which
    ABANDONED = "abandoned"  # still pending when shutdown ran out of time; journaled


class Reason(StrEnum):
    """The documented reason codes; transports may add ``api_error:<code>`` forms."""

    CAPACITY = "capacity"  # max_concurrent_processing customers already in processing
    CUSTOMER_BACKLOG = "customer_backlog"  # that customer's pending queue is full
    DUPLICATE = "duplicate"  # message_id seen before (webhooks are at-least-once)
    UNKNOWN_ACCOUNT = "unknown_account"  # no such account (or it was removed)
    SHUTTING_DOWN = "shutting_down"  # the engine is shutting down
    INVALID = "invalid"  # the submission broke a protocol rule
    RATE_LIMITED = "rate_limited"  # per-recipient allowance would not free up in time
    NO_PROVIDER = "no_provider"  # every AI provider is cooling down, exhausted or failed
    ACCOUNT_FAILED = "account_failed"  # the account actor crashed past its restart policy
    ROUTER_FAILED = "router_failed"  # the router crashed past its restart policy
    TIMEOUT = "timeout"  # the processing deadline passed
    PROVIDER_ERROR = "provider_error"  # the provider answered with an error
    TRANSPORT_ERROR = "transport_error"  # the transport could not send the reply
    SHUTDOWN = "shutdown"  # pending when the shutdown deadline passed
    OUTSIDE_WINDOW = "outside_window"  # WhatsApp 131047: outside the 24 h service window
    ACCOUNT_AUTH = "account_auth"  # WhatsApp 190: the account's token is invalid or expired
    ACCOUNT_UNRESPONSIVE = "account_unresponsive"  # its actor has not read for account_silence_s


STATUSES = frozenset(s.value for s in Status)

REJECT_REASONS = frozenset(
    r.value
    for r in (
        Reason.CAPACITY,
        Reason.CUSTOMER_BACKLOG,
        Reason.DUPLICATE,
        Reason.UNKNOWN_ACCOUNT,
        Reason.SHUTTING_DOWN,
        Reason.INVALID,
        Reason.ACCOUNT_FAILED,
        Reason.ACCOUNT_UNRESPONSIVE,
        Reason.ROUTER_FAILED,
    )
)
"""The reasons a submission can be refused with (``Rejected.reason``)."""


@message("inbound")
@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage(Message):
    """A customer's message to one of our WhatsApp numbers, as the gateway saw it.

    ``customer_id`` is the sender as the webhook names it: a phone number (``+`` and
    6-20 digits) or a business-scoped user id (``US.1349...``, ``US.ENT.9a...``) for a
    sender whose number WhatsApp withholds. ``text`` is what the AI reads; for a kind
    other than ``text`` the gateway marks it (``[button reply] Yes (id: yes)``).

    Attributes:
        kind: what the customer sent: ``text``, ``button_reply``, ``list_reply``,
            ``quick_reply``, ``image``, ``location``, ... (lower_snake, at most 32).
        context_id: the message the customer replied to (WhatsApp's ``context.id``), or "".
        fixed_reply: when set, the engine sends this text as the reply and asks no AI
            provider (the gateway's fallback for kinds the AI cannot read).
    """

    account_id: str
    customer_id: str
    message_id: str
    text: str
    kind: str = "text"
    context_id: str = ""
    fixed_reply: str = ""

    def _validate(self) -> None:
        check_id(self, "account_id", self.account_id)
        check_customer_id(self, "customer_id", self.customer_id)
        check_id(self, "message_id", self.message_id)
        check_text(self, "text", self.text)
        if _KIND_RE.fullmatch(self.kind) is None:
            self._fail(
                "kind", f"must be a lower_snake name of 1-32 characters, got {_short(self.kind)}"
            )
        if self.context_id:
            check_id(self, "context_id", self.context_id)
        check_text(self, "fixed_reply", self.fixed_reply, allow_empty=True)


@message("outbound")
@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundReply(Message):
    """A reply for an account actor to send to a customer, answering ``message_id``."""

    account_id: str
    customer_id: str
    message_id: str
    text: str
    deadline: float
    """Wall-clock time (epoch seconds) after which the send must not be attempted."""

    def _validate(self) -> None:
        check_id(self, "account_id", self.account_id)
        check_customer_id(self, "customer_id", self.customer_id)
        check_id(self, "message_id", self.message_id)
        check_text(self, "text", self.text)


@message("accepted")
@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted(Message):
    """The engine took the message; exactly one ``Outcome`` for it will follow.

    ``deadline`` (epoch seconds) is when the message times out if still unfinished.
    """

    message_id: str
    deadline: float | None = None

    def _validate(self) -> None:
        check_id(self, "message_id", self.message_id)


@message("rejected")
@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected(Message):
    """The engine refused the message at the door; no ``Outcome`` follows."""

    message_id: str
    reason: str
    detail: str = ""

    def _validate(self) -> None:
        check_id(self, "message_id", self.message_id)
        check_one_of(self, "reason", self.reason, REJECT_REASONS)
        check_text(self, "detail", self.detail, allow_empty=True)


@message("outcome")
@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome(Message):
    """How an accepted message ended.

    ``reason`` is empty for ``replied`` and a reason code otherwise; ``reply`` is the
    reply text for ``replied`` and None otherwise. ``wamid`` is the id WhatsApp gave the
    reply when the transport learned one (``cloud_api``; empty otherwise): the ``id`` of
    the status webhooks (sent, delivered, read, failed) that later concern this reply.
    ``replied`` means WhatsApp accepted the send, not that it reached the customer.
    """

    message_id: str
    status: str
    reason: str = ""
    reply: str | None = None
    detail: str = ""
    wamid: str = ""

    def _validate(self) -> None:
        check_id(self, "message_id", self.message_id)
        check_one_of(self, "status", self.status, STATUSES)
        if self.wamid:
            check_id(self, "wamid", self.wamid)
        if self.status == Status.REPLIED:
            if self.reply is None:
                self._fail("reply", "must be set when status is 'replied'")
            if self.reason:
                self._fail("reason", f"must be empty when status is 'replied', got {self.reason!r}")
        else:
            check_slug(self, "reason", self.reason)
            if self.reply is not None:
                self._fail("reply", f"must be None when status is {self.status!r}")
        if self.reply is not None:
            check_text(self, "reply", self.reply)
        check_text(self, "detail", self.detail, allow_empty=True)


@message("delivery")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReport(Message):
    """An account actor's answer to an ``OutboundReply``: sent, or failed with a reason.

    ``wamid`` is the id WhatsApp gave a sent reply, when the transport learned one.
    """

    message_id: str
    ok: bool
    reason: str = ""
    detail: str = ""
    wamid: str = ""

    def _validate(self) -> None:
        check_id(self, "message_id", self.message_id)
        if self.wamid:
            check_id(self, "wamid", self.wamid)
        if self.ok and self.reason:
            self._fail("reason", f"must be empty when ok, got {self.reason!r}")
        if not self.ok:
            check_slug(self, "reason", self.reason)
        check_text(self, "detail", self.detail, allow_empty=True)

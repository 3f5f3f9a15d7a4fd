"""The webhook's pure side: payload decoding and parsing, answer policy.

Nothing here touches a socket or the engine, so every shape of a Cloud API webhook is
tested as data. The HTTP handlers in :mod:`apps.gateway.app` call, in order,
:func:`~apps.gateway.signature.signature_problem` (401), :func:`decode_payload` (400),
:func:`parse_payload` (counts by kind, messages to submit), then :func:`summarize` on the
engine's answers (200, or 503 so that WhatsApp redelivers later).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apps.gateway.inbound import MESSAGE_KINDS, read_message
from apps.gateway.notices import (
    STATUS_VALUES,
    ErrorNotice,
    StatusUpdate,
    read_errors,
    read_status,
)
from protocols import Accepted, InboundMessage, Rejected, ValidationError

__all__ = [
    "KINDS",
    "RETRYABLE_REASONS",
    "PayloadError",
    "SubmitSummary",
    "WebhookBatch",
    "decode_payload",
    "parse_payload",
    "summarize",
]

KINDS = ("status", "invalid", "unknown_account", "ignored", *MESSAGE_KINDS)
"""What the parser counts: ``status`` updates, ``invalid`` messages that break a protocol
rule, messages to an ``unknown_account`` (phone_number_id not in the config), ``ignored``
shapes the parser does not know (a change of another field, a non-object), and each valid
message by its kind (:data:`~apps.gateway.inbound.MESSAGE_KINDS`: ``text``,
``button_reply``, ..., ``audio``, ``other``), submitted or only acknowledged."""

RETRYABLE_REASONS = frozenset(
    {"capacity", "customer_backlog", "shutting_down", "account_unresponsive"}
)
"""Rejections that a later redelivery can cure: the webhook answers 503 for them."""

_DIGITS = re.compile(r"[0-9]+")
_MAX_PROBLEMS = 20  # problems kept for the log line; the counts hold the rest


class PayloadError(ValueError):
    """Raised by :func:`decode_payload` when the body is not a UTF-8 JSON object (-> 400)."""


def decode_payload(body: bytes) -> dict[str, Any]:
    """Decode a webhook body into its JSON object.

    Raises:
        PayloadError: the body is not UTF-8, not JSON, or not a JSON object.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and Python's int digit limit.
        raise PayloadError(f"body is not JSON: {type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise PayloadError(f"body must be a JSON object, got {type(doc).__name__}")
    return doc


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookBatch:
    """What one webhook carried: messages to submit and counts by kind.

    Attributes:
        messages: the messages to submit, in payload order, mapped to our account ids:
            those the AI reads, and those answered with a fallback text.
        counts: one entry per kind in :data:`KINDS` (zero included).
        statuses: status updates by their ``status`` (unknown values count as ``other``).
        status_updates: each status update with a usable id, in payload order
            (:class:`~apps.gateway.notices.StatusUpdate`: the wamid of our send, its
            status, and for ``failed`` the error code and title).
        errors: the error notifications of the number(s), from each change's
            ``value.errors`` (:class:`~apps.gateway.notices.ErrorNotice`).
        unknown_phone_ids: phone_number_ids not in the config, in first-seen order.
        problems: the first few invalid or ignored findings, each with its path.
    """

    messages: tuple[InboundMessage, ...] = ()
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    statuses: dict[str, int] = field(default_factory=dict)
    status_updates: tuple[StatusUpdate, ...] = ()
    errors: tuple[ErrorNotice, ...] = ()
    unknown_phone_ids: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


class _Parser:
    """Walks one payload, collecting messages and counts; never raises on its shape."""

    def __init__(self, accounts: Mapping[str, str], fallbacks: Mapping[str, str]) -> None:
        self.accounts = accounts
        self.fallbacks = fallbacks
        self.messages: list[InboundMessage] = []
        # Plain dicts: a Counter costs more to make than this whole parse of one message.
        # Every kind counted is one of KINDS, so the table starts with all of them.
        self.counts = dict.fromkeys(KINDS, 0)
        self.statuses: dict[str, int] = {}
        self.status_updates: list[StatusUpdate] = []
        self.errors: list[ErrorNotice] = []
        self.unknown: dict[str, None] = {}  # an ordered set
        self.problems: list[str] = []

    def note(self, kind: str, path: str, problem: str) -> None:
        self.counts[kind] += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(f"{path}: {problem}")

    def payload(self, doc: Mapping[str, Any]) -> None:
        obj = doc.get("object")
        if obj is not None and obj != "whatsapp_business_account":
            self.note("ignored", "$.object", f"not a WhatsApp webhook ({_show(obj)})")
            return
        entries = doc.get("entry")
        if not isinstance(entries, list):
            self.note("ignored", "$.entry", "missing or not a list")
            return
        for i, entry in enumerate(entries):
            changes = entry.get("changes") if isinstance(entry, dict) else None
            if not isinstance(changes, list):
                self.note("ignored", f"$.entry[{i}]", "no list of changes")
                continue
            for j, change in enumerate(changes):
                self.change(change, f"$.entry[{i}].changes[{j}]")

    def change(self, change: Any, path: str) -> None:
        if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
            self.note("ignored", path, "not an object with a value")
            return
        if change.get("field", "messages") != "messages":
            self.note("ignored", path, f"field {_show(change.get('field'))} is not 'messages'")
            return
        value: dict[str, Any] = change["value"]
        path += ".value"
        number_id = _phone_number_id(value)
        statuses = value.get("statuses", [])
        for k, status in enumerate(statuses if isinstance(statuses, list) else [statuses]):
            self.status(status, number_id, f"{path}.statuses[{k}]")
        self.errors += read_errors(value.get("errors"), number_id)
        messages = value.get("messages", [])
        if not isinstance(messages, list):
            self.note("ignored", f"{path}.messages", "not a list")
            return
        if not messages:
            return
        metadata = value.get("metadata")
        phone_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
        phone_id = str(phone_id) if isinstance(phone_id, (str, int)) else None
        contacts = value.get("contacts")
        for k, msg in enumerate(messages):
            self.message(msg, phone_id, contacts, f"{path}.messages[{k}]")

    def status(self, status: Any, phone_id: str | None, path: str) -> None:
        if not isinstance(status, dict):
            self.note("ignored", path, "a status that is not an object")
            return
        self.counts["status"] += 1
        value = status.get("status")
        # An unhashable value (a list, an object) is "other" too, never a TypeError.
        key = value if isinstance(value, str) and value in STATUS_VALUES else "other"
        self.statuses[key] = self.statuses.get(key, 0) + 1
        update = read_status(status, phone_id)
        if update is None:
            if len(self.problems) < _MAX_PROBLEMS:  # counted as a status already
                self.problems.append(f"{path}: a status without a string id")
            return
        self.status_updates.append(update)

    def message(self, msg: Any, phone_id: str | None, contacts: Any, path: str) -> None:
        if not isinstance(msg, dict):
            self.note("ignored", path, "a message that is not an object")
            return
        if not isinstance(msg.get("type"), str):
            self.note("invalid", path, "no type")
            return
        read = read_message(msg)
        if read.problem:
            self.note("invalid", path, read.problem)
            return
        fixed_reply = "" if read.for_ai else self.fallbacks.get(read.kind, "")
        if not read.for_ai and not fixed_reply:
            self.counts[read.kind] += 1  # acknowledged: nothing to submit
            return
        if phone_id is None:
            self.note("ignored", path, "no metadata.phone_number_id for this message")
            return
        account_id = self.accounts.get(phone_id)
        if account_id is None:
            self.unknown.setdefault(phone_id)
            self.note("unknown_account", path, f"phone_number_id {phone_id!r} is not configured")
            return
        sender, mid = _sender(msg, contacts), msg.get("id")
        if sender is None or not isinstance(mid, str):
            self.note("invalid", path, "a message needs a string id and from (or from_user_id)")
            return
        try:
            inbound = InboundMessage(
                account_id=account_id,
                customer_id=sender,
                message_id=mid,
                text=read.text,
                kind=read.kind,
                context_id=read.context_id,
                fixed_reply=fixed_reply,
            )
        except ValidationError as exc:
            # The problem names the field; the customer's text itself is never repeated.
            self.note("invalid", path, f"{exc.problem[:120]} - at `{exc.path}`")
            return
        self.counts[read.kind] += 1
        self.messages.append(inbound)

    def result(self) -> WebhookBatch:
        return WebhookBatch(
            messages=tuple(self.messages),
            counts=self.counts,
            statuses=self.statuses,
            status_updates=tuple(self.status_updates),
            errors=tuple(self.errors),
            unknown_phone_ids=tuple(self.unknown),
            problems=tuple(self.problems),
        )


def _sender(msg: Mapping[str, Any], contacts: Any) -> str | None:
    """The customer id of a message's sender, or None when it names none.

    A phone number (``from``, digits) gets its ``+``; a sender whose number WhatsApp
    withholds has no ``from`` but a business-scoped user id, in ``from_user_id`` (or in
    ``contacts[].user_id`` when the change has one contact). The phone number wins when
    both are given, so a customer keeps the id their conversation started with.
    """
    sender = msg.get("from")
    if isinstance(sender, str) and sender:
        return "+" + sender if _DIGITS.fullmatch(sender) else sender
    user_id = msg.get("from_user_id")
    if isinstance(user_id, str) and user_id:
        return user_id
    if isinstance(contacts, list) and len(contacts) == 1 and isinstance(contacts[0], dict):
        user_id = contacts[0].get("user_id")
        if isinstance(user_id, str) and user_id:
            return user_id
    return None


def _phone_number_id(value: Mapping[str, Any]) -> str | None:
    """The change's ``metadata.phone_number_id`` (digits as a string), or None."""
    metadata = value.get("metadata")
    phone_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    return str(phone_id) if isinstance(phone_id, (str, int)) else None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_payload(
    doc: Mapping[str, Any],
    accounts: Mapping[str, str],
    fallbacks: Mapping[str, str] | None = None,
) -> WebhookBatch:
    """Collect the messages of a Cloud API webhook to submit, and count everything.

    A message the AI reads (:func:`~apps.gateway.inbound.read_message`) is submitted
    with its kind-marked text; one it cannot read is submitted only when ``fallbacks``
    has a text for its kind (as ``InboundMessage.fixed_reply``: sent with no AI call),
    otherwise just counted.

    Args:
        doc: the decoded body (``entry[].changes[].value`` with ``metadata``,
            ``contacts[]``, ``messages[]`` and ``statuses[]``).
        accounts: phone_number_id -> our account id.
        fallbacks: kind -> the fixed reply for messages of that kind (none by default).

    Returns:
        A :class:`WebhookBatch`; a payload of any shape gives one (never raises).
    """
    parser = _Parser(accounts, fallbacks or {})
    parser.payload(doc)
    return parser.result()


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSummary:
    """The engine's answers to one webhook's messages, by result."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def retry(self) -> bool:
        """True when a message was refused for a reason that a redelivery can cure."""
        return any(reason in RETRYABLE_REASONS for reason in self.rejected)

    @property
    def http_status(self) -> int:
        """200 when every message is accepted or settled for good, else 503."""
        return 503 if self.retry else 200


def summarize(results: Iterable[Accepted | Rejected]) -> SubmitSummary:
    """Count ``submit_many`` answers: accepted, and rejected by reason."""
    accepted = 0
    rejected: dict[str, int] = {}
    for result in results:
        if isinstance(result, Accepted):
            accepted += 1
        else:
            rejected[result.reason] = rejected.get(result.reason, 0) + 1
    return SubmitSummary(accepted=accepted, rejected=rejected)

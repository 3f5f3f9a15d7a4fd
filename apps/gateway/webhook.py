"""The webhook's pure side: payload decoding and parsing, answer policy.

Nothing here touches a socket or the engine, so every shape of a Cloud API webhook is
tested as data. The HTTP handlers in :mod:`apps.gateway.app` call, in order,
:func:`~apps.gateway.signature.signature_problem` (401), :func:`decode_payload` (400),
:func:`parse_payload` (counts by kind, messages to submit), then :func:`summarize` on the
engine's answers (200, or 503 so that WhatsApp redelivers later).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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

KINDS = ("text", "status", "non_text", "invalid", "unknown_account", "ignored")
"""What the parser counts: ``text`` messages submitted, ``status`` updates and
``non_text`` messages acknowledged, ``invalid`` messages that break a protocol rule,
text messages to an ``unknown_account`` (phone_number_id not in the config), and
``ignored`` shapes the parser does not know (a change of another field, a non-object)."""

RETRYABLE_REASONS = frozenset({"capacity", "customer_backlog", "shutting_down"})
"""Rejections that a later redelivery can cure: the webhook answers 503 for them."""

# Label values come from the payload: keep their set bounded so metrics cannot explode.
_MESSAGE_TYPES = frozenset(
    {
        "audio",
        "button",
        "contacts",
        "document",
        "image",
        "interactive",
        "location",
        "order",
        "reaction",
        "request_welcome",
        "sticker",
        "system",
        "unknown",
        "unsupported",
        "video",
    }
)
_STATUS_VALUES = frozenset({"sent", "delivered", "read", "failed", "deleted", "warning"})
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
        messages: valid text messages, in payload order, mapped to our account ids.
        counts: one entry per kind in :data:`KINDS` (zero included).
        types: non-text messages by their ``type`` (unknown types count as ``other``).
        statuses: status updates by their ``status`` (unknown values count as ``other``).
        unknown_phone_ids: phone_number_ids not in the config, in first-seen order.
        problems: the first few invalid or ignored findings, each with its path.
    """

    messages: tuple[InboundMessage, ...] = ()
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    types: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    unknown_phone_ids: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


class _Parser:
    """Walks one payload, collecting messages and counts; never raises on its shape."""

    def __init__(self, accounts: Mapping[str, str]) -> None:
        self.accounts = accounts
        self.messages: list[InboundMessage] = []
        self.counts: Counter[str] = Counter()
        self.types: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
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
        statuses = value.get("statuses", [])
        for k, status in enumerate(statuses if isinstance(statuses, list) else [statuses]):
            self.status(status, f"{path}.statuses[{k}]")
        messages = value.get("messages", [])
        if not isinstance(messages, list):
            self.note("ignored", f"{path}.messages", "not a list")
            return
        if not messages:
            return
        metadata = value.get("metadata")
        phone_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
        phone_id = str(phone_id) if isinstance(phone_id, (str, int)) else None
        for k, msg in enumerate(messages):
            self.message(msg, phone_id, f"{path}.messages[{k}]")

    def status(self, status: Any, path: str) -> None:
        if not isinstance(status, dict):
            self.note("ignored", path, "a status that is not an object")
            return
        self.counts["status"] += 1
        value = status.get("status")
        # An unhashable value (a list, an object) is "other" too, never a TypeError.
        self.statuses[value if isinstance(value, str) and value in _STATUS_VALUES else "other"] += 1

    def message(self, msg: Any, phone_id: str | None, path: str) -> None:
        if not isinstance(msg, dict):
            self.note("ignored", path, "a message that is not an object")
            return
        kind = msg.get("type")
        if kind != "text":
            if not isinstance(kind, str):
                self.note("invalid", path, "no type")
                return
            self.counts["non_text"] += 1
            self.types[kind if kind in _MESSAGE_TYPES else "other"] += 1
            return
        if phone_id is None:
            self.note("ignored", path, "no metadata.phone_number_id for this message")
            return
        account_id = self.accounts.get(phone_id)
        if account_id is None:
            self.unknown.setdefault(phone_id)
            self.note("unknown_account", path, f"phone_number_id {phone_id!r} is not configured")
            return
        sender, mid = msg.get("from"), msg.get("id")
        text = msg.get("text")
        body = text.get("body") if isinstance(text, dict) else None
        if not isinstance(sender, str) or not isinstance(mid, str) or not isinstance(body, str):
            self.note("invalid", path, "a text message needs string from, id and text.body")
            return
        customer = sender if sender.startswith("+") else "+" + sender
        try:
            inbound = InboundMessage(
                account_id=account_id, customer_id=customer, message_id=mid, text=body
            )
        except ValidationError as exc:
            # The problem names the field; the customer's text itself is never repeated.
            self.note("invalid", path, f"{exc.problem[:120]} - at `{exc.path}`")
            return
        self.counts["text"] += 1
        self.messages.append(inbound)

    def result(self) -> WebhookBatch:
        return WebhookBatch(
            messages=tuple(self.messages),
            counts={kind: self.counts[kind] for kind in KINDS},
            types=dict(self.types),
            statuses=dict(self.statuses),
            unknown_phone_ids=tuple(self.unknown),
            problems=tuple(self.problems),
        )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_payload(doc: Mapping[str, Any], accounts: Mapping[str, str]) -> WebhookBatch:
    """Collect the text messages of a Cloud API webhook and count everything else.

    Args:
        doc: the decoded body (``entry[].changes[].value`` with ``metadata``,
            ``messages[]`` and ``statuses[]``).
        accounts: phone_number_id -> our account id.

    Returns:
        A :class:`WebhookBatch`; a payload of any shape gives one (never raises).
    """
    parser = _Parser(accounts)
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
    rejected: Counter[str] = Counter()
    for result in results:
        if isinstance(result, Accepted):
            accepted += 1
        else:
            rejected[result.reason] += 1
    return SubmitSummary(accepted=accepted, rejected=dict(rejected))

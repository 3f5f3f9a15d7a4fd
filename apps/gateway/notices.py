"""What WhatsApp tells the gateway about our own sends: status updates and error notices.

A ``statuses[]`` entry of a webhook reports on a message WE sent (its ``id`` is the wamid
the Graph API gave the send): ``sent``, ``delivered``, ``read`` or ``failed``, the last
with an ``errors`` array. An ``errors[]`` array directly in a change's ``value`` is an
error notification about the number (e.g. 130429, its throughput limit). Both shapes are
as Meta's webhook reference shows them (pages "status" and "errors" under
webhooks/reference/messages); :mod:`apps.gateway.webhook` hands each entry here.

Pure: nothing here touches a socket or the engine. Every string kept is cut to a bounded
length, so a payload cannot make a record (or a log line made from one) large.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "STATUS_VALUES",
    "ErrorNotice",
    "StatusUpdate",
    "WebhookError",
    "read_errors",
    "read_status",
]

STATUS_VALUES = frozenset({"sent", "delivered", "read", "failed", "deleted", "warning"})
"""The status values kept as they are; any other is reported as ``other``."""

_TEXT_LIMIT = 300  # characters kept of a title, message or details
_ID_LIMIT = 256  # characters of a wamid or recipient id; longer is not WhatsApp's
_MAX_ERRORS = 10  # error entries kept per status or change


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookError:
    """One entry of an ``errors`` array, as Meta names its fields.

    Attributes:
        code: the error code (e.g. 131047), or None when the entry had no integer code.
        title: the short title (e.g. ``Re-engagement message``).
        message: Meta's message (the same as the title, per the reference).
        details: ``error_data.details``, the longer explanation.
    """

    code: int | None
    title: str = ""
    message: str = ""
    details: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusUpdate:
    """One ``statuses[]`` entry: what became of a message the gateway's engine sent.

    Attributes:
        phone_number_id: the business number that sent it (the change's metadata).
        wamid: the ``id``: the wamid the Graph API returned for the send.
        status: ``sent``, ``delivered``, ``read``, ``failed`` (or ``deleted``,
            ``warning``; ``other`` for a value Meta does not document).
        timestamp: Meta's time of the event (epoch seconds), None when absent.
        recipient_id: the customer the message went to.
        errors: for ``failed`` (and ``warning``), why.
    """

    phone_number_id: str | None
    wamid: str
    status: str
    timestamp: float | None = None
    recipient_id: str = ""
    errors: tuple[WebhookError, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorNotice:
    """One entry of a change's ``value.errors``: a problem of the number, not of a message."""

    phone_number_id: str | None
    error: WebhookError


def _text(value: Any, limit: int = _TEXT_LIMIT) -> str:
    if not isinstance(value, str):
        return ""
    text: str = value if len(value) <= limit else value[: limit - 3] + "..."
    # A lone surrogate (from a JSON escape) would break a log sink or a later encode.
    return text.encode("utf-8", "replace").decode("utf-8")


def _timestamp(value: Any) -> float | None:
    """Meta sends epoch seconds as a string of digits; an int is taken too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return float(value)
    if isinstance(value, int) and 0 <= value < 10**12:
        return float(value)
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return value
    return None


def _error(entry: Any) -> WebhookError | None:
    if not isinstance(entry, dict):
        return None
    code = entry.get("code")
    data = entry.get("error_data")
    return WebhookError(
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        title=_text(entry.get("title")),
        message=_text(entry.get("message")),
        details=_text(data.get("details")) if isinstance(data, dict) else "",
    )


def _errors(value: Any) -> Iterator[WebhookError]:
    if not isinstance(value, list):
        return
    kept = 0
    for entry in value:
        error = _error(entry)
        if error is not None and kept < _MAX_ERRORS:
            kept += 1
            yield error


def read_status(status: dict[str, Any], phone_number_id: str | None) -> StatusUpdate | None:
    """The :class:`StatusUpdate` of one ``statuses[]`` object, or None without a usable id.

    Args:
        status: the object (``id``, ``status``, ``timestamp``, ``recipient_id``,
            optional ``conversation``, ``pricing`` and ``errors``).
        phone_number_id: the change's ``metadata.phone_number_id``.
    """
    wamid = status.get("id")
    if not isinstance(wamid, str) or not wamid or len(wamid) > _ID_LIMIT:
        return None
    value = status.get("status")
    return StatusUpdate(
        phone_number_id=phone_number_id,
        wamid=wamid,
        status=value if isinstance(value, str) and value in STATUS_VALUES else "other",
        timestamp=_timestamp(status.get("timestamp")),
        recipient_id=_text(status.get("recipient_id"), _ID_LIMIT),
        errors=tuple(_errors(status.get("errors"))),
    )


def read_errors(value: Any, phone_number_id: str | None) -> list[ErrorNotice]:
    """The :class:`ErrorNotice` of each entry of a change's ``value.errors`` (if a list)."""
    return [ErrorNotice(phone_number_id=phone_number_id, error=e) for e in _errors(value)]

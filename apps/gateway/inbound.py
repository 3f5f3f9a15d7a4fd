"""What each kind of WhatsApp message becomes: the AI's input, or acknowledged only.

One table, :data:`_READERS`, maps a webhook message's ``type`` to a reader that returns
its kind and the text the AI reads, marked with the kind so a prompt can tell a tapped
button from typed text (Meta's webhook reference, ``messages`` object):

================  =================  ==================================================
``type``          kind               the AI reads
================  =================  ==================================================
``text``          ``text``           the body, as it is
``interactive``   ``button_reply``   ``[button reply] <title> (id: <id>)``
``interactive``   ``list_reply``     ``[list reply] <title> - <description> (id: <id>)``
``button``        ``quick_reply``    ``[quick reply] <text> (payload: <payload>)``
``image``         ``image``          ``[image caption] <caption>`` (no caption: nothing)
``video``         ``video``          ``[video caption] <caption>`` (no caption: nothing)
``document``      ``document``       ``[document caption] <caption> (file: <filename>)``
``location``      ``location``       ``[location] <name>, <address> (<lat>, <lon>)``
================  =================  ==================================================

A message about a catalog product (``context.referred_product``) is prefixed
``[product inquiry: <product_retailer_id>]``.

Everything else (``audio``, ``sticker``, ``reaction``, ``contacts``, ``system``,
``unsupported``, ``order``, ``request_welcome``, another ``interactive`` type, a caption-
less image, video or document, a type nobody knows yet) is for no AI: it is acknowledged
and counted by kind, and answered only when the config gives that kind a fallback text.
Nothing here touches the engine: :func:`read_message` is a pure function of one message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from protocols import MAX_TEXT_LEN

__all__ = ["AI_KINDS", "FALLBACK_KINDS", "MESSAGE_KINDS", "Read", "read_message"]

AI_KINDS = (
    "text",
    "button_reply",
    "list_reply",
    "quick_reply",
    "image",
    "video",
    "document",
    "location",
)
"""Kinds whose messages the AI reads (an image, video or document only with a caption)."""

FALLBACK_KINDS = (
    "audio",
    "sticker",
    "reaction",
    "contacts",
    "system",
    "unsupported",
    "order",
    "request_welcome",
    "interactive",
    "image",
    "video",
    "document",
    "other",
)
"""Kinds that may be for no AI, so ``[gateway.fallback_replies]`` may answer them;
``interactive`` is an interactive type other than a button or list reply (a flow's
``nfm_reply``, ...), ``other`` a message type this table does not know."""

MESSAGE_KINDS = tuple(dict.fromkeys(AI_KINDS + FALLBACK_KINDS))
"""Every kind a message is counted as (a bounded set: label values of a metric)."""

_NUMBER = re.compile(r"-?[0-9]{1,3}(\.[0-9]{1,20})?")


class _MissingFieldError(ValueError):
    """A message of a known type without the fields its type requires."""


@dataclass(frozen=True, slots=True)
class Read:
    """One message as the engine takes it.

    Attributes:
        kind: one of :data:`MESSAGE_KINDS`.
        text: what the AI reads (``for_ai``), else a short marker such as ``[audio]``
            (what a fallback reply answers, and what logs and journals show).
        for_ai: whether the AI can read it; False: acknowledged, or a fallback reply.
        context_id: the message it replies to (``context.id``; a reaction's
            ``message_id``), or "".
        problem: why a message of a known type is unusable ("" when it is fine).
    """

    kind: str
    text: str = ""
    for_ai: bool = False
    context_id: str = ""
    problem: str = ""


def _str(obj: Mapping[str, Any], key: str) -> str:
    """An optional string field: "" when absent or not a string."""
    value = obj.get(key)
    return value.strip() if isinstance(value, str) else ""


def _required(obj: Mapping[str, Any], *keys: str, what: str) -> list[str]:
    values = [_str(obj, key) for key in keys]
    if not all(values):
        raise _MissingFieldError(f"{what} needs non-empty string {' and '.join(keys)}")
    return values


def _object(msg: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise _MissingFieldError(f"a {key} message needs a {key} object")
    return value


def _text(msg: Mapping[str, Any]) -> tuple[str, str | None]:
    body = _object(msg, "text").get("body")
    if not isinstance(body, str) or not body:
        raise _MissingFieldError("a text message needs a non-empty string text.body")
    return "text", body


def _interactive(msg: Mapping[str, Any]) -> tuple[str, str | None]:
    obj = _object(msg, "interactive")
    sub = obj.get("type")
    if sub == "button_reply":
        reply = obj.get("button_reply")
        reply = reply if isinstance(reply, dict) else {}
        reply_id, title = _required(reply, "id", "title", what="a button_reply")
        return "button_reply", f"[button reply] {title} (id: {reply_id})"
    if sub == "list_reply":
        reply = obj.get("list_reply")
        reply = reply if isinstance(reply, dict) else {}
        reply_id, title = _required(reply, "id", "title", what="a list_reply")
        description = _str(reply, "description")
        shown = f"{title} - {description}" if description else title
        return "list_reply", f"[list reply] {shown} (id: {reply_id})"
    return "interactive", None


def _button(msg: Mapping[str, Any]) -> tuple[str, str | None]:
    obj = _object(msg, "button")
    text = _str(obj, "text")
    payload = _str(obj, "payload")
    if not text and not payload:
        raise _MissingFieldError("a button (quick reply) needs a string text or payload")
    more = f" (payload: {payload})" if payload else ""
    return "quick_reply", f"[quick reply] {text or payload}{more}"


def _media(kind: str) -> Callable[[Mapping[str, Any]], tuple[str, str | None]]:
    def read(msg: Mapping[str, Any]) -> tuple[str, str | None]:
        obj = _object(msg, kind)
        caption = _str(obj, "caption")
        if not caption:
            return kind, None  # a photo alone: nothing the AI can read
        filename = _str(obj, "filename") if kind == "document" else ""
        more = f" (file: {filename})" if filename else ""
        return kind, f"[{kind} caption] {caption}{more}"

    return read


def _coordinate(obj: Mapping[str, Any], key: str, limit: float) -> str:
    value = obj.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        shown = repr(value)
        number = float(value)
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        shown = value.strip()
        number = float(shown)
    else:
        raise _MissingFieldError(f"a location needs a number {key}")
    if not math.isfinite(number) or abs(number) > limit:
        raise _MissingFieldError(f"a location's {key} must be within +-{limit:g}")
    return shown


def _location(msg: Mapping[str, Any]) -> tuple[str, str | None]:
    obj = _object(msg, "location")
    lat = _coordinate(obj, "latitude", 90)
    lon = _coordinate(obj, "longitude", 180)
    place = ", ".join(part for part in (_str(obj, "name"), _str(obj, "address")) if part)
    return "location", f"[location] {place + ' ' if place else ''}({lat}, {lon})"


_READERS: dict[str, Callable[[Mapping[str, Any]], tuple[str, str | None]]] = {
    "text": _text,
    "interactive": _interactive,
    "button": _button,
    "image": _media("image"),
    "video": _media("video"),
    "document": _media("document"),
    "location": _location,
}
"""Message ``type`` -> reader: (kind, the AI's text or None when the AI cannot read it)."""

_ALIASES = {"unknown": "unsupported"}  # Meta's older name for an unsupported message


def _marker(kind: str, msg: Mapping[str, Any]) -> str:
    """The text of a message for no AI: ``[audio]``, ``[reaction] 👍``."""
    if kind == "reaction":
        reaction = msg.get("reaction")
        emoji = _str(reaction, "emoji") if isinstance(reaction, dict) else ""
        return f"[reaction] {emoji}" if emoji else "[reaction removed]"
    return f"[{kind.replace('_', ' ')}]"


def _context_id(msg: Mapping[str, Any]) -> str:
    context = msg.get("context")
    if isinstance(context, dict) and (cid := _str(context, "id")):
        return cid
    reaction = msg.get("reaction")  # a reaction is about one message, like a reply
    return _str(reaction, "message_id") if isinstance(reaction, dict) else ""


def _product(msg: Mapping[str, Any]) -> str:
    """The product a customer asks about (``context.referred_product``), or ""."""
    context = msg.get("context")
    product = context.get("referred_product") if isinstance(context, dict) else None
    return _str(product, "product_retailer_id") if isinstance(product, dict) else ""


def read_message(msg: Mapping[str, Any]) -> Read:
    """Read one webhook message: its kind, what the AI reads, what it replies to.

    Args:
        msg: one item of ``value.messages`` (a dict with a string ``type``).

    Returns:
        A :class:`Read`; its ``problem`` says what a message of a known type lacks
        (``for_ai`` is then False). Never raises on the message's shape.
    """
    msg_type = msg.get("type")
    msg_type = _ALIASES.get(msg_type, msg_type) if isinstance(msg_type, str) else "other"
    reader = _READERS.get(msg_type)
    context_id = _context_id(msg)
    if reader is None:
        kind = msg_type if msg_type in FALLBACK_KINDS else "other"
        return Read(kind, _marker(kind, msg), context_id=context_id)
    try:
        kind, text = reader(msg)
    except _MissingFieldError as exc:
        return Read(msg_type if msg_type in MESSAGE_KINDS else "other", problem=str(exc))
    if text is None:
        return Read(kind, _marker(kind, msg), context_id=context_id)
    marked = kind != "text"
    if product := _product(msg):  # "Message business" on a catalog item
        text, marked = f"[product inquiry: {product}] {text}", True
    if marked:
        text = text[:MAX_TEXT_LEN]  # a marker must not push a long text over the limit
    return Read(kind, text, for_ai=True, context_id=context_id)

"""WhatsApp Cloud API webhook payloads, shaped as Meta's documentation shows them.

Each builder returns one item of ``value.messages`` as the page named in its comment
shows it (WhatsApp Cloud API > Webhooks > Reference > messages, and the payload examples
of the same reference); the documentation's placeholders (``PHONE_NUMBER``,
``wamid.ID``, ``TIMESTAMP``, ...) are filled with concrete values, nothing else is
added or left out. :func:`webhook` wraps messages in the documented envelope
(``object``, ``entry[].changes[].value`` with ``messaging_product``, ``metadata``,
``contacts``, ``messages``).
"""

from __future__ import annotations

from typing import Any

CUSTOMER = "16315551234"  # the docs' example sender (button reply example)
NAME = "Kerry Fisher"
TIMESTAMP = "1669233778"
BSUID = "US.13491208655302741918"  # Meta's example on the Business-scoped user IDs page
PARENT_BSUID = "US.ENT.11815799212886844830"
OUR_MESSAGE = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA"  # context.id


def webhook(
    phone_number_id: str,
    *messages: dict[str, Any],
    contacts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The envelope of Webhooks > Reference > messages: one entry, one ``messages`` change.

    ``contacts`` defaults to the sender's profile and ``wa_id``, as the docs show it.
    """
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
        "contacts": contacts
        if contacts is not None
        else [{"profile": {"name": NAME}, "wa_id": CUSTOMER}],
        "messages": list(messages),
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
    }


def text(mid: str, body: str, *, sender: str = CUSTOMER) -> dict[str, Any]:
    # Webhooks > Reference > messages > text
    return {
        "from": sender,
        "id": mid,
        "timestamp": TIMESTAMP,
        "text": {"body": body},
        "type": "text",
    }


def button_reply(mid: str, button_id: str, title: str) -> dict[str, Any]:
    # Webhooks > Reference > messages > interactive (type button_reply: a reply button
    # tapped; context names the interactive message that carried the buttons)
    return {
        "context": {"from": "15550783881", "id": OUR_MESSAGE},
        "from": CUSTOMER,
        "id": mid,
        "timestamp": TIMESTAMP,
        "interactive": {
            "button_reply": {"id": button_id, "title": title},
            "type": "button_reply",
        },
        "type": "interactive",
    }


def list_reply(mid: str, row_id: str, title: str, description: str) -> dict[str, Any]:
    # Webhooks > Reference > messages > interactive (type list_reply: a list row picked)
    return {
        "context": {"from": "15550783881", "id": OUR_MESSAGE},
        "from": CUSTOMER,
        "id": mid,
        "timestamp": TIMESTAMP,
        "interactive": {
            "list_reply": {"id": row_id, "title": title, "description": description},
            "type": "list_reply",
        },
        "type": "interactive",
    }


def quick_reply(mid: str, text_: str, payload: str) -> dict[str, Any]:
    # Webhooks > Reference > messages > button (a template's quick-reply button)
    return {
        "context": {"from": "15550783881", "id": OUR_MESSAGE},
        "from": CUSTOMER,
        "id": mid,
        "timestamp": TIMESTAMP,
        "type": "button",
        "button": {"payload": payload, "text": text_},
    }


def image(mid: str, caption: str | None) -> dict[str, Any]:
    # Webhooks > Reference > messages > image (caption only when the user typed one)
    media: dict[str, Any] = {
        "mime_type": "image/jpeg",
        "sha256": "V5tBxJ9nkrT9dOS0dhNF8gn4nz5Qc6vqBoQtTQ6L+qE=",
        "id": "1003383421387256",
    }
    if caption is not None:
        media = {"caption": caption, **media}
    return {"from": CUSTOMER, "id": mid, "timestamp": TIMESTAMP, "type": "image", "image": media}


def video(mid: str, caption: str) -> dict[str, Any]:
    # Webhooks > Reference > messages > video
    media = {
        "caption": caption,
        "mime_type": "video/mp4",
        "sha256": "Y9jSd2Mc3ZGLBvOEJYqIrpb2E7CqVjH3wU4VoNb3nWE=",
        "id": "1548743919396093",
    }
    return {"from": CUSTOMER, "id": mid, "timestamp": TIMESTAMP, "type": "video", "video": media}


def document(mid: str, caption: str, filename: str) -> dict[str, Any]:
    # Webhooks > Reference > messages > document
    media = {
        "caption": caption,
        "filename": filename,
        "mime_type": "application/pdf",
        "sha256": "Wf1ctPzHq0rJ0iAOHTVE8MsxJ4m7v6wFqMwqMJhJ5Ik=",
        "id": "1164587321583046",
    }
    return {
        "from": CUSTOMER,
        "id": mid,
        "timestamp": TIMESTAMP,
        "type": "document",
        "document": media,
    }


def location(mid: str) -> dict[str, Any]:
    # Webhooks > Reference > messages > location
    return {
        "from": CUSTOMER,
        "id": mid,
        "location": {
            "address": "1 Hacker Way, Menlo Park, CA 94025",
            "latitude": 37.483307,
            "longitude": -122.148981,
            "name": "Main Street Beach",
            "url": "https://foo.bar",
        },
        "timestamp": TIMESTAMP,
        "type": "location",
    }


def reaction(mid: str, emoji: str | None = "\U0001f600") -> dict[str, Any]:
    # Webhooks > Reference > messages > reaction (removing a reaction leaves emoji out)
    body: dict[str, Any] = {"message_id": OUR_MESSAGE}
    if emoji is not None:
        body["emoji"] = emoji
    return {
        "from": CUSTOMER,
        "id": mid,
        "timestamp": TIMESTAMP,
        "reaction": body,
        "type": "reaction",
    }


def sticker(mid: str) -> dict[str, Any]:
    # Webhooks > Reference > messages > sticker
    return {
        "from": CUSTOMER,
        "id": mid,
        "timestamp": TIMESTAMP,
        "type": "sticker",
        "sticker": {
            "mime_type": "image/webp",
            "sha256": "sVNnNFiqzxDA7Y8XCSHiAq2Tsvkj4KqkTLpcYyMoHRw=",
            "id": "1137262447398637",
            "animated": False,
        },
    }


def audio(mid: str) -> dict[str, Any]:
    # Webhooks > Reference > messages > audio (voice: a voice note recorded in the app)
    return {
        "from": CUSTOMER,
        "id": mid,
        "timestamp": TIMESTAMP,
        "type": "audio",
        "audio": {
            "mime_type": "audio/ogg; codecs=opus",
            "sha256": "JV7q+e2b1ZJ6tL3x8hHnpI0b0yY8x5r7rF2C3c9G1Uo=",
            "id": "1022958259225315",
            "voice": True,
        },
    }


def contacts(mid: str) -> dict[str, Any]:
    # Webhooks > Reference > messages > contacts
    return {
        "from": CUSTOMER,
        "id": mid,
        "timestamp": TIMESTAMP,
        "contacts": [
            {
                "name": {"formatted_name": "Barbara J. Johnson", "first_name": "Barbara"},
                "phones": [{"phone": "+1 (415) 555-0123", "wa_id": "14155550123", "type": "HOME"}],
            }
        ],
        "type": "contacts",
    }


def system_changed_number(mid: str) -> dict[str, Any]:
    # Webhooks > Reference > messages > system (user_changed_number)
    return {
        "from": CUSTOMER,
        "id": mid,
        "system": {
            "body": f"{NAME} changed from {CUSTOMER} to 16315550000",
            "new_wa_id": "16315550000",
            "type": "user_changed_number",
        },
        "timestamp": TIMESTAMP,
        "type": "system",
    }


def unsupported(mid: str) -> dict[str, Any]:
    # Webhooks > Reference > messages > unsupported (e.g. a poll, a view-once message)
    return {
        "from": CUSTOMER,
        "id": mid,
        "timestamp": TIMESTAMP,
        "errors": [
            {
                "code": 131051,
                "title": "Message type unknown",
                "message": "Message type unknown",
                "error_data": {"details": "Message type is currently not supported."},
            }
        ],
        "type": "unsupported",
    }


def bsuid_text(mid: str, body: str, *, user_id: str = BSUID) -> dict[str, Any]:
    # Business-scoped user IDs: a sender who adopted a username and withholds the phone
    # number comes with from_user_id (and contacts[].user_id), without from or wa_id.
    return {
        "from_user_id": user_id,
        "id": mid,
        "timestamp": TIMESTAMP,
        "text": {"body": body},
        "type": "text",
    }


def bsuid_contacts(user_id: str = BSUID) -> list[dict[str, Any]]:
    # Business-scoped user IDs: contacts[] carries user_id instead of wa_id.
    return [{"profile": {"name": NAME}, "user_id": user_id}]


def product_inquiry(mid: str, body: str, product_retailer_id: str) -> dict[str, Any]:
    # Webhooks > Reference > messages > text (product enquiry: context.referred_product)
    return {
        "from": CUSTOMER,
        "id": mid,
        "text": {"body": body},
        "context": {
            "from": "15550783881",
            "id": OUR_MESSAGE,
            "referred_product": {
                "catalog_id": "194836987003835",
                "product_retailer_id": product_retailer_id,
            },
        },
        "timestamp": TIMESTAMP,
        "type": "text",
    }

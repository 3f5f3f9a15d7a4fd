"""The webhook signature: ``X-Hub-Signature-256: sha256=<hex>``, HMAC-SHA256 of the raw body.

Meta signs every webhook POST with the app secret. The gateway checks the header
(:func:`signature_problem`); the replay tool and the tests make one (:func:`sign`). Both
sides use this module, so they cannot drift apart. Standard library only: importing it
loads no aiohttp (``apps.gateway`` imports its server lazily).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["HEADER", "PREFIX", "sign", "signature_problem", "verify_signature"]

HEADER = "X-Hub-Signature-256"
"""The request header that carries the signature."""
PREFIX = "sha256="
"""What the header value starts with, before the hex digest."""


def _digest(secret: bytes | str, body: bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def sign(secret: bytes | str, body: bytes) -> str:
    """Return the :data:`HEADER` value that signs ``body`` with ``secret``.

    Args:
        secret: the app secret (a str is taken as its UTF-8 bytes).
        body: the raw request body, exactly as sent.

    Returns:
        ``sha256=`` and the lowercase hex HMAC-SHA256 of ``body``.
    """
    return PREFIX + _digest(secret, body)


def signature_problem(secret: bytes | str, body: bytes, header: str | None) -> str | None:
    """Say why ``header`` does not sign ``body``: ``missing``, ``malformed`` or ``mismatch``.

    The hex digest may be upper or lower case. The digests are compared with
    :func:`hmac.compare_digest`, whose time does not depend on where they differ.

    Args:
        secret: the app secret (a str is taken as its UTF-8 bytes).
        body: the raw request body, exactly as received.
        header: the :data:`HEADER` value, or None when the request had none.

    Returns:
        None when the signature is valid, else the word for the counter label.
    """
    if not header:
        return "missing"
    if not header.startswith(PREFIX):
        return "malformed"
    given = header[len(PREFIX) :].strip().lower().encode("utf-8", "replace")
    expected = _digest(secret, body).encode("ascii")
    return None if hmac.compare_digest(expected, given) else "mismatch"


def verify_signature(secret: bytes | str, body: bytes, header: str | None) -> bool:
    """Return True when ``header`` validly signs ``body`` (see :func:`signature_problem`)."""
    return signature_problem(secret, body, header) is None

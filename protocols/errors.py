"""Exceptions raised by the protocol layer.

The tree::

    ProtocolError
    ├── ValidationError   a message was constructed with a bad field (also a ValueError)
    └── CodecError
        ├── EncodeError   a message could not be turned into a frame
        └── DecodeError   bytes could not be turned into a message
"""

from __future__ import annotations

__all__ = ["CodecError", "DecodeError", "EncodeError", "ProtocolError", "ValidationError"]


class ProtocolError(Exception):
    """Base class of every error raised by ``protocols``."""


class ValidationError(ProtocolError, ValueError):
    """Raised by a message's constructor when a field breaks its rule.

    Attributes:
        path: where the bad value is, e.g. ``InboundMessage.customer_id``.
        problem: what is wrong with it, without the path.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{problem} - at `{path}`")


class CodecError(ProtocolError):
    """Base class of the codec's errors."""


class EncodeError(CodecError):
    """Raised by ``codec.encode`` for an unregistered object or an oversized frame."""


class DecodeError(CodecError):
    """Raised by ``codec.decode`` for any frame that is not a valid message.

    Attributes:
        path: the field path of the bad value (``$`` is the frame itself).
        problem: what is wrong, without the path.
    """

    def __init__(self, problem: str, path: str = "$") -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{problem} - at `{path}`")

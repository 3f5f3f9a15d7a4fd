"""Sealing and opening authenticated frames: the wire format and this process's side of it.

See :mod:`actors.runtime.frameauth` for why and where. A payload (what follows Thespian's
``b"%d>"`` length prefix) is ``head | head MAC | body MAC | body``:

- head (30 bytes): ``WAE\\x01``, the sending process's random 64-bit id, its sequence
  number, the time of sending (ms since the epoch), the destination port;
- head MAC = HMAC-SHA256(key, ``H`` | payload length as 8 bytes | head);
- body MAC = HMAC-SHA256(key, ``B`` | head MAC | body), the body being Thespian's pickle.

Each process has its own sender id, sequence counter, replay memory and set of listening
ports; a forked process starts afresh. Every refusal is counted and logged through
:func:`actors.runtime.netsafe.refuse` before :class:`FrameRefusedError` is raised.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import pickle
import secrets
import struct
import threading
import time
from typing import Any

from actors.cores.replay import ReplayWindow
from actors.runtime import netsafe

__all__ = [
    "CLOCK_WINDOW_S",
    "HEAD_END",
    "MAGIC",
    "OVERHEAD",
    "PLACEHOLDER",
    "UNSEALED",
    "FrameRefusedError",
    "check_head",
    "frame",
    "listening",
    "open_sealed",
    "seal",
    "use_key",
]

MAGIC = b"WAE\x01"
UNSEALED = b"WAE\x00"  # a queued frame, sealed when it is sent
_HEAD = struct.Struct("!4s8sQqH")  # magic, sender id, sequence, ms since epoch, port
_MAC = 32
HEAD_END = _HEAD.size + _MAC
"""Bytes of a payload the head check needs (62)."""
OVERHEAD = _HEAD.size + 2 * _MAC
"""Bytes an authenticated frame adds to Thespian's payload (94)."""
PLACEHOLDER = UNSEALED + bytes(OVERHEAD - len(UNSEALED))
"""What a queued frame carries until it is sealed; refused if it were ever sent as is."""

CLOCK_WINDOW_S = 60.0
"""A frame stamped further than this from the receiver's clock is refused (``stale``)."""

_ACKS = ("ACK", "ACK+DATAERR")  # Thespian's streamBuffer.ackPacket and ackDataErrPacket


class FrameRefusedError(pickle.UnpicklingError):
    """A frame failed authentication; raised after it was counted and logged."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"refused ({reason}): {detail}")
        self.reason = reason


class _Keyed:
    """HMAC-SHA256 (RFC 2104) under one key, from SHA-256 states keyed once.

    HMAC(K, m) = H((K ^ opad) | H((K ^ ipad) | m)): the two keyed states (and the inner
    one fed its label, ``H`` or ``B``) are computed here and copied for each frame, which
    costs a third less than ``hmac.new`` per frame.
    """

    __slots__ = ("_body", "_head", "_outer", "ack_lengths", "acks", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._head, self._body = inner.copy(), inner.copy()
        self._head.update(b"H")
        self._body.update(b"B")
        # Thespian's acknowledgements, sealed once (sequence 0, no sender, no port).
        self.acks = [(self.seal(pickle.dumps(text), bytes(8), 0, 0, 0), text) for text in _ACKS]
        self.ack_lengths = {len(payload) for payload, _ in self.acks}

    def _finish(self, inner: Any) -> bytes:
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def head_mac(self, length: int, head: bytes) -> bytes:
        """HMAC(key, ``H`` | length as 8 bytes | head)."""
        inner = self._head.copy()
        inner.update(length.to_bytes(8, "big") + head)
        return self._finish(inner)

    def body_mac(self, head_mac: bytes, body: bytes | memoryview) -> bytes:
        """HMAC(key, ``B`` | head MAC | body)."""
        inner = self._body.copy()
        inner.update(head_mac)
        inner.update(body)
        return self._finish(inner)

    def seal(self, body: bytes, sender: bytes, seq: int, ms: int, port: int) -> bytes:
        head = _HEAD.pack(MAGIC, sender, seq, ms, port)
        head_mac = self.head_mac(OVERHEAD + len(body), head)
        return head + head_mac + self.body_mac(head_mac, body) + body


_keyed = _Keyed(b"not yet keyed")  # replaced through use_key() before any frame
_sender = secrets.token_bytes(8)
_next_seq = itertools.count(1).__next__
_replay = ReplayWindow()
_replay_lock = threading.Lock()
_ports: set[int] = set()  # the ports this process's transports listen on


def _new_process() -> None:
    # A forked process is a sender of its own, with a memory and ports of its own.
    global _sender, _next_seq, _replay, _replay_lock
    _sender = secrets.token_bytes(8)
    _next_seq = itertools.count(1).__next__
    _replay, _replay_lock = ReplayWindow(), threading.Lock()
    _ports.clear()


os.register_at_fork(after_in_child=_new_process)


def use_key(key: bytes) -> list[bytes]:
    """Seal and open with ``key`` from now on; return the sealed ACK and ACK+DATAERR payloads."""
    global _keyed
    if key != _keyed.key:
        _keyed = _Keyed(key)
    return [payload for payload, _ in _keyed.acks]


def listening(port: int, *, listens: bool = True) -> None:
    """A transport of this process listens on ``port`` (or stopped, ``listens=False``)."""
    if listens:
        _ports.add(port)
    else:
        _ports.discard(port)


def _sealed(body: bytes, key: bytes, sender: bytes, seq: int, ms: int, port: int) -> bytes:
    keyed = _keyed if key == _keyed.key else _Keyed(key)
    return keyed.seal(body, sender, seq, ms, port)


def seal(body: bytes, *, dest_port: int, key: bytes | None = None) -> bytes:
    """The authenticated payload of ``body`` (a pickle) for the transport at ``dest_port``.

    Sealed as this process, with its next sequence number and the time now; ``key``
    defaults to this process's key.
    """
    keyed = _keyed if key is None else _Keyed(key)
    return keyed.seal(body, _sender, _next_seq(), int(time.time() * 1000), dest_port)


def frame(obj: Any, *, dest_port: int, key: bytes | None = None) -> bytes:
    """A whole frame as Thespian sends it: ``obj`` pickled, sealed, length-prefixed."""
    payload = seal(pickle.dumps(obj), dest_port=dest_port, key=key)
    return b"%d>" % len(payload) + payload


def _refuse(reason: str, detail: str) -> FrameRefusedError:
    netsafe.refuse(reason, detail)
    return FrameRefusedError(reason, detail)


def check_head(data: bytes, length: int) -> tuple[bytes, int, int]:
    """Check what the first 62 bytes say; return (sender, sequence, port). Counts refusals."""
    if length < OVERHEAD:
        raise _refuse("mac", f"its {length} bytes cannot hold a MAC")
    head = data[: _HEAD.size]
    magic, sender, seq, ms, port = _HEAD.unpack(head)
    if magic != MAGIC:
        raise _refuse("mac", "it carries no MAC (not an authenticated frame)")
    if seq == 0:  # an acknowledgement: compared whole when it is in (it is short)
        if length not in _keyed.ack_lengths:
            raise _refuse("mac", "sequence number 0 on a frame that is not an acknowledgement")
        return sender, seq, port
    if not hmac.compare_digest(data[_HEAD.size : HEAD_END], _keyed.head_mac(length, head)):
        raise _refuse("mac", "its MAC is wrong (another key, or altered)")
    skew_s = abs(time.time() - ms / 1000)
    if skew_s > CLOCK_WINDOW_S:
        raise _refuse("stale", f"its timestamp is {skew_s:.0f} s from this clock")
    if not _replay.fresh(sender, seq):
        raise _refuse("replay", f"sender {sender.hex()} used sequence number {seq} already")
    return sender, seq, port


def open_sealed(data: bytes, head: tuple[bytes, int, int] | None, ports: Any = None) -> Any:
    """Authenticate ``data`` (a payload), then unpickle it through the allowlist.

    Args:
        data: the payload (what follows the length prefix).
        head: what :func:`check_head` returned for it already, or None to check it here.
        ports: the ports a frame may be meant for (default: this process's transports').

    Raises:
        FrameRefusedError: no valid MAC, stale, replayed or misdirected (counted).
        actors.runtime.netsafe.RefusedClassError: the body names a class outside the
            allowlist (counted).
    """
    sender, seq, port = head or check_head(data, len(data))
    if seq == 0:
        for payload, text in _keyed.acks:
            if hmac.compare_digest(data, payload):
                return text
        raise _refuse("mac", "sequence number 0 on a frame that is not an acknowledgement")
    body = memoryview(data)[OVERHEAD:]
    mac = _keyed.body_mac(data[_HEAD.size : HEAD_END], body)
    if not hmac.compare_digest(data[HEAD_END:OVERHEAD], mac):
        raise _refuse("mac", "its MAC is wrong (another key, or altered)")
    if port not in (_ports if ports is None else ports):
        raise _refuse("replay", f"it was sealed for port {port}, not one of this process's")
    with _replay_lock:  # the embedding process may receive for two systems on two threads
        accepted = _replay.accept(sender, seq)
    if not accepted:
        raise _refuse("replay", f"sender {sender.hex()} used sequence number {seq} already")
    return netsafe.restricted_loads(bytes(body))

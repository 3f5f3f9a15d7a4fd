"""Every frame on Thespian's TCP transport authenticated: HMAC-SHA256, anti-replay, a size cap.

Thespian 4.0.1 (pinned) has no transport authentication: whoever reaches a port is heard.
This module makes every frame carry a MAC that is checked, in constant time, before
anything is unpickled, and makes a frame count once: it patches the transport, and
:mod:`actors.runtime.sealing` (the wire format) and :mod:`actors.runtime.transport_key`
(where the key comes from) do the rest.

The wire format
    Thespian frames a message as ``b"%d>" % len(payload) + payload`` (``streamBuffer``),
    where the payload was ``pickle.dumps((sender address, message))``. Here the payload is
    ``head | head MAC | body MAC | body``, the body being that pickle:

    - head (30 bytes): ``WAE\\x01``, the sending process's random 64-bit id, its sequence
      number (one more for every frame it sends), the time of sending (ms since the epoch)
      and the destination port;
    - head MAC = HMAC-SHA256(key, ``H`` | payload length | head): checked as soon as the
      first 62 bytes of a frame are in, so a peer without the key is cut off after them,
      however long a frame it announced;
    - body MAC = HMAC-SHA256(key, ``B`` | head MAC | body): checked when the frame is in.

    The receiver refuses a frame whose prefix is not a number or is over the cap
    (``transport_max_frame_bytes``) before buffering more, then, in order: a missing or
    wrong MAC (``mac``), a timestamp more than 60 s from its own clock
    (``stale``), a destination port that is not one of its own or a (sender, sequence
    number) it has accepted before (``replay``, :class:`actors.cores.replay.ReplayWindow`).
    Only then is the body unpickled through :func:`actors.runtime.netsafe.restricted_loads`.
    A refusal is counted and logged (:func:`actors.runtime.netsafe.refuse`); Thespian answers
    it like any frame it cannot load (``ACK+DATAERR``, then it closes the connection) and
    the process carries on.

When a frame is sealed
    At the moment its first byte is sent (``TCPTransport._next_XMIT_2`` with nothing sent
    yet), not when the message is queued: a frame that waited for a connection, or is
    sent again after a failed attempt, gets a fresh sequence number and timestamp, so the
    numbers a receiver sees from one sender rise in the order the frames are sent.

Thespian's acknowledgements
    A receiver answers every frame with a prebuilt ``ACK`` or ``ACK+DATAERR`` frame
    (``ackMsg``, ``ackDataErrMsg``, module constants of ``TCPTransport``). They are
    replaced by authenticated frames with sequence number 0 and destination 0, which the
    receiver accepts only if the whole frame equals one of the two it made itself with its
    key (compared in constant time, nothing unpickled). They are constant per key, so
    whoever sits on a connection can replay one: that tells a sender "delivered" or "not
    loaded" for a frame, which such an attacker could achieve by dropping the frame anyway.
    No one without the key can make one.

The key's life
    :func:`start` runs in ``SystemHandle.start`` before ``ActorSystem(...)``: the key
    lives in module state, so the admin, the logger and every actor process, all
    forked after that, inherit it; it never touches disk or argv. By default it is 32
    random bytes per engine start (engines started in one process while another runs
    share that one's key). With ``transport_secret_env`` or ``transport_secret_file`` it
    is derived from a secret shared by actor systems on several hosts. ``transport_auth
    = false`` turns all of this off, for measuring its cost only, with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import pickle
import secrets
import weakref
from typing import Any

from loguru import logger
from thespian.system.transport.streamBuffer import ReceiveBuffer

from actors.config import EngineConfig
from actors.errors import ConfigError
from actors.runtime import netsafe, sealing
from actors.runtime.sealing import (
    HEAD_END,
    MAGIC,
    OVERHEAD,
    PLACEHOLDER,
    UNSEALED,
    FrameRefusedError,
    check_head,
    open_sealed,
)
from actors.runtime.thespian_fixes import require_pinned_thespian, tcp_module
from actors.runtime.transport_key import Settings, wanted

__all__ = [
    "AuthReceiveBuffer",
    "FrameRefusedError",
    "Settings",
    "apply",
    "current",
    "open_payload",
    "start",
    "stop",
]

_stream = importlib.import_module("thespian.system.transport.streamBuffer")
_PREFIX_DIGITS = 20  # a 64-bit length; more digits than this is no length of ours

_settings = Settings(
    auth=True,
    key=b"",  # made by apply() or start(), in the process that forks the system
    max_frame_bytes=EngineConfig().transport_max_frame_bytes,
    origin="none yet",
)
_owners: weakref.WeakSet[Any] = weakref.WeakSet()
_originals: dict[str, Any] = {
    "ReceiveBuffer": _stream.ReceiveBuffer,
    "ackMsg": _stream.ackMsg,
    "ackDataErrMsg": _stream.ackDataErrMsg,
    "__init__": tcp_module.TCPTransport.__init__,
    "close": tcp_module.TCPTransport.close,
    "_next_XMIT_2": tcp_module.TCPTransport._next_XMIT_2,
}
_log = logger.bind(actor="frameauth")
_NOTHING = object()


def open_payload(data: bytes, *, ports: Any = None) -> Any:
    """Authenticate a received payload, then unpickle it (what the transport calls ``loads``).

    With authentication off, only the allowlisted unpickling is left.

    Args:
        data: the payload (what follows the length prefix).
        ports: the ports a frame may be meant for (default: this process's transports').

    Raises:
        FrameRefusedError: no valid MAC, stale, replayed or misdirected (counted).
        actors.runtime.netsafe.RefusedClassError: the body names a class outside the
            allowlist (counted).
    """
    if not _settings.auth:
        return netsafe.restricted_loads(data)
    return open_sealed(bytes(data), None, ports)


def _dumps(obj: Any) -> bytes:
    # Queued unsealed: the transport seals a frame when it starts sending it.
    body = pickle.dumps(obj)
    return PLACEHOLDER + body if _settings.auth else body


class AuthReceiveBuffer(ReceiveBuffer):  # type: ignore[misc]  # Thespian has no types
    """Thespian's receive buffer with a checked length prefix and an early head check.

    A refused frame makes the buffer "done" with nothing to load: Thespian then answers
    ``ACK+DATAERR`` and closes an incoming connection, or retries a send whose answer it
    was (never unpickling anything).
    """

    _buf: bytes
    _blen: int
    _size: int | None
    _extra: bytes

    def __init__(self, serializer: Any = None) -> None:
        super().__init__(serializer or netsafe._Serializer.loads)
        self._refused: bool = False
        self._head: tuple[bytes, int, int] | None = None  # (sender, sequence, port), checked
        self._loaded: Any = _NOTHING

    def addMore(self, buf: Any) -> None:  # noqa: N802 (Thespian's name)
        if self._refused:
            return
        if self._size is None:
            self._add_prefix(buf)
        else:
            super().addMore(buf)
        if (
            _settings.auth
            and self._head is None
            and not self._refused
            and self._size is not None
            and (self._size < OVERHEAD or len(self._buf) >= HEAD_END)
        ):
            try:
                self._head = check_head(self._buf, self._size)
            except FrameRefusedError:
                self._drop()

    def _add_prefix(self, buf: Any) -> None:
        if not isinstance(buf, bytes | bytearray):
            raise TypeError(f"received {type(buf).__name__}, not bytes")
        data = self._buf + buf
        mark = data.find(b">")
        if mark < 0:
            if len(data) > _PREFIX_DIGITS:
                reason = "oversize" if data.isdigit() else "mac"
                self._refuse(reason, f"no length prefix in its first {len(data)} bytes")
                return
            self._buf, self._blen = data, 1  # Thespian's "something came" marker
            return
        digits = data[:mark]
        if not (digits.isdigit() and len(digits) <= _PREFIX_DIGITS):
            self._refuse("mac", f"its length prefix {bytes(digits[:24])!r} is not a number")
            return
        size, cap = int(digits), _settings.max_frame_bytes
        if size > cap:
            self._refuse("oversize", f"its length prefix says {size:,} bytes, over {cap:,}")
            return
        rest = data[mark + 1 :]
        self._size, self._buf = size, rest[:size]
        self._blen = len(self._buf)
        if len(rest) > size:
            self._extra = rest[size:]

    def _refuse(self, reason: str, detail: str) -> None:
        netsafe.refuse(reason, detail)
        self._drop()

    def _drop(self) -> None:
        self._refused = True
        self._buf = self._extra = b""

    def isDone(self) -> bool:  # noqa: N802 (Thespian's name)
        return self._refused or bool(super().isDone())

    def completed(self) -> Any:
        # Thespian calls this twice for a frame that arrives where it expected an ACK (once
        # to see what it is, once as an incoming frame): load it once, or the second call
        # would be refused as a replay.
        if self._refused or self._size is None or self._blen != self._size:
            return None
        if self._loaded is _NOTHING:
            try:
                if _settings.auth:  # the head was checked when it came in
                    self._loaded = open_sealed(self._buf, self._head)
                else:
                    self._loaded = self._deserialize(self._buf)
            except (FrameRefusedError, netsafe.RefusedClassError):
                return None  # counted and logged where it was refused
        return self._loaded, self._extra


# --- the transport's side ---------------------------------------------------------------


def _transport_init(transport: Any, *args: Any) -> None:
    _originals["__init__"](transport, *args)
    sealing.listening(transport.socket.getsockname()[1])


def _transport_close(transport: Any) -> None:
    sock = getattr(transport, "socket", None)
    with contextlib.suppress(OSError):  # already closed
        sealing.listening(sock.getsockname()[1] if sock is not None else -1, listens=False)
    _originals["close"](transport)


def _next_xmit_2(transport: Any, intent: Any) -> Any:
    # Sending starts: seal the frame now (a retry starts again at 0 and is sealed afresh).
    if _settings.auth and getattr(intent, "amtSent", 0) == 0:
        ser = intent.serMsg
        mark = ser.find(b">", 0, _PREFIX_DIGITS + 1) + 1
        if mark and ser[mark : mark + 4] in (UNSEALED, MAGIC):
            port = intent.targetAddr.addressDetails.sockname[1]
            intent.serMsg = ser[:mark] + sealing.seal(ser[mark + OVERHEAD :], dest_port=port)
    return _originals["_next_XMIT_2"](transport, intent)


def _install(settings: Settings) -> None:
    global _settings
    _settings = settings
    ack, data_err = sealing.use_key(settings.key)
    if settings.auth:
        acks = (b"%d>" % len(ack) + ack, b"%d>" % len(data_err) + data_err)
    else:
        acks = (_originals["ackMsg"], _originals["ackDataErrMsg"])
    tcp_module.__dict__["ackMsg"], tcp_module.__dict__["ackDataErrMsg"] = acks


def current() -> Settings:
    """The settings in force in this process."""
    return _settings


def apply() -> None:
    """Install frame authentication (idempotent): with a random key if none was set yet.

    Raises:
        RuntimeError: the installed Thespian is not the pinned one.
    """
    require_pinned_thespian(
        "actors.runtime.frameauth",
        "streamBuffer.ReceiveBuffer and its ackMsg/ackDataErrMsg, TCPTransport.__init__, "
        ".close and ._next_XMIT_2, and TCPTransport's uses of serializer.dumps/loads",
    )
    netsafe.apply()
    netsafe.use_framing(_dumps, open_payload)
    tcp_module.__dict__["ReceiveBuffer"] = AuthReceiveBuffer
    tcp_module.TCPTransport.__init__ = _transport_init
    tcp_module.TCPTransport.close = _transport_close
    tcp_module.TCPTransport._next_XMIT_2 = _next_xmit_2
    if not _settings.key:
        _install(
            Settings(
                auth=_settings.auth,
                key=secrets.token_bytes(32),
                max_frame_bytes=_settings.max_frame_bytes,
                origin="random",
            )
        )
    else:
        _install(_settings)


# --- the key's life ---------------------------------------------------------------------


def start(owner: object, config: EngineConfig) -> Settings:
    """Set the key and limits for an actor system about to start in this process.

    Call it before ``ActorSystem(...)``: every process the system forks inherits them.
    While another system started here runs (an ``owner`` not yet given to :func:`stop`),
    its settings stay: a random key is shared, any other difference is refused.

    Raises:
        ConfigError: the secret cannot be read or is too short, or another engine in this
            process runs with different transport settings.
    """
    want = wanted(config)
    if len(_owners):
        now = _settings
        clashes = [
            name
            for name, differs in (
                ("transport_auth", want.auth != now.auth),
                ("transport_max_frame_bytes", want.max_frame_bytes != now.max_frame_bytes),
                ("the transport secret", bool(want.key) and want.key != now.key),
            )
            if differs
        ]
        if clashes:
            raise ConfigError(
                f"another engine in this process runs with a different {clashes[0]} "
                f"({now.origin} key): engines in one process share the transport settings"
            )
        chosen = now
    else:
        key = want.key or secrets.token_bytes(32)
        chosen = Settings(want.auth, key, want.max_frame_bytes, want.origin)
    apply()
    _install(chosen)
    _owners.add(owner)
    if not chosen.auth:
        _log.warning(
            "TRANSPORT AUTHENTICATION IS OFF (transport_auth = false): any process that "
            "reaches a port of this actor system is heard, unauthenticated. Measure with "
            "it, never run with it (README, Security)."
        )
    return chosen


def stop(owner: object) -> None:
    """The system started for ``owner`` has stopped.

    Authentication turned off lasts only while a system started with it runs: when none
    is left, it is on again (with the same key) for whatever starts next.
    """
    _owners.discard(owner)
    if not len(_owners) and not _settings.auth:
        _install(dataclasses.replace(_settings, auth=True))

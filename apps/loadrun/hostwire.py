"""Frames between the load runner and its engine host: a length, then a pickle.

Both ends are this program, talking over a private socketpair the runner made for the
host it started, so pickle carries the protocol messages, the ``EngineConfig`` and the
runner's requests as they are (no schema to keep in step). A frame is a 4-byte
big-endian length and that many bytes of pickle; frames above :data:`MAX_FRAME_BYTES`
are refused before anything is read into memory.
"""

from __future__ import annotations

import pickle
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_FRAME_BYTES", "ChannelClosedError", "recv", "send"]

MAX_FRAME_BYTES = 256 * 1024 * 1024
"""The largest frame either end accepts (a batch of 10,000 outcomes is ~1 MB)."""

_HEADER = struct.Struct("!I")
_POLL_S = 0.25  # how often a waiting reader looks whether the other end still lives


class ChannelClosedError(ConnectionError):
    """The other end closed the channel, died, or sent a bad frame."""


def send(sock: socket.socket, obj: Any) -> None:
    """Send one frame.

    Raises:
        ChannelClosedError: the other end is gone.
    """
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > MAX_FRAME_BYTES:
        raise ValueError(f"a frame of {len(data)} bytes is over the {MAX_FRAME_BYTES}-byte limit")
    try:
        sock.sendall(_HEADER.pack(len(data)) + data)
    except OSError as exc:
        raise ChannelClosedError(f"the other end is gone ({exc})") from None


def recv(
    sock: socket.socket,
    *,
    timeout_s: float | None = None,
    alive: Callable[[], bool] = lambda: True,
) -> Any:
    """Receive one frame, waiting at most ``timeout_s`` (None: for ever).

    Args:
        sock: the channel.
        timeout_s: the longest wait for the whole frame.
        alive: asked every 0.25 s while waiting; False ends the wait (the other end died
            but a process it forked may still hold its end of the socket open).

    Raises:
        ChannelClosedError: end of file, ``alive()`` said no, a bad frame.
        TimeoutError: nothing complete within ``timeout_s``.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    header = _read(sock, _HEADER.size, deadline, alive)
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ChannelClosedError(
            f"a frame of {size} bytes is over the {MAX_FRAME_BYTES}-byte limit"
        )
    try:
        return pickle.loads(_read(sock, size, deadline, alive))
    except Exception as exc:  # a torn or foreign frame: the channel is of no more use
        raise ChannelClosedError(f"a bad frame ({type(exc).__name__}: {exc})") from None


def _read(sock: socket.socket, n: int, deadline: float | None, alive: Callable[[], bool]) -> bytes:
    chunks: list[bytes] = []
    left = n
    while left:
        wait = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
        if wait <= 0:
            raise TimeoutError(f"no complete frame within the time allowed ({n - left}/{n} bytes)")
        sock.settimeout(wait)
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except TimeoutError:
            if not alive():
                raise ChannelClosedError("the other end died") from None
            continue
        except OSError as exc:
            raise ChannelClosedError(f"the channel broke ({exc})") from None
        if not chunk:
            raise ChannelClosedError("the other end closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)

"""Reading the dead-letter journal: the record format's reader side, apart from the writer.

:func:`read_journal` yields one file's messages, :func:`journal_files` lists a journal's
files oldest first, and :func:`walk_records` counts whole records by their length
prefixes (the writer uses it to find a torn tail and to count a ``.1`` it replaces). The
file format and the reading rules are in :mod:`actors.engine.journal`, which re-exports
the public names here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

from actors.errors import EngineError
from protocols.chat import InboundMessage
from protocols.codec import MAX_FRAME_BYTES, decode
from protocols.errors import DecodeError

__all__ = [
    "HEADER_BYTES",
    "JournalCorruptError",
    "journal_files",
    "read_journal",
    "walk_records",
]

HEADER_BYTES = 4
"""Size of a record's big-endian length prefix."""


class JournalCorruptError(EngineError, DecodeError):
    """Raised by :func:`read_journal` for a record that is truncated or does not decode.

    Attributes:
        file: the journal file's path.
        offset: the byte offset of the bad record's length prefix in that file.
        path: the path of the bad value inside the frame (``$`` for the record itself).
        problem: what is wrong, without the location.
    """

    def __init__(self, problem: str, *, file: str, offset: int, path: str = "$") -> None:
        super().__init__(problem, path)
        self.file = file
        self.offset = offset
        inside = f" - at `{path}`" if path != "$" else ""
        self.args = (f"{problem}{inside} in the record at byte {offset} of {file!r}",)


def read_journal(
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    max_frame_bytes: int = MAX_FRAME_BYTES,
) -> Iterator[InboundMessage]:
    """Yield the messages of one journal file in the order they were written.

    Args:
        path: one journal file (``<path>.1`` and ``<path>`` are read separately).
        strict: raise on a torn final record (True) or end quietly at it (False).
        max_frame_bytes: the frame limit the journal was written with.

    Raises:
        JournalCorruptError: a record does not decode, has an impossible length, or
            (with ``strict``) is cut short; raised after every earlier record was yielded,
            naming the bad record's byte offset.
        OSError: the file cannot be opened or read.
    """
    name = os.fspath(path)
    with open(name, "rb") as handle:
        offset = 0
        while header := handle.read(HEADER_BYTES):
            if len(header) < HEADER_BYTES:
                if strict:
                    raise JournalCorruptError(
                        f"truncated record: {len(header)} of {HEADER_BYTES} length bytes",
                        file=name,
                        offset=offset,
                    )
                return
            length = int.from_bytes(header, "big")
            if not 1 <= length <= max_frame_bytes:
                raise JournalCorruptError(
                    f"record length {length} is outside 1..{max_frame_bytes}",
                    file=name,
                    offset=offset,
                )
            frame = handle.read(length)
            if len(frame) < length:
                if strict:
                    raise JournalCorruptError(
                        f"truncated record: {len(frame)} of {length} frame bytes",
                        file=name,
                        offset=offset,
                    )
                return
            try:
                msg = decode(frame, max_size=max_frame_bytes)
            except DecodeError as exc:
                raise JournalCorruptError(
                    exc.problem, file=name, offset=offset, path=exc.path
                ) from exc
            if not isinstance(msg, InboundMessage):
                raise JournalCorruptError(
                    f"Expected `InboundMessage`, got `{type(msg).__name__}`",
                    file=name,
                    offset=offset,
                )
            yield msg
            offset += HEADER_BYTES + length


def journal_files(path: str | os.PathLike[str]) -> list[str]:
    """The journal files of ``path`` that exist, oldest first: ``<path>.1``, ``<path>``."""
    name = os.fspath(path)
    return [p for p in (name + ".1", name) if os.path.exists(p)]


def walk_records(handle: BinaryIO, size: int, max_frame: int) -> tuple[int, int]:
    """Count whole records by their length prefixes; return (records, end of the last)."""
    count = offset = 0
    while offset + HEADER_BYTES <= size:
        handle.seek(offset)
        length = int.from_bytes(handle.read(HEADER_BYTES), "big")
        if not 1 <= length <= max_frame or offset + HEADER_BYTES + length > size:
            break
        offset += HEADER_BYTES + length
        count += 1
    return count, offset

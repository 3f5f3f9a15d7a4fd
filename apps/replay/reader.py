"""Replay sources: what every source counts, the journal's files (reading, claiming, scanning).

A source yields the messages to replay and counts what it read (:class:`_Tally`); the
replay (:mod:`apps.replay.run`) and the scans do not care where they come from. The
journal is read here (:class:`_Reader`); the intake store in :mod:`apps.replay.store`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from actors.cores._args import require_int
from actors.engine.journal import HEADER_BYTES, JournalCorruptError, journal_files
from apps.replay.report import ReplayReport
from protocols import InboundMessage
from protocols.codec import MAX_FRAME_BYTES, decode
from protocols.errors import DecodeError

__all__ = ["replay_files", "scan_journal"]


class _Tally:
    """What a source read: valid messages by account, corrupt records, problems found."""

    source = "journal"

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame = require_int("max_frame_bytes", max_frame_bytes, minimum=1)
        self.read = self.corrupt = self.torn_bytes = self.sent_skipped = 0
        self.problems: list[str] = []
        self.by_account: Counter[str] = Counter()

    def _decode(self, frame: bytes) -> tuple[InboundMessage | None, str, str]:
        """``(message, "", "$")``, or ``(None, problem, path in the frame)`` for a bad one."""
        try:
            msg = decode(frame, max_size=self.max_frame)
        except DecodeError as exc:
            return None, exc.problem, exc.path
        if isinstance(msg, InboundMessage):
            return msg, "", "$"
        return None, f"Expected `InboundMessage`, got `{type(msg).__name__}`", "$"

    def _took(self, msg: InboundMessage) -> InboundMessage:
        self.read += 1
        self.by_account[msg.account_id] += 1
        return msg

    def _skipped(self, problem: str) -> None:
        self.corrupt += 1
        self.problems.append(f"skipped: {problem}")

    def report(self, files: Iterable[str], **fields: Any) -> ReplayReport:
        """A report of what was read, with ``fields`` (a run's counts, the duration)."""
        return ReplayReport(
            files=tuple(files),
            source=self.source,
            read=self.read,
            corrupt=self.corrupt,
            torn_bytes=self.torn_bytes,
            sent_skipped=self.sent_skipped,
            problems=tuple(self.problems),
            by_account=dict(self.by_account),
            **fields,
        )


def _scan(source: _Tally, files: Iterable[str], messages: Iterator[InboundMessage]) -> ReplayReport:
    """Read every message of ``source`` and submit none (a dry run)."""
    started = time.monotonic()
    for _ in messages:
        pass
    return source.report(files, seconds=time.monotonic() - started, dry_run=True)


class _Reader(_Tally):
    """Reads journal files record by record, skipping corrupt ones and counting the damage."""

    def __init__(self, max_frame_bytes: int) -> None:
        super().__init__(max_frame_bytes)
        self.corrupt_files: set[str] = set()
        self.sizes: dict[str, int] = {}  # each file's size when it was read

    def messages(self, files: Iterable[str]) -> Iterator[InboundMessage]:
        for name in files:
            yield from self._file(name)

    def _file(self, name: str) -> Iterator[InboundMessage]:
        try:
            handle = open(name, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            self.problems.append(f"{name!r} vanished before it was read")
            return
        with handle:
            size = self.sizes[name] = os.fstat(handle.fileno()).st_size
            offset = 0
            while offset < size:
                header = handle.read(HEADER_BYTES)
                if len(header) < HEADER_BYTES:
                    what = f"truncated record: {len(header)} of {HEADER_BYTES} length bytes"
                    self._torn(what, name, offset, size)
                    return
                length = int.from_bytes(header, "big")
                if not 1 <= length <= self.max_frame:
                    what = f"record length {length} is outside 1..{self.max_frame}"
                    self._torn(what, name, offset, size)
                    return
                frame = handle.read(length)
                if len(frame) < length:
                    self._torn(
                        f"truncated record: {len(frame)} of {length} frame bytes",
                        name,
                        offset,
                        size,
                    )
                    return
                msg, problem, where = self._decode(frame)
                if msg is not None:
                    yield self._took(msg)
                else:
                    self.corrupt_files.add(name)
                    error = JournalCorruptError(problem, file=name, offset=offset, path=where)
                    self._skipped(str(error))
                offset += HEADER_BYTES + length

    def _torn(self, what: str, name: str, offset: int, size: int) -> None:
        self.torn_bytes += size - offset
        error = JournalCorruptError(what, file=name, offset=offset)
        self.problems.append(f"not replayed ({size - offset} bytes to the end): {error}")


def replay_files(
    path: str | os.PathLike[str], *, include_rotated: bool = True, claims: bool = False
) -> list[str]:
    """The files a replay of ``path`` reads, in order.

    Args:
        path: the journal (``dead_letter_path``).
        include_rotated: read ``<path>.1`` before ``<path>``.
        claims: first the ``<path>.replaying-*`` files that an interrupted consuming
            replay left, oldest first.
    """
    name = os.fspath(path)
    current = journal_files(name) if include_rotated else [name]
    return (_claims(name) if claims else []) + [f for f in current if os.path.exists(f)]


def _claims(path: str) -> list[str]:
    return sorted(glob.glob(glob.escape(path) + ".replaying-*"))


def _claim(path: str, include_rotated: bool) -> list[str]:
    """Rename the journal files to ``<path>.replaying-<stamp>-<n>``; return every claim."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    for n, name in enumerate(journal_files(path) if include_rotated else [path]):
        # A fixed-width UTC stamp sorts claims by age; n keeps .1 before the current file.
        with contextlib.suppress(FileNotFoundError):
            os.replace(name, f"{path}.replaying-{stamp}-{n}")
    return _claims(path)


def scan_journal(
    path: str | os.PathLike[str],
    *,
    include_rotated: bool = True,
    claims: bool = False,
    max_frame_bytes: int = MAX_FRAME_BYTES,
) -> ReplayReport:
    """Read and validate the journal without submitting anything (a dry run)."""
    reader = _Reader(max_frame_bytes)
    files = replay_files(path, include_rotated=include_rotated, claims=claims)
    return _scan(reader, files, reader.messages(files))

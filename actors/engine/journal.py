"""The dead-letter journal: messages abandoned at shutdown, kept so a script can resubmit them.

File format
    A journal file is a sequence of records and nothing else (no file header). A record
    is a 4-byte big-endian unsigned length ``n`` followed by ``n`` bytes: one
    ``protocols.codec.encode(InboundMessage)`` frame. The frame carries its own tag and
    schema version, so the codec's evolution rules apply to old journals unchanged.
    ``n`` is between 1 and the frame limit (``max_frame_bytes``, 64 KiB by default).

Bounds and rotation
    A file never exceeds ``max_bytes``. When the next record would take it past that, the
    file is renamed to ``<path>.1`` (replacing an older ``.1``) and a new file begins, so
    the journal never holds more than ``2 * max_bytes``. What it sheds is counted in
    :attr:`DeadLetterJournal.overflow`: a record bigger than ``max_bytes`` on its own
    (refused), and the records of a ``.1`` that a rotation replaces. Those are counted
    by walking the old ``.1``'s length prefixes just before it is replaced (reads the
    4-byte headers only; the count is remembered for a ``.1`` this object wrote), rather
    than in a sidecar file that a crash could leave out of step with its journal.

Durability and crashes
    Each :meth:`DeadLetterJournal.append` flushes and fsyncs the file (and the directory
    when a file was created or renamed) before returning. A crash mid-append can leave a
    torn final record; before its first write the journal walks its file's headers and
    cuts everything from the first record that is torn or whose length is impossible,
    counting the bytes cut in ``repaired_bytes`` and logging a warning, so later records
    are never appended behind unreadable bytes.

Privacy
    The journal holds phone numbers and message texts. Its files are created 0600 (and an
    existing one is narrowed to 0600 before the first write), whatever the umask; a missing
    directory is created 0700. An existing directory is left as it is: it is the user's.
    A rotation renames the file, so ``.1`` keeps its 0600.

Reading
    :func:`read_journal` yields the messages of one file in order. Read ``<path>.1``
    before ``<path>`` (:func:`journal_files` lists the ones that exist, oldest first).
    A torn final record raises :class:`JournalCorruptError` after every valid record has
    been yielded, or ends the iteration quietly with ``strict=False`` (it is the expected
    trace of a crash mid-write, and the writer cuts it anyway). A complete record that
    does not decode always raises, whatever ``strict`` says: its length cannot be
    trusted, so nothing after it can be read. The reader side lives in
    :mod:`actors.engine.journal_read` (its public names are re-exported here).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import BinaryIO

from loguru import logger

from actors.cores._args import require_int
from actors.engine.journal_read import (
    HEADER_BYTES,
    JournalCorruptError,
    journal_files,
    read_journal,
    walk_records,
)
from protocols.chat import InboundMessage
from protocols.codec import MAX_FRAME_BYTES, encode
from protocols.errors import EncodeError

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "HEADER_BYTES",
    "DeadLetterJournal",
    "JournalCorruptError",
    "journal_files",
    "read_journal",
]

FILE_MODE = 0o600
DIR_MODE = 0o700


class DeadLetterJournal:
    """An append-only, size-bounded file of ``InboundMessage`` records (see the module doc).

    Nothing touches the disk until the first :meth:`append`.

    Args:
        path: the journal file; the rotated file is ``path + ".1"``.
        max_bytes: the most bytes one file may hold (config ``dead_letter_max_bytes``).
        max_frame_bytes: the codec frame limit (config ``max_frame_bytes``).

    Raises:
        ValueError: ``max_bytes`` or ``max_frame_bytes`` is not an int >= 1.
    """

    __slots__ = (
        "_count",
        "_max_bytes",
        "_max_frame",
        "_overflow_oversized",
        "_overflow_rotated",
        "_path",
        "_repaired_bytes",
        "_rotated_count",
        "_rotations",
        "_size",
        "_written_bytes",
        "_written_total",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self._path = os.fspath(path)
        self._max_bytes = require_int("max_bytes", max_bytes, minimum=1)
        self._max_frame = require_int("max_frame_bytes", max_frame_bytes, minimum=1)
        # Size and record count of the current file; None until it has been walked.
        self._size: int | None = None
        self._count: int | None = None
        # Records in the .1 this object rotated out; None when unknown (walk it if needed).
        self._rotated_count: int | None = None
        self._written_total = 0
        self._written_bytes = 0
        self._rotations = 0
        self._overflow_oversized = 0
        self._overflow_rotated = 0
        self._repaired_bytes = 0

    def append(self, messages: Iterable[InboundMessage]) -> int:
        """Write one record per message, rotating at ``max_bytes``; then flush and fsync.

        Returns:
            How many messages were written. A message whose record alone is bigger than
            ``max_bytes`` is not written and is counted in :attr:`overflow`.

        Raises:
            TypeError: an item is not an ``InboundMessage`` (checked before any write).
            OSError: the file could not be written; a torn record this leaves is cut
                before the next append.
        """
        batch = list(messages)
        for index, msg in enumerate(batch):
            if not isinstance(msg, InboundMessage):
                raise TypeError(
                    f"messages[{index}] must be an InboundMessage, got {type(msg).__name__}"
                )
        written = 0
        out: BinaryIO | None = None
        dir_changed = False
        try:
            for msg in batch:
                record = self._record(msg)
                if record is None:
                    continue
                size = self._open_size()
                if size + len(record) > self._max_bytes:
                    # size > 0 here: a record over max_bytes on its own was refused above.
                    if out is not None:
                        _sync_close(out)
                        out = None
                    self._rotate()
                    size = 0
                    dir_changed = True
                if out is None:
                    dir_changed |= not os.path.exists(self._path)
                    _make_private(self._path)
                    out = open(self._path, "ab")  # noqa: SIM115 - closed below or on error
                out.write(record)
                self._size = size + len(record)
                self._count = (self._count or 0) + 1
                self._written_bytes += len(record)
                written += 1
            if out is not None:
                _sync_close(out)
                out = None
            if dir_changed:
                _sync_dir(self._path)
        except BaseException:
            # The file may now end in a torn record: walk it again before the next write.
            self._size = self._count = None
            if out is not None:
                out.close()
            raise
        finally:
            self._written_total += written
        return written

    # -- queries --------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The current journal file."""
        return self._path

    @property
    def rotated_path(self) -> str:
        """The previous journal file, ``path + ".1"``."""
        return self._path + ".1"

    @property
    def max_bytes(self) -> int:
        """The most bytes one file may hold."""
        return self._max_bytes

    @property
    def overflow(self) -> int:
        """Messages shed: refused as too big, plus records lost with a replaced ``.1``."""
        return self._overflow_oversized + self._overflow_rotated

    @property
    def written_total(self) -> int:
        """Messages written by this object."""
        return self._written_total

    @property
    def rotations(self) -> int:
        """Times the file was renamed to ``.1``."""
        return self._rotations

    @property
    def repaired_bytes(self) -> int:
        """Bytes of torn or impossible records cut from the file before appending."""
        return self._repaired_bytes

    def stats(self) -> dict[str, int | float]:
        """Counters and sizes, for ``Engine.stats()`` and the shutdown report's log line."""
        return {
            "written_total": self._written_total,
            "written_bytes": self._written_bytes,
            "rotations": self._rotations,
            "overflow": self.overflow,
            "overflow_oversized": self._overflow_oversized,
            "overflow_rotated": self._overflow_rotated,
            "repaired_bytes": self._repaired_bytes,
            "max_bytes": self._max_bytes,
        }

    # -- internals ------------------------------------------------------------------------

    def _record(self, msg: InboundMessage) -> bytes | None:
        """Encode ``msg`` as a record, or count and log it as overflow and return None."""
        log = logger.bind(account=msg.account_id, message_id=msg.message_id)
        try:
            frame = encode(msg, max_size=self._max_frame)
        except EncodeError as exc:
            self._overflow_oversized += 1
            log.warning("dead-letter journal refused a message: {}", exc)
            return None
        record = len(frame).to_bytes(HEADER_BYTES, "big") + frame
        if len(record) > self._max_bytes:
            self._overflow_oversized += 1
            log.warning(
                "dead-letter journal refused a message: its record is {} bytes, over "
                "max_bytes ({})",
                len(record),
                self._max_bytes,
            )
            return None
        return record

    def _open_size(self) -> int:
        """The current file's size, walking it (and cutting a torn tail) the first time."""
        if self._size is not None:
            return self._size
        try:
            handle = open(self._path, "r+b")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            self._size, self._count = 0, 0
            return 0
        with handle:
            size = os.fstat(handle.fileno()).st_size
            count, end = walk_records(handle, size, self._max_frame)
            if end < size:
                handle.truncate(end)
                handle.flush()
                os.fsync(handle.fileno())
                self._repaired_bytes += size - end
                logger.bind(journal=self._path).warning(
                    "dead-letter journal cut {} unreadable bytes at byte {} (a record torn "
                    "by a crash, or damage)",
                    size - end,
                    end,
                )
        self._size, self._count = end, count
        return end

    def _rotate(self) -> None:
        rotated = self.rotated_path
        if os.path.exists(rotated):
            lost = self._rotated_count
            if lost is None:
                with open(rotated, "rb") as old:
                    lost, _ = walk_records(old, os.fstat(old.fileno()).st_size, self._max_frame)
            if lost:
                self._overflow_rotated += lost
                logger.bind(journal=self._path).warning(
                    "dead-letter journal rotated: {} older messages in {!r} were dropped",
                    lost,
                    rotated,
                )
        os.replace(self._path, rotated)
        self._rotated_count = self._count
        self._size, self._count = 0, 0
        self._rotations += 1


def _make_private(path: str) -> None:
    """Create ``path`` 0600, or narrow it to 0600; create its missing directory 0700."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
        os.chmod(directory, DIR_MODE)  # makedirs' mode is filtered by the umask
    # The umask may take bits from FILE_MODE, never add any.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError as exc:
        # Someone else's file we may still write: keeping the messages matters more.
        logger.bind(journal=path).warning(
            "dead-letter journal {!r} could not be made private (0600): {}", path, exc.strerror
        )
    finally:
        os.close(fd)


def _sync_close(handle: BinaryIO) -> None:
    try:
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()


def _sync_dir(path: str) -> None:
    """Make a create or rename in ``path``'s directory durable (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

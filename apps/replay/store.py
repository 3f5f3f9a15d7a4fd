"""The intake store as a replay source: the unfinished rows of a store no engine holds.

What is read
    The rows without an outcome (``finished_at IS NULL``), in acceptance order. A row
    marked sent (``sent_at``) had its reply confirmed by the transport: it is skipped and
    counted ``sent_skipped`` (replaying it would send the customer a second reply). The
    rest are decoded with :func:`protocols.codec.decode`; a row that does not decode to
    the :class:`~protocols.InboundMessage` of its own id is skipped and counted
    ``corrupt``, naming its ``seq`` and id, and reading goes on.

Never written
    The database is opened through SQLite's URI ``file:<path>?mode=ro``: no statement of
    this tool can change it. (SQLite may still create the empty ``-wal`` and ``-shm``
    companions of a cleanly closed store to coordinate readers; they take the database
    file's mode, 0600, and the next engine opens them as its own.) The rows are read a
    page at a time, each page a short read of its own, so a replay waiting on a busy
    gateway holds no snapshot open and keeps one page in memory.

Refused while an engine holds it
    An engine holds ``flock(LOCK_EX)`` on ``<path>.lock`` while it has the store open,
    and resumes its unfinished rows itself (recovery at ``start``); replaying them too
    would process each message twice. So :func:`refuse_if_held` tries a non-blocking
    *shared* flock on the lock file: if it is refused, a live engine holds the store and
    the replay stops before reading anything (:class:`~actors.errors.StoreLockedError`,
    with the holder's pid). If it is granted, it is released at once: the check is a
    probe, not a claim. Holding it through the replay would make that engine's next start
    fail with ``StoreLockedError`` for as long as the replay runs, and would not make the
    replay safer: the rows are only read. The lock file is opened read-only and never
    created (a store without one was never opened by an engine here). A kernel lock dies
    with its holder, so a crashed engine never blocks the replay. What remains: an
    engine started on the store after the probe resumes the same messages; do not start
    one on a store being replayed (README, Failure behaviour).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator

from actors.cores._args import require_int
from actors.engine.intake_db import SCHEMA_VERSION
from actors.errors import StoreError, StoreLockedError
from apps.replay.reader import _scan, _Tally
from apps.replay.report import ReplayReport
from protocols import InboundMessage
from protocols.codec import MAX_FRAME_BYTES

__all__ = ["StoreSource", "refuse_if_held", "scan_store"]

PAGE_ROWS = 500
"""Unfinished rows read per query."""
_PAGE_SQL = (
    "SELECT seq, message_id, message, sent_at FROM intake"
    " WHERE finished_at IS NULL AND seq > ? ORDER BY seq LIMIT ?"
)
"""Recovery's scan (``intake.UNFINISHED_SQL``) a page at a time: the same partial index of
unfinished rows, walked from the last ``seq`` read."""


def refuse_if_held(path: str | os.PathLike[str]) -> None:
    """Refuse a store whose lock a live engine holds; hold no lock after the call.

    Args:
        path: the store's database file (``intake_path``).

    Raises:
        StoreLockedError: a live engine holds the store (names the path and its pid).
        StoreError: the lock file exists but cannot be opened.
    """
    db = os.path.abspath(os.fspath(path))
    lock = db + ".lock"
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return  # no engine ever opened the store here: nobody to share it with
    except OSError as exc:
        raise StoreError(
            f"cannot check the intake store's lock file {lock!r}: {exc.strerror}", path=db
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            holder = "" if pid is None else f" (pid {pid})"
            raise StoreLockedError(
                f"the intake store {db!r} is held by a live engine{holder}, which resumes "
                f"its unfinished messages itself; replay a store only when no engine has it "
                f"open (stop that engine, or let it finish them)",
                path=db,
                pid=pid,
            ) from None
        fcntl.flock(fd, fcntl.LOCK_UN)  # a probe, not a claim (module docstring)
    finally:
        os.close(fd)


def _holder(fd: int) -> int | None:
    """The pid the lock's holder wrote into the lock file (``intake_files.StoreLock``)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


class StoreSource(_Tally):
    """The unfinished, unsent messages of the intake store at ``path``, read-only.

    Checks the lock (:func:`refuse_if_held`) and opens the database; :meth:`close` it.

    Args:
        path: the store's database file.
        max_frame_bytes: the codec frame limit the store was written with.
        page_rows: rows per query.

    Raises:
        StoreLockedError: a live engine holds the store.
        StoreError: there is no store at ``path``, or it is unreadable, not an intake
            store, or from a newer schema (names the path).
    """

    source = "store"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        page_rows: int = PAGE_ROWS,
    ) -> None:
        super().__init__(max_frame_bytes)
        self.path = os.path.abspath(os.fspath(path))
        self._page_rows = require_int("page_rows", page_rows, minimum=1)
        if not os.path.isfile(self.path):
            raise StoreError(f"there is no intake store at {self.path!r}", path=self.path)
        refuse_if_held(self.path)
        self._conn = _open_read_only(self.path)

    def messages(self) -> Iterator[InboundMessage]:
        """Yield the unfinished rows' messages in acceptance order, counting the rest.

        Raises:
            StoreError: a query failed (names the path).
        """
        after = 0
        while rows := self._page(after):
            for seq, message_id, frame, sent_at in rows:
                after = seq
                if sent_at is not None:
                    self.sent_skipped += 1
                    continue
                msg, problem, where = self._decode(bytes(frame))
                if msg is not None and msg.message_id == message_id:
                    yield self._took(msg)
                    continue
                if msg is not None:  # a frame filed under another message's id
                    problem = f"the frame holds message {msg.message_id!r}"
                inside = f" - at `{where}`" if where != "$" else ""
                self._skipped(
                    f"{problem}{inside} in row {seq} ({message_id!r}) of the intake store "
                    f"{self.path!r}"
                )

    def close(self) -> None:
        self._conn.close()

    def _page(self, after: int) -> list[tuple[int, str, bytes, float | None]]:
        try:
            return self._conn.execute(_PAGE_SQL, (after, self._page_rows)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot read the intake store {self.path!r}: {exc}", path=self.path
            ) from None


def _open_read_only(path: str) -> sqlite3.Connection:
    uri = f"file:{urllib.parse.quote(path)}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the intake store {path!r}: {exc}", path=path) from None
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(
            f"the intake store {path!r} cannot be read: {exc} (a corrupt or foreign file?)",
            path=path,
        ) from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise StoreError(
            f"the intake store {path!r} has schema version {version}, newer than this "
            f"replay's {SCHEMA_VERSION}; run the version that wrote it",
            path=path,
        )
    if version != SCHEMA_VERSION or "intake" not in tables:
        conn.close()
        raise StoreError(
            f"{path!r} is not an intake store (schema version {version}, tables {sorted(tables)})",
            path=path,
        )
    return conn


def scan_store(
    path: str | os.PathLike[str], *, max_frame_bytes: int = MAX_FRAME_BYTES
) -> ReplayReport:
    """Read and validate the store's unfinished rows without submitting anything.

    Raises:
        StoreLockedError, StoreError: as :class:`StoreSource`.
    """
    source = StoreSource(path, max_frame_bytes=max_frame_bytes)
    try:
        return _scan(source, [source.path], source.messages())
    finally:
        source.close()

"""The durable intake store: every accepted message, kept until (and a while after) its outcome.

The facade records a message here before ``submit_many`` returns ``Accepted`` (so before
the gateway answers 200), its outcome when it ends, and a reply once the transport
confirms it sent. After a crash, :meth:`IntakeStore.unfinished` gives back what to admit
again; :meth:`IntakeStore.seen` rejects redeliveries across restarts.

Durability (``durability``; SQLite in WAL mode)
    ``"fsync"``  ``synchronous=FULL``: every commit fsyncs the write-ahead log before it
        returns, so a committed batch survives a process crash, an OS crash and a power
        loss (as far as the storage honours fsync).
    ``"os"``  ``synchronous=NORMAL``: a commit is written to the WAL (the OS page cache)
        before it returns, but the WAL is fsynced only at checkpoints. SQLite's own rule:
        committed transactions survive an application crash (SIGKILL, OOM kill) whatever
        the synchronous setting; after an OS crash or power loss the database is still
        consistent (never corrupt) but the most recent commits may be rolled back.
    ``"off"``  no file at all: an in-memory database with the same API and bounds, for
        benchmarks and tests. Nothing survives the process.

Writes and commits
    Each write call (:meth:`record_accepted`, :meth:`record_outcomes`, :meth:`record_sent`,
    :meth:`prune`) is one transaction: one commit (one fsync in ``"fsync"`` mode) however
    many rows it writes. ``with store.batch():`` makes the writes inside it share the
    outermost block's one commit; nothing in a batch is durable before that block exits.
    A database error inside a batch dooms it: the outermost exit rolls everything back and
    raises :class:`StoreError`. A refusal raised before anything is written
    (:class:`StoreFullError`, an ``EncodeError``) leaves the batch usable. A lock
    serialises calls (a batch holds it until it exits), so any thread may use the store.

Bounds
    At most ``max_records`` rows, finished or not (the count is kept in memory; one
    ``COUNT(*)`` at open). :meth:`room` says how many more fit; :meth:`record_accepted`
    refuses a batch that does not fit with :class:`StoreFullError`, writing nothing, so a
    full store refuses (``capacity``) and never drops. Finished rows are kept at least
    ``retention_s`` after their outcome (the dedupe horizon: WhatsApp redelivers a
    webhook for up to 7 days) *or until the store is full*, whichever comes first:
    :meth:`prune` deletes at most ``budget`` of the oldest past the retention per call, and
    :meth:`make_room` deletes the oldest finished ones early when room is short (which
    shortens the dedupe horizon, counted ``evicted``), both through an index, so no call's
    pause grows with the store. Only unfinished records filling it refuse new messages.

    SQLite's automatic checkpoint (every ~1,000 WAL pages, inside a commit) copies the WAL
    back into the database file: a periodic pause bounded by the WAL size, not the store's.

The connection, the schema and the transactions: :mod:`actors.engine.intake_db`; the
directory, the file modes and the lock: :mod:`actors.engine.intake_files`; the bounds (room,
the refusal when full, :meth:`IntakeStore.prune`, :meth:`IntakeStore.make_room`):
:mod:`actors.engine.intake_bounds`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from actors.config.keys import DURABILITIES
from actors.cores._args import require_int, require_number
from actors.engine.intake_bounds import PRUNE_SQL, IntakeBounds
from actors.engine.intake_db import MEMORY, SCHEMA_VERSION, Database, connect
from actors.engine.intake_files import (
    StoreLock,
    ensure_private_dir,
    forget_in_children,
    make_private,
)
from actors.errors import StoreError
from protocols.chat import InboundMessage, Outcome, Status
from protocols.codec import MAX_FRAME_BYTES, decode, encode
from protocols.errors import DecodeError

__all__ = [
    "DURABILITIES",
    "PRUNE_SQL",
    "SCHEMA_VERSION",
    "UNFINISHED_SQL",
    "IntakeStore",
    "Unfinished",
]

_CHUNK = 500  # ids per IN (...) query: far below SQLite's bound-parameter limit
UNFINISHED_SQL = (
    "SELECT message_id, message, deadline, sent_at, reply, accepted_at FROM intake"
    " WHERE finished_at IS NULL ORDER BY seq"
)
"""Recovery's scan: the partial index of unfinished rows, in acceptance order."""
_COUNTERS = (
    "records", "unfinished", "commits", "accepted", "finished", "sent", "pruned", "evicted",
)  # fmt: skip


class Unfinished(NamedTuple):
    """A recorded message without an outcome, as :meth:`IntakeStore.unfinished` returns it."""

    message: InboundMessage
    deadline: float
    sent_at: float | None
    """When the transport confirmed the reply; not None means: do not send it again."""
    reply: str | None
    accepted_at: float


class IntakeStore(IntakeBounds):
    """Accepted messages and their outcomes in SQLite; see the module docstring.

    Build one with :meth:`open`; :meth:`close` it (or use it as a context manager).
    """

    def __init__(
        self,
        db: Database,
        *,
        durability: str,
        lock: StoreLock | None,
        retention_s: float,
        max_records: int,
        clock: Callable[[], float],
        max_frame_bytes: int,
    ) -> None:
        self._db = db
        self.path = db.path
        self.durability = durability
        self.retention_s = retention_s
        self.max_records = max_records
        self._lock_file = lock
        self._clock = clock
        self._max_frame = max_frame_bytes
        self._refused_full = 0  # not in db.counts, which a rollback restores: a refusal stays
        try:
            db.counts["records"] = self._count("")
            db.counts["unfinished"] = self._count(" WHERE finished_at IS NULL")
        except StoreError:
            db.close()
            raise
        forget_in_children(self)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: str,
        retention_s: float,
        max_records: int,
        clock: Callable[[], float] = time.time,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> IntakeStore:
        """Open (creating if missing) the store at ``path`` and take its lock.

        Args:
            path: the database file; its directory is created 0700 if missing. Ignored
                (no file, no lock) when ``durability`` is ``"off"``.
            durability: ``"fsync"``, ``"os"`` or ``"off"`` (module docstring;
                ``EngineConfig.durability``).
            retention_s: how long a finished record is kept (the dedupe horizon).
            max_records: the most records kept, finished or not.
            clock: the time source for calls that are given no ``now``.
            max_frame_bytes: the codec frame limit for the stored messages.

        Raises:
            ValueError: a bad ``durability``, ``retention_s`` or ``max_records``.
            StoreLockedError: another engine holds the store (names the path and pid).
            StoreError: the directory is not private, or the file is unreadable, corrupt,
                not an intake store or from a newer schema (names the path).
        """
        if durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {DURABILITIES}, got {durability!r}")
        require_number("retention_s", retention_s, minimum=0)
        require_int("max_records", max_records, minimum=1)
        require_int("max_frame_bytes", max_frame_bytes, minimum=1024)
        settings: dict[str, Any] = {
            "durability": durability, "retention_s": retention_s, "max_records": max_records,
            "clock": clock, "max_frame_bytes": max_frame_bytes,
        }  # fmt: skip
        if durability == "off":
            return cls(Database(connect(MEMORY, durability), MEMORY, _COUNTERS), lock=None,
                       **settings)  # fmt: skip
        db = os.path.abspath(os.fspath(path))
        ensure_private_dir(os.path.dirname(db), db_path=db)
        lock = StoreLock(db)
        try:
            make_private(db, create=True)  # before SQLite: its -wal and -shm copy the mode
            store = cls(Database(connect(db, durability), db, _COUNTERS), lock=lock, **settings)
        except BaseException:
            lock.release()
            raise
        try:
            make_private(db, create=False)  # the -wal and -shm exist now: check them
        except BaseException:
            store.close()
            raise
        return store

    # --- writes -------------------------------------------------------------------------

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Share one commit among every write inside the block (nesting: the outermost).

        Raises:
            StoreError: the commit failed, or a write inside failed with a database
                error; everything written in the block is rolled back.
        """
        return self._db.batch()

    def record_accepted(
        self, items: Sequence[tuple[InboundMessage, float]], now: float | None = None
    ) -> int:
        """Record accepted messages with their deadlines, in one transaction.

        An id already recorded keeps its row (its first acceptance wins) and takes no room.

        Returns:
            How many rows were added.

        Raises:
            StoreFullError: the new ids do not fit in :meth:`room`; nothing is written.
            EncodeError: a message's frame is over ``max_frame_bytes``; nothing is written.
            StoreError: the write or the commit failed.
        """
        at = self._now(now)
        rows = [
            (m.message_id, m.account_id, m.customer_id,
             encode(m, max_size=self._max_frame), at, require_number("deadline", d))
            for m, d in items
        ]  # fmt: skip
        if not rows:
            return 0
        with self._db.mutex:
            self._check_room([r[0] for r in rows])
            with self.batch():
                added = self._db.execute(
                    "INSERT OR IGNORE INTO intake (message_id, account_id, customer_id,"
                    " message, accepted_at, deadline) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                    many=True,
                ).rowcount
                self._db.bump(records=added, unfinished=added, accepted=added)
        return added

    def record_outcomes(self, outcomes: Iterable[Outcome], now: float | None = None) -> int:
        """Finish the rows of ``outcomes``, in one transaction.

        A finished row keeps its first outcome; unknown ids are ignored. An ``abandoned``
        outcome leaves its row unfinished: abandoned at shutdown is not an end, the
        message resumes at the next start.

        Returns:
            How many rows were finished.

        Raises:
            StoreError: the write or the commit failed.
        """
        at = self._now(now)
        rows = [
            (o.status, o.reason, at, o.reply, o.message_id)
            for o in outcomes
            if o.status != Status.ABANDONED
        ]
        if not rows:
            return 0
        with self.batch():
            done = self._db.execute(
                "UPDATE intake SET status = ?, reason = ?, finished_at = ?,"
                " reply = coalesce(reply, ?) WHERE message_id = ? AND finished_at IS NULL",
                rows,
                many=True,
            ).rowcount
            self._db.bump(unfinished=-done, finished=done)
        return done

    def record_sent(self, replies: Iterable[tuple[str, str]], now: float | None = None) -> int:
        """Record ``(message_id, reply text)`` pairs the transport confirmed sent.

        Recovery then does not send them again (``Unfinished.sent_at`` is set). The first
        confirmation of a message wins; unknown ids are ignored.

        Returns:
            How many rows were marked sent.

        Raises:
            StoreError: the write or the commit failed.
        """
        at = self._now(now)
        rows = [(at, reply, message_id) for message_id, reply in replies]
        if not rows:
            return 0
        with self.batch():
            sent = self._db.execute(
                "UPDATE intake SET sent_at = ?, reply = ? WHERE message_id = ? AND sent_at IS NULL",
                rows,
                many=True,
            ).rowcount
            self._db.bump(sent=sent)
        return sent

    # --- reads --------------------------------------------------------------------------

    def seen(self, message_ids: Iterable[str]) -> set[str]:
        """Return the ids among ``message_ids`` that have a record (finished or not)."""
        ids = list(dict.fromkeys(message_ids))
        found: set[str] = set()
        with self._db.mutex:
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT message_id FROM intake WHERE message_id IN ({marks})"
                found.update(row[0] for row in self._db.execute(sql, chunk).fetchall())
        return found

    def unfinished(self, limit: int | None = None) -> list[Unfinished]:
        """Return the records without an outcome, in acceptance order (for recovery).

        Raises:
            StoreError: a stored message does not decode (names the path and the id).
        """
        sql = UNFINISHED_SQL + (
            "" if limit is None else f" LIMIT {require_int('limit', limit, minimum=0)}"
        )
        with self._db.mutex:
            rows = self._db.execute(sql).fetchall()
        return [
            Unfinished(self._decode(mid, blob), deadline, sent_at, reply, accepted_at)
            for mid, blob, deadline, sent_at, reply, accepted_at in rows
        ]

    def stats(self) -> dict[str, int]:
        """Return the store's counters.

        ``records``, ``unfinished``, ``room``, ``db_bytes`` (database and WAL files), and
        since open: ``commits``, ``accepted``, ``finished``, ``sent``, ``pruned``,
        ``evicted`` (deleted early by :meth:`make_room`), ``refused_full`` (new messages
        :meth:`record_accepted` refused: the store was full).
        """
        with self._db.mutex:
            return {
                **self._db.counts,
                "room": self.room(),
                "db_bytes": self._db.file_bytes(),
                "refused_full": self._refused_full,
            }

    # --- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the database and release the lock (idempotent)."""
        with self._db.mutex:
            self._db.close()
            if self._lock_file is not None:
                self._lock_file.release()

    def __enter__(self) -> IntakeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _after_fork_in_child(self) -> None:
        self._db.forget_in_child()

    # --- internals ----------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else require_number("now", now)

    def _count(self, where: str) -> int:
        return int(self._db.execute(f"SELECT count(*) FROM intake{where}").fetchone()[0])

    def _decode(self, message_id: str, blob: bytes) -> InboundMessage:
        try:
            msg: object = decode(blob, max_size=self._max_frame)
        except DecodeError as exc:
            msg = exc
        if not isinstance(msg, InboundMessage):
            raise StoreError(
                f"the intake store {self.path!r} holds an unreadable message {message_id!r}: {msg}",
                path=self.path,
            )
        return msg

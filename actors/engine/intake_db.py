"""The intake store's SQLite plumbing: pragmas, the versioned schema, grouped transactions.

:class:`Database` owns the connection. Its :meth:`Database.batch` nests: only the
outermost block begins and commits, so writes inside share one commit; counters kept
beside the data (``counts``) are restored when a batch rolls back, so they never count
rows that were not committed. A database error inside a batch dooms it (its outermost
exit rolls back and raises), even when the caller caught the error and went on.

Schema version 1 (``PRAGMA user_version``): one row per accepted message: ``message_id``
(unique), ``account_id``, ``customer_id``, ``message`` (a ``protocols.codec.encode``
frame), ``accepted_at``, ``deadline``; once finished ``status``, ``reason``,
``finished_at``; ``sent_at`` and ``reply`` once the transport confirmed the reply. ``seq``
(AUTOINCREMENT, never reused) keeps acceptance order for recovery. Two partial indexes
serve the only scans: unfinished rows by ``seq`` (recovery, the unfinished count) and
finished rows by ``finished_at`` (pruning the oldest first, a LIMITed step at a time).
A later version adds an upgrade step here and bumps :data:`SCHEMA_VERSION`; a store
with a newer version than this code knows is refused, never guessed at.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

from actors.errors import StoreError

__all__ = ["MEMORY", "SCHEMA_VERSION", "SYNCHRONOUS", "Database", "connect"]

SCHEMA_VERSION = 1
MEMORY = ":memory:"
SYNCHRONOUS = {"fsync": "FULL", "os": "NORMAL", "off": "OFF"}
"""``PRAGMA synchronous`` per durability (see :mod:`actors.engine.intake`)."""

WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""``journal_size_limit``: the -wal file is truncated to this after a checkpoint, so it
does not stay at its high-water mark."""

_SCHEMA = """
CREATE TABLE intake (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    message BLOB NOT NULL,
    accepted_at REAL NOT NULL,
    deadline REAL NOT NULL,
    status TEXT,
    reason TEXT,
    finished_at REAL,
    sent_at REAL,
    reply TEXT
);
CREATE INDEX intake_unfinished ON intake(seq) WHERE finished_at IS NULL;
CREATE INDEX intake_finished ON intake(finished_at) WHERE finished_at IS NOT NULL;
"""


_PINNED: list[sqlite3.Connection] = []  # connections a forked child must never close


class Database:
    """One SQLite connection, used under a lock, with nested batches and counters.

    Args:
        conn: from :func:`connect`.
        path: the database file, named in errors (:data:`MEMORY` for none).
        counters: names of the counters kept in :attr:`counts`, all starting at 0.
    """

    def __init__(self, conn: sqlite3.Connection, path: str, counters: tuple[str, ...]) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self.mutex = threading.RLock()
        self.counts = dict.fromkeys(counters, 0)
        self._saved = dict(self.counts)
        self._depth = 0
        self._doomed: StoreError | None = None
        self._opener_pid = os.getpid()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for every write inside (nested blocks share the outermost).

        Raises:
            StoreError: BEGIN or COMMIT failed, or a statement inside failed; everything
                written in the outermost block is rolled back and its counts restored.
        """
        with self.mutex:
            if self._depth == 0:
                self.execute("BEGIN IMMEDIATE")
                self._saved, self._doomed = dict(self.counts), None
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._rollback()
                raise
            self._depth -= 1
            if self._depth == 0:
                try:
                    if self._doomed is not None:
                        raise self._doomed
                    self.execute("COMMIT")
                except StoreError:
                    self._rollback()
                    raise
                self.counts["commits"] += 1

    def execute(self, sql: str, params: Any = (), *, many: bool = False) -> sqlite3.Cursor:
        """Run one statement (``many``: once per parameter tuple); hold :attr:`mutex`.

        Raises:
            StoreError: the database is closed or inherited by a fork, or SQLite failed.
        """
        if self._conn is None:
            how = "closed" if os.getpid() == self._opener_pid else "inherited by a fork"
            raise StoreError(f"the intake store {self.path!r} is {how}", path=self.path)
        try:
            return self._conn.executemany(sql, params) if many else self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            error = StoreError(f"cannot use the intake store {self.path!r}: {exc}", path=self.path)
            if self._depth:
                self._doomed = error
            raise error from None

    def bump(self, **deltas: int) -> None:
        for name, delta in deltas.items():
            self.counts[name] += delta

    def file_bytes(self) -> int:
        """Bytes the database takes: its file and its -wal, or its pages in memory."""
        if self.path == MEMORY:
            pages = self.execute("PRAGMA page_count").fetchone()[0]
            return int(pages * self.execute("PRAGMA page_size").fetchone()[0])
        size = 0
        for name in (self.path, self.path + "-wal"):
            with contextlib.suppress(OSError):
                size += os.stat(name).st_size
        return size

    def close(self) -> None:
        with self.mutex:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def forget_in_child(self) -> None:
        """In a forked child: drop the connection without closing it.

        Closing it would be worse than leaking it: in WAL mode the last connection's close
        checkpoints and may delete the -wal file under the parent that still uses it.
        """
        if self._conn is not None:
            _PINNED.append(self._conn)
            self._conn = None

    def _rollback(self) -> None:
        self.counts = self._saved
        if self._conn is not None and self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")


def connect(path: str, durability: str) -> sqlite3.Connection:
    """Open ``path`` (:data:`MEMORY` for ``"off"``), set its pragmas, create or check the schema.

    The connection is in autocommit mode (``isolation_level=None``): the store issues
    BEGIN and COMMIT itself. It may be used from any thread; the store serialises calls.

    Raises:
        StoreError: the file is unreadable, corrupt, not an intake store, or from a newer
            schema; the message names the path. The connection is closed.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        _prepare(conn, path, durability)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(
            f"the intake store {path!r} cannot be opened: {exc} (a corrupt or foreign "
            f"file? move it away to start with an empty store)",
            path=path,
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: str, durability: str) -> None:
    if durability != "off":
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(
                f"the intake store {path!r} cannot use WAL mode (got {mode!r})", path=path
            )
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        conn.execute("PRAGMA fullfsync = ON")  # macOS: fsync alone does not reach the disk
    conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[durability]}")
    conn.execute("PRAGMA busy_timeout = 5000")  # a reader (the replay tool) may checkpoint
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version == 0 and not tables:
        # One transaction; executescript commits anything pending, so BEGIN is inside it.
        conn.executescript(
            f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
        )
    elif version > SCHEMA_VERSION:
        raise StoreError(
            f"the intake store {path!r} has schema version {version}, newer than this "
            f"engine's {SCHEMA_VERSION}; run the engine version that wrote it",
            path=path,
        )
    elif version != SCHEMA_VERSION or "intake" not in tables:
        raise StoreError(
            f"{path!r} is an SQLite database but not an intake store (schema version "
            f"{version}, tables {sorted(tables)})",
            path=path,
        )

"""Sent marks: an account process records "this reply went out" in the engine's intake store.

The intake store (:mod:`actors.engine.intake`) belongs to the facade, in the embedding
process; account actors run in processes of their own. A reply is recorded as sent as
soon as the transport confirms it, so that recovery after a crash does not send it again
(``Unfinished.sent_at``). :class:`SentMarks` is the account's side of that: its own
connection to the same SQLite file (WAL mode lets several processes use one database;
a writer waits up to ``busy_timeout`` for another's commit), opened lazily in the account
process itself: a connection must never cross a fork (the store's fork hook drops an
inherited one), and an account that never sends never opens the file.

It opens an existing store only (``mode=rw``: no file is created, no schema either) and
takes no lock: the facade holds the store's lock. Marks are committed with
``synchronous = NORMAL`` whatever the store's ``durability`` (``"off"``: the store is in
the facade's memory and there is nothing to mark): a mark survives any process crash; only
a power loss or OS crash can undo the last ones, and what that costs is a reply sent again,
never a message lost. With ``FULL`` every account process fsynced the shared WAL on each
turn, which took a fifth of the engine's throughput (``scripts/run --durability-compare``).

The window that remains: between the transport's confirmation (the Graph API's answer)
and this commit, a crash forgets the send, and recovery sends the reply again. The Cloud
API has no idempotency key, so no design on this side closes it; it is kept short (the
mark is the account's next step after the answer, before the delivery report).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable

from actors.engine.intake_db import SCHEMA_VERSION
from actors.engine.intake_files import forget_in_children
from actors.errors import StoreError

__all__ = ["BUSY_TIMEOUT_MS", "MARK_SQL", "SentMarks"]

MARKS_SYNCHRONOUS = "NORMAL"
"""Sent marks survive a process crash; a power loss may undo the last (a reply sent again)."""

BUSY_TIMEOUT_MS = 10_000
"""How long a mark waits for another process's write transaction (the facade's commits)."""

MARK_SQL = "UPDATE intake SET sent_at = ?, reply = ? WHERE message_id = ? AND sent_at IS NULL"
"""The same statement as ``IntakeStore.record_sent``: the first confirmation wins."""


class SentMarks:
    """Record confirmed sends in the intake store at ``path``, from another process.

    Args:
        path: the store's database file (absolute: actor processes share no cwd promise).
        durability: the engine's ``durability``; ``"off"`` marks nothing.
        clock: the time source for ``sent_at``.
    """

    def __init__(
        self, path: str, durability: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.durability = durability
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self.marked = 0
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self.durability != "off"

    def mark(self, replies: Iterable[tuple[str, str]]) -> int:
        """Record ``(message_id, reply text)`` pairs as sent, in one transaction.

        Returns:
            How many records were marked (ids unknown to the store, or marked before, are
            left alone).

        Raises:
            StoreError: the store cannot be opened or written (names the path). The caller
                has sent the replies already: it should log and carry on.
        """
        at = self._clock()
        rows = [(at, reply, message_id) for message_id, reply in replies]
        if not rows or not self.enabled:
            return 0
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                marked = conn.executemany(MARK_SQL, rows).rowcount
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self.failures += 1
            raise StoreError(
                f"cannot mark replies sent in the intake store {self.path!r}: {exc}",
                path=self.path,
            ) from None
        self.marked += marked
        return marked

    def close(self) -> None:
        """Close the connection (idempotent); the next :meth:`mark` opens it again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        uri = f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=rw"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            self.failures += 1
            raise StoreError(
                f"cannot open the intake store {self.path!r} to mark replies sent: {exc}",
                path=self.path,
            ) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA synchronous = {MARKS_SYNCHRONOUS}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path!r} is not an intake store of schema version {SCHEMA_VERSION} "
                    f"(it has {version}); replies are not marked sent",
                    path=self.path,
                )
        except sqlite3.Error as exc:
            conn.close()
            self.failures += 1
            raise StoreError(
                f"cannot prepare the intake store {self.path!r} to mark replies sent: {exc}",
                path=self.path,
            ) from None
        except BaseException:
            conn.close()
            self.failures += 1
            raise
        self._conn = conn
        forget_in_children(self)
        return conn

    def _after_fork_in_child(self) -> None:
        # Never close an inherited connection, not even by garbage collection
        # (intake_db.Database.forget_in_child says why): keep it referenced.
        if self._conn is not None:
            _PINNED.append(self._conn)
            self._conn = None


_PINNED: list[sqlite3.Connection] = []  # connections a forked child must never close

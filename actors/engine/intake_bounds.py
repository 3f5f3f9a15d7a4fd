"""The intake store's bounds: its room, the refusal when full, pruning and making room.

:class:`IntakeBounds` is a mixin of :class:`actors.engine.intake.IntakeStore`; the rules it
keeps are the "Bounds" section of that module's docstring. At most ``max_records`` rows,
finished or not: :meth:`IntakeBounds.room` says how many more fit, a batch that does not
fit is refused whole (:class:`StoreFullError`), :meth:`IntakeBounds.prune` deletes finished
rows past ``retention_s`` and :meth:`IntakeBounds.make_room` deletes the oldest finished
ones early. Both deletions walk the partial ``finished_at`` index (:data:`PRUNE_SQL`), so
no call's pause grows with the store; unfinished rows are never deleted.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Protocol

from actors.cores._args import require_int
from actors.engine.intake_db import Database
from actors.errors import StoreFullError

__all__ = ["PRUNE_SQL", "IntakeBounds"]

PRUNE_SQL = (
    "DELETE FROM intake WHERE seq IN (SELECT seq FROM intake WHERE finished_at IS NOT NULL"
    " AND finished_at < ? ORDER BY finished_at LIMIT ?)"
)
"""One pruning step: its subquery walks the partial ``finished_at`` index, oldest first."""


class _Store(Protocol):
    """What the mixin needs of the store it is mixed into (``IntakeStore``)."""

    _db: Database
    _refused_full: int
    path: str
    retention_s: float
    max_records: int

    def batch(self) -> contextlib.AbstractContextManager[None]: ...

    def seen(self, message_ids: Iterable[str]) -> set[str]: ...

    def room(self) -> int: ...

    def _now(self, now: float | None) -> float: ...


class IntakeBounds:
    """The bounds side of :class:`~actors.engine.intake.IntakeStore` (a mixin)."""

    def prune(self: _Store, now: float | None = None, budget: int = 500) -> int:
        """Delete at most ``budget`` finished records older than ``retention_s``.

        One transaction; the oldest go first, found through the ``finished_at`` index, so
        a call costs O(budget * log n) whatever the store holds. Call it periodically.

        Returns:
            How many records were deleted (less than ``budget``: nothing more is due).

        Raises:
            StoreError: the write or the commit failed.
        """
        require_int("budget", budget, minimum=1)
        cutoff = self._now(now) - self.retention_s
        with self.batch():
            gone = self._db.execute(PRUNE_SQL, (cutoff, budget)).rowcount
            self._db.bump(records=-gone, pruned=gone)
        return gone

    def make_room(self: _Store, needed: int, budget: int = 5_000) -> int:
        """Delete the oldest finished records, retention or not, until ``needed`` more fit.

        One transaction, at most ``budget`` deletions, oldest outcome first (the same index
        walk as :meth:`prune`). Unfinished records are never deleted: when they fill the
        store, :meth:`room` stays short and new messages are refused.

        Returns:
            How many records were deleted (counted ``evicted``: their dedupe horizon was
            shorter than ``retention_s``).

        Raises:
            StoreError: the write or the commit failed.
        """
        require_int("budget", budget, minimum=1)
        require_int("needed", needed, minimum=0)
        with self._db.mutex:
            short = min(budget, needed - self.room())
            if short <= 0:
                return 0
            with self.batch():
                gone = self._db.execute(PRUNE_SQL, (math.inf, short)).rowcount
                self._db.bump(records=-gone, evicted=gone)
        return gone

    def room(self: _Store) -> int:
        """How many more records fit under ``max_records`` right now."""
        return max(0, self.max_records - self._db.counts["records"])

    @property
    def full(self: _Store) -> bool:
        return self.room() == 0

    def _check_room(self: _Store, ids: list[str]) -> None:
        room = self.room()
        if len(ids) <= room:
            return
        new = set(ids) - self.seen(ids)
        if len(new) > room:
            self._refused_full += len(new)
            records = self._db.counts["records"]
            raise StoreFullError(
                f"the intake store {self.path!r} is full: {records} records, the limit is "
                f"intake_max_records = {self.max_records}; {len(new)} new messages do not fit",
                path=self.path,
                records=records,
                limit=self.max_records,
            )

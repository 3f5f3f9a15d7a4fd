"""Per-recipient sliding-window send log: how often may we message this user right now?

This is the memory-safe replacement of the seed's ``messageQueue: Map<recipient,
entries[]>``. The seed capped the map at ``MAX_QUEUE_RECIPIENTS`` (10,000) recipients with
``MAX_QUEUE_SIZE_PER_RECIPIENT`` (100) entries each and scanned the whole map every
``QUEUE_CLEANUP_INTERVAL`` (5 minutes). Here the same bounds hold, and the full scan becomes
:meth:`RecipientRateLog.sweep`, which does a bounded amount of work per timer tick.

WhatsApp's pair rate limit is about one message per 6 s to the same user with short
bursts allowed (error 131056 when exceeded); the engine's default of 10 sends per 60 s
window approximates that.

Time is injected: every call takes ``now`` in seconds. Callers promise a non-decreasing
clock; equal times are normal. A ``now`` earlier than one already seen is treated as the
latest time seen, so a clock that steps back can neither reorder the log (which the sweep
relies on) nor reopen a window early.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from actors.cores._args import require_int, require_number
from actors.cores._lru import LruMap

__all__ = ["RateDecision", "RecipientRateLog", "sweep_budget_for"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RateDecision:
    """Whether a send to a recipient may go out now, and if not, from when.

    Attributes:
        allowed: True when the send fits in the recipient's window.
        retry_at: when not allowed, the earliest ``now`` at which it would be; else None.
    """

    allowed: bool
    retry_at: float | None = None

    def __post_init__(self) -> None:
        if self.allowed != (self.retry_at is None):
            raise ValueError(
                f"retry_at must be None exactly when allowed, got allowed={self.allowed!r} "
                f"and retry_at={self.retry_at!r}"
            )


# One shared instance: "allowed" is the common answer and carries no data.
_ALLOWED = RateDecision(allowed=True)


def sweep_budget_for(max_recipients: int, cleanup_interval_s: float, tick_s: float) -> int:
    """Return the sweep budget per timer tick that covers every recipient once per interval.

    With ``cleanup_interval_s / tick_s`` ticks per interval, ``ceil(max_recipients * tick_s /
    cleanup_interval_s)`` recipients per tick add up to at least ``max_recipients``: a full
    pass fits in the seed's cleanup interval. The seed's numbers (10,000 recipients, 300 s,
    1 s tick) give 34.

    Raises:
        ValueError: if ``max_recipients`` is not an int >= 1, or either duration (in
            seconds) is not a finite number > 0.
    """
    require_int("max_recipients", max_recipients, minimum=1)
    require_number("cleanup_interval_s", cleanup_interval_s, minimum=0, min_exclusive=True)
    require_number("tick_s", tick_s, minimum=0, min_exclusive=True)
    return max(1, math.ceil(max_recipients * tick_s / cleanup_interval_s))


class RecipientRateLog:
    """Sliding-window log of sends per recipient, bounded in recipients and entries.

    Each recipient keeps the times of its recent sends, oldest first. An entry recorded at
    ``t`` is expired once ``now >= t + window_s``. A send is allowed while fewer than
    ``allowance`` entries are live.

    Recipients are kept in least-recently-recorded order. That order is also the order of
    each recipient's newest entry (entries are appended at a non-decreasing ``now``), which
    is what lets :meth:`sweep` stop early; see there.

    Args:
        max_recipients: the most recipients remembered (seed: 10,000); recording a new one
            beyond it forgets the least recently recorded recipient.
        max_entries_per_recipient: the most entries kept per recipient (seed: 100); a
            further record drops that recipient's oldest entry.
        window_s: the sliding window in seconds (engine default 60.0).
        allowance: sends allowed per window per recipient (engine default 10), at most
            ``max_entries_per_recipient`` so that a full window is always remembered.

    Raises:
        ValueError: naming the argument, its value and the rule it breaks.
    """

    __slots__ = (
        "_allowance",
        "_clock",
        "_dropped_entries",
        "_expired",
        "_log",
        "_max_entries",
        "_released",
        "_swept",
        "_window_s",
    )

    def __init__(
        self,
        *,
        max_recipients: int,
        max_entries_per_recipient: int,
        window_s: float,
        allowance: int,
    ) -> None:
        require_int("max_entries_per_recipient", max_entries_per_recipient, minimum=1)
        window_s = require_number("window_s", window_s, minimum=0, min_exclusive=True)
        require_int("allowance", allowance, minimum=1)
        if allowance > max_entries_per_recipient:
            raise ValueError(
                f"allowance must be <= max_entries_per_recipient "
                f"({max_entries_per_recipient}), got {allowance!r}"
            )
        self._log: LruMap[str, deque[float]] = LruMap(max_recipients, arg="max_recipients")
        self._max_entries = max_entries_per_recipient
        self._window_s = window_s
        self._allowance = allowance
        self._clock = -math.inf
        self._dropped_entries = 0
        self._expired = 0
        self._released = 0
        self._swept = 0

    # -- configuration and counters ---------------------------------------------------

    def __len__(self) -> int:
        return len(self._log)

    @property
    def max_recipients(self) -> int:
        """The most recipients remembered at once."""
        return self._log.capacity

    @property
    def max_entries_per_recipient(self) -> int:
        """The most entries kept per recipient."""
        return self._max_entries

    @property
    def window_s(self) -> float:
        """The sliding window, in seconds."""
        return self._window_s

    @property
    def allowance(self) -> int:
        """Sends allowed per window per recipient."""
        return self._allowance

    @property
    def recipients(self) -> int:
        """How many recipients are remembered now."""
        return len(self._log)

    @property
    def peak_recipients(self) -> int:
        """The most recipients ever remembered at once."""
        return self._log.peak

    @property
    def evictions(self) -> int:
        """Recipients with a live entry forgotten to make room for a new one.

        Each one lost rate state: its next send is judged against a fresh window.
        """
        return self._log.evictions

    @property
    def expired(self) -> int:
        """Fully expired recipients removed to make room for a new one, in total.

        Nothing was lost with them, so they are not :attr:`evictions`; :meth:`sweep`'s
        removals are counted in :attr:`swept` instead.
        """
        return self._expired

    @property
    def dropped_entries(self) -> int:
        """Live entries dropped because a recipient already held the maximum."""
        return self._dropped_entries

    @property
    def released(self) -> int:
        """Entries given back by :meth:`release` (sends WhatsApp refused), in total."""
        return self._released

    @property
    def swept(self) -> int:
        """Fully expired recipients removed by :meth:`sweep`, in total."""
        return self._swept

    def entries_for(self, recipient: str) -> int:
        """Return how many entries are stored for ``recipient`` (0 if unknown).

        Stored, not live: expired entries stay until the recipient is next accessed.
        """
        entries = self._log.get(recipient)
        return 0 if entries is None else len(entries)

    # -- operations -----------------------------------------------------------------

    def check(self, recipient: str, now: float) -> RateDecision:
        """Decide whether a send to ``recipient`` is allowed at ``now``, without recording it.

        Prunes the recipient's expired entries, and forgets the recipient if none are left.
        Does not change recency: only recording a send does.
        """
        now = self._advance(now)
        return self._decide(self._live(recipient, now))

    def record(self, recipient: str, now: float) -> None:
        """Record a send to ``recipient`` at ``now``, whether or not it was allowed.

        A new recipient arriving when ``max_recipients`` are held first forgets the least
        recently recorded one: counted in :attr:`expired` if all its entries have expired at
        ``now``, else in :attr:`evictions`. A recipient already holding
        ``max_entries_per_recipient`` live entries loses its oldest (counted in
        :attr:`dropped_entries`).
        """
        now = self._advance(now)
        self._append(recipient, self._live(recipient, now), now)

    def try_acquire(self, recipient: str, now: float) -> RateDecision:
        """Check a send to ``recipient`` at ``now`` and record it if allowed."""
        now = self._advance(now)
        entries = self._live(recipient, now)
        decision = self._decide(entries)
        if decision.allowed:
            self._append(recipient, entries, now)
        return decision

    def release(self, recipient: str, at: float) -> bool:
        """Give back the send recorded for ``recipient`` at ``at`` (it was never delivered).

        Removes the newest entry no later than ``at``: the one recorded then, or an entry
        of the same time (entries of equal time are interchangeable). Returns whether one
        was removed; an entry already expired and pruned is not found, and the allowance
        it held has freed up anyway. Recency is unchanged.
        """
        entries = self._log.get(recipient)
        if entries is None:
            return False
        for i in range(len(entries) - 1, -1, -1):  # newest first: the one released is recent
            if entries[i] <= at:
                del entries[i]
                break
        else:
            return False
        self._released += 1
        if not entries:
            self._log.discard(recipient)
        return True

    def sweep(self, now: float, budget: int) -> int:
        """Forget fully expired recipients, examining at most ``budget`` of them.

        Starts at the least recently recorded end. Because recipients are ordered by last
        record, and a recipient's last record is its newest entry, that end holds the
        recipient whose newest entry is the oldest. So the first recipient found with a live
        entry proves every later one live too, and the sweep stops there: the fully expired
        recipients always form a prefix of the order. Each call costs at most ``budget``
        steps whatever the map's size; calling it every tick with
        :func:`sweep_budget_for` covers the whole map within the cleanup interval.

        Partly expired recipients are left alone; their stale entries are pruned on their
        next access and are bounded by ``max_entries_per_recipient`` meanwhile. A
        :meth:`release` of a recipient's newest entry leaves it later in the order than its
        entries say: the sweep may reach it late (it is pruned on its next access, and the
        bounds hold), never early.

        Args:
            now: the current time, in seconds.
            budget: the most recipients to examine; an int >= 0.

        Returns:
            How many recipients were removed.

        Raises:
            ValueError: if ``budget`` is not an int >= 0.
        """
        require_int("budget", budget, minimum=0)
        now = self._advance(now)
        removed = 0
        for _ in range(budget):
            oldest = self._log.oldest()
            if oldest is None:
                break
            recipient, entries = oldest
            if not self._fully_expired(entries, now):
                break
            self._log.discard(recipient)
            removed += 1
        self._swept += removed
        return removed

    # -- internals ------------------------------------------------------------------

    def _advance(self, now: float) -> float:
        # Clamp to the latest time seen: keeps every deque sorted and the LRU order equal
        # to newest-entry order even if the caller's clock steps back.
        if now > self._clock:
            self._clock = now
        return self._clock

    def _live(self, recipient: str, now: float) -> deque[float] | None:
        """Return the recipient's entries with expired ones pruned, or None if none live."""
        entries = self._log.get(recipient)
        if entries is None:
            return None
        # "expired when now >= t + window_s"; compare as t + window_s <= now so the cut-off
        # is the same float expression that retry_at reports.
        while entries and entries[0] + self._window_s <= now:
            entries.popleft()
        if not entries:
            self._log.discard(recipient)
            return None
        return entries

    def _decide(self, entries: deque[float] | None) -> RateDecision:
        if entries is None:
            return _ALLOWED
        count = len(entries)
        if count < self._allowance:
            return _ALLOWED
        # The send fits once count - allowance + 1 entries have expired, i.e. when the
        # entry at index count - allowance does. Indexing a deque is O(n), n <= the cap.
        return RateDecision(
            allowed=False, retry_at=entries[count - self._allowance] + self._window_s
        )

    def _fully_expired(self, entries: deque[float], now: float) -> bool:
        # The newest entry is the last one, so this is "every entry is expired".
        return entries[-1] + self._window_s <= now

    def _append(self, recipient: str, entries: deque[float] | None, now: float) -> None:
        if entries is None:
            self._make_room(now)
            self._log.put(recipient, deque((now,)))
            return
        self._log.touch(recipient)
        if len(entries) >= self._max_entries:
            entries.popleft()
            self._dropped_entries += 1
        entries.append(now)

    def _make_room(self, now: float) -> None:
        """Remove the least recently recorded recipient if the map is full and it expired.

        Fully expired recipients form a prefix of the recency order (see :meth:`sweep`), so
        if the oldest one still has a live entry, every one does and the eviction that
        ``put`` then makes is unavoidable.
        """
        log = self._log
        if len(log) < log.capacity:
            return
        oldest = log.oldest()
        if oldest is not None and self._fully_expired(oldest[1], now):
            log.discard(oldest[0])
            self._expired += 1

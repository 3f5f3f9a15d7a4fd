"""The runner's own books: what was offered, accepted and answered, and how fast.

Independent of the engine's counters on purpose: the exactly-once check compares what the
engine promised (``Accepted``) with what it delivered (``Outcome``), message by message.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from protocols import Accepted, InboundMessage, Outcome

__all__ = ["OFFER_LOG_KEEP", "SLOW_KEEP", "SLOW_S", "LatencyHistogram", "Tracker", "percentiles"]

SLOW_S = 1.0
"""An outcome at least this long after its submission is *slow*: the report's tail section
says which customers they were and why (``tail.py``)."""
SLOW_KEEP = 1_000
"""Slow outcomes kept in detail: the slowest ones (a stall early in a run must not crowd
out the stragglers at its end); the rest are counted only."""
OFFER_LOG_KEEP = 250_000
"""``submit_many`` calls whose time is kept (16 bytes each, 4 MB at most); later ones are
not logged (the tail's replay then falls back on the sampled offered counts)."""


def percentiles(values: Sequence[float], points: Sequence[float]) -> list[float]:
    """Nearest-rank percentiles of ``values`` (sorted here); zeros when there are none."""
    if not values:
        return [0.0 for _ in points]
    ordered = sorted(values)
    n = len(ordered)
    return [ordered[min(n - 1, max(0, int(-(-p * n // 100)) - 1))] for p in points]


class LatencyHistogram:
    """Latencies in log-spaced buckets: constant memory, percentiles within 1 %.

    A soak of millions of messages must not grow the gateway process it measures, so the
    runner keeps counts per bucket (bucket k holds ``MIN_S * 1.01**(k-1) .. MIN_S * 1.01**k``)
    instead of every value. The maximum is kept exactly.
    """

    MIN_S = 1e-6
    _LOG_BASE = math.log(1.01)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        k = 0 if seconds <= self.MIN_S else int(math.log(seconds / self.MIN_S) / self._LOG_BASE) + 1
        self.counts[k] = self.counts.get(k, 0) + 1
        self.count += 1
        self.max = max(self.max, seconds)

    def percentiles(self, points: Sequence[float]) -> list[float]:
        """Nearest-rank percentiles (upper bucket edges, never above the maximum)."""
        if not self.count:
            return [0.0 for _ in points]
        out = []
        keys = sorted(self.counts)
        for p in points:
            rank = max(1, math.ceil(p * self.count / 100))
            seen = 0
            for k in keys:
                seen += self.counts[k]
                if seen >= rank:
                    out.append(min(self.max, self.MIN_S * math.exp(k * self._LOG_BASE)))
                    break
        return out


class Tracker:
    """Offered, accepted, rejected and resolved messages, and submit-to-outcome latency.

    Across engine restarts (``--crash-every``, ``across_restarts=True``) it also keeps:

    - answers that never arrived (:meth:`lost`): the engine died during ``submit_many``.
      Such a message is *unknown*: the engine may have recorded it or not. Like WhatsApp,
      which redelivers a webhook that got no 200, the runner offers it again
      (:meth:`take_redeliveries`) until the engine answers ``Accepted`` (it owes an
      outcome) or ``duplicate`` (it had recorded it: it owes one too); an outcome that
      arrives for it first shows it was recorded as well;
    - every id that got its outcome, so that a second outcome for an id counts as a
      duplicate (and fails the run) instead of an outcome for an unknown id;
    - outcomes that were recorded in the store but whose answer died with a killed host
      (:meth:`settled_in_store`).
    """

    def __init__(self, *, across_restarts: bool = False) -> None:
        self.pending: dict[str, float] = {}  # accepted message id -> submit time
        self.offered = 0
        self.accepted = 0
        self.outcomes = 0
        self.rejected: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_outcome: Counter[str] = Counter()  # "status" or "status.reason"
        self.duplicates_offered = 0
        self.duplicates_rejected = 0
        self.duplicates_accepted = 0
        self.unexpected: list[str] = []  # outcomes for ids not pending (kept: first 20)
        self.unexpected_total = 0
        self.accepted_twice = 0  # an id accepted while still pending
        self.latencies = LatencyHistogram()  # every outcome of an accepted message
        self.origin = 0.0  # the run's start (monotonic): times in ``slow`` are from it
        # The SLOW_KEEP slowest outcomes, a min-heap of (latency, n, record): see slowest().
        self._slowest: list[tuple[float, int, dict[str, Any]]] = []
        self.slow_total = 0
        self.slow_by_outcome: Counter[str] = Counter()
        self._inbound: dict[str, InboundMessage] = {}  # pending id -> its message (who wrote)
        self.by_account: Counter[str] = Counter()  # outcomes of accepted messages, by account
        # When each submit_many began (from origin) and the messages offered after it: when
        # the n-th message was offered, for the tail's replay (``tail.py``).
        self.offer_log_s = array("d")
        self.offer_log_n = array("q")
        self._window: list[float] = []
        # Across restarts only:
        self.across_restarts = across_restarts
        self.finished: set[str] = set()
        self.lost_answers = 0  # submissions whose answer never arrived
        self.unknown: dict[str, float] = {}  # id -> first submit time; no answer yet
        self.redeliveries: deque[InboundMessage] = deque()  # lost answers, to offer again
        self.reoffered = 0
        self.unknown_recorded = 0  # unknown ids the engine had recorded (owe an outcome)
        self.unknown_accepted = 0  # unknown ids accepted when offered again
        self.accepted_again = 0  # an id accepted again after its outcome (dedupe forgot it)
        self.duplicate_outcomes: list[str] = []  # second outcomes (kept: first 20)
        self.duplicate_outcomes_total = 0
        self.from_store: Counter[str] = Counter()  # settled from the store, by status

    def submitted(
        self,
        batch: Sequence[tuple[InboundMessage, bool]],
        results: Sequence[Any],
        t: float,
    ) -> list[InboundMessage]:
        """Book one ``submit_many``; returns the newly accepted messages."""
        accepted: list[InboundMessage] = []
        self.offered += len(batch)
        if len(self.offer_log_n) < OFFER_LOG_KEEP:
            self.offer_log_s.append(t - self.origin)
            self.offer_log_n.append(self.offered)
        pending, unknown = self.pending, self.unknown
        for (msg, redelivery), result in zip(batch, results, strict=True):
            mid = msg.message_id
            if unknown and mid in unknown:
                self._answered_again(msg, result, accepted)
                continue
            if redelivery:
                self.duplicates_offered += 1
            if isinstance(result, Accepted):
                self.accepted += 1
                if mid in pending:
                    self.accepted_twice += 1
                elif self.across_restarts and mid in self.finished:
                    self.accepted_again += 1
                pending[mid] = t
                self._inbound[mid] = msg
                if redelivery:
                    self.duplicates_accepted += 1
                else:
                    accepted.append(msg)
            else:
                self.rejected[result.reason] += 1
                if redelivery and result.reason == "duplicate":
                    self.duplicates_rejected += 1
        return accepted

    def _answered_again(
        self, msg: InboundMessage, result: Any, accepted: list[InboundMessage]
    ) -> None:
        # A lost answer's message, offered again: the engine's answer now settles what it owes.
        mid = msg.message_id
        if isinstance(result, Accepted):
            self.accepted += 1
            self.unknown_accepted += 1
            self.pending[mid] = self.unknown.pop(mid)
            self._inbound[mid] = msg
            accepted.append(msg)
            return
        self.rejected[result.reason] += 1
        if result.reason == "duplicate":  # recorded before the engine died: it owes an outcome
            self.unknown_recorded += 1
            self.pending[mid] = self.unknown.pop(mid)
            self._inbound[mid] = msg
        else:  # refused for now (capacity, say): WhatsApp would retry it later
            self.redeliveries.append(msg)

    def lost(self, batch: Sequence[tuple[InboundMessage, bool]], t: float) -> None:
        """Book a ``submit_many`` whose answer never arrived (the engine host died)."""
        self.offered += len(batch)
        self.lost_answers += len(batch)
        for msg, redelivery in batch:
            mid = msg.message_id
            if redelivery:
                self.duplicates_offered += 1  # of an accepted id: nothing new is owed
                continue
            if mid in self.pending or mid in self.finished:
                continue  # offered again after it was settled: nothing new is owed
            self.unknown.setdefault(mid, t)
            self.redeliveries.append(msg)

    def take_redeliveries(self, n: int) -> list[tuple[InboundMessage, bool]]:
        """Up to ``n`` lost answers' messages to offer again (oldest first)."""
        out: list[tuple[InboundMessage, bool]] = []
        while self.redeliveries and len(out) < n:
            out.append((self.redeliveries.popleft(), False))
        self.reoffered += len(out)
        return out

    def resolved(self, outcomes: Sequence[Outcome], t: float) -> None:
        """Book outcomes received at ``t``."""
        pending = self.pending
        for o in outcomes:
            self.outcomes += 1
            self.by_status[o.status] += 1
            self.by_outcome[o.status + (f".{o.reason}" if o.reason else "")] += 1
            mid = o.message_id
            submitted = pending.pop(mid, None)
            if submitted is None:
                submitted = self._outcome_not_pending(mid)
            if submitted is None:
                continue
            if self.across_restarts:
                self.finished.add(mid)
            latency = t - submitted
            self.latencies.add(latency)
            self._window.append(latency)
            inbound = self._inbound.pop(mid, None)
            if inbound is not None:
                self.by_account[inbound.account_id] += 1
            if latency >= SLOW_S:
                self._slow(o, inbound, submitted, latency)

    def outcomes_except(self, accounts: set[str]) -> int:
        """Outcomes so far of the accounts not in ``accounts`` (safe from another thread)."""
        while True:
            try:
                return sum(n for a, n in list(self.by_account.items()) if a not in accounts)
            except RuntimeError:  # an account's first outcome was booked meanwhile
                continue

    def _slow(
        self, o: Outcome, inbound: InboundMessage | None, submitted: float, latency: float
    ) -> None:
        outcome = o.status + (f".{o.reason}" if o.reason else "")
        self.slow_total += 1
        self.slow_by_outcome[outcome] += 1
        if len(self._slowest) >= SLOW_KEEP and latency <= self._slowest[0][0]:
            return
        record = {
            "id": o.message_id,
            "customer": inbound.customer_id if inbound else None,
            "account": inbound.account_id if inbound else None,
            "submitted_s": submitted - self.origin,
            "latency_s": latency,
            "outcome": outcome,
        }
        item = (latency, self.slow_total, record)
        if len(self._slowest) < SLOW_KEEP:
            heapq.heappush(self._slowest, item)
        else:
            heapq.heapreplace(self._slowest, item)

    def slowest(self) -> list[dict[str, Any]]:
        """The slow outcomes kept (at most :data:`SLOW_KEEP`), slowest first."""
        ranked = sorted(self._slowest, key=lambda item: item[:2], reverse=True)
        return [record for _, _, record in ranked]

    def _outcome_not_pending(self, mid: str) -> float | None:
        # self.unknown and self.finished stay empty unless across restarts.
        if mid in self.unknown:  # its answer was lost, but the engine had recorded it
            self.unknown_recorded += 1
            return self.unknown.pop(mid)
        if mid in self.finished:
            self.duplicate_outcomes_total += 1
            if len(self.duplicate_outcomes) < 20:
                self.duplicate_outcomes.append(mid)
            return None
        self.unexpected_total += 1
        if len(self.unexpected) < 20:
            self.unexpected.append(mid)
        return None

    def settled_in_store(self, finished: dict[str, str]) -> None:
        """Settle ids still owed whose outcome the store recorded (``id -> status``).

        Their outcome was produced (and recorded) by an engine that was killed before its
        answer reached the runner.
        """
        for mid, status in finished.items():
            self._inbound.pop(mid, None)
            if self.pending.pop(mid, None) is None:
                if self.unknown.pop(mid, None) is None:
                    continue
                self.unknown_recorded += 1
            self.finished.add(mid)
            self.from_store[status] += 1

    def window(self) -> tuple[int, list[float]]:
        """Outcomes since the last call and their p50/p90/p99 latency in ms."""
        values, self._window = self._window, []
        return len(values), [x * 1000 for x in percentiles(values, (50, 90, 99))]

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def owed(self) -> int:
        """Outcomes the engine owes: its ``Accepted`` answers and lost answers it recorded."""
        return self.accepted + self.unknown_recorded

    def exactly_once(self) -> dict[str, Any]:
        """Whether every accepted message got exactly one outcome, with the evidence."""
        missing = len(self.pending)
        settled = self.outcomes + sum(self.from_store.values()) - self.duplicate_outcomes_total
        problems = []
        if missing:
            problems.append(
                f"{missing} accepted without an outcome, e.g. {next(iter(self.pending))}"
            )
        if self.unexpected_total:
            problems.append(
                f"{self.unexpected_total} outcomes for no pending message, "
                f"e.g. {self.unexpected[0]}"
            )
        if self.duplicate_outcomes_total:
            problems.append(
                f"{self.duplicate_outcomes_total} duplicate outcomes (a second outcome for one "
                f"id), e.g. {self.duplicate_outcomes[0]}"
            )
        if self.accepted_twice:
            problems.append(f"{self.accepted_twice} ids accepted twice while pending")
        if self.across_restarts and self.accepted_again:
            problems.append(
                f"{self.accepted_again} ids accepted again after their outcome "
                "(dedupe did not survive a restart)"
            )
        if settled - self.unexpected_total != self.owed and not problems:
            problems.append(f"{self.owed} owed an outcome but {settled} outcomes")
        if self.offered != self.accepted + self.rejected_total + self.lost_answers:
            problems.append(
                f"offered {self.offered} != accepted {self.accepted} + rejected "
                f"{self.rejected_total}"
                + (f" + answers lost {self.lost_answers}" if self.lost_answers else "")
            )
        return {
            "ok": not problems,
            "accepted": self.accepted,
            "outcomes": self.outcomes,
            "owed": self.owed,
            "missing": missing,
            "unexpected": self.unexpected_total,
            "duplicate_outcomes": self.duplicate_outcomes_total,
            "accepted_twice": self.accepted_twice,
            "accepted_again": self.accepted_again,
            "lost_answers": self.lost_answers,
            "unknown_recorded": self.unknown_recorded,
            "unknown_unresolved": len(self.unknown),
            "settled_from_store": sum(self.from_store.values()),
            "problems": problems,
        }

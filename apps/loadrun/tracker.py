"""The runner's own books: what was offered, accepted and answered, and how fast.

Independent of the engine's counters on purpose: the exactly-once check compares what the
engine promised (``Accepted``) with what it delivered (``Outcome``), message by message.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from protocols import Accepted, InboundMessage, Outcome

__all__ = ["LatencyHistogram", "Tracker", "percentiles"]


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
    """Offered, accepted, rejected and resolved messages, and submit-to-outcome latency."""

    def __init__(self) -> None:
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
        self._window: list[float] = []

    def submitted(
        self,
        batch: Sequence[tuple[InboundMessage, bool]],
        results: Sequence[Any],
        t: float,
    ) -> list[InboundMessage]:
        """Book one ``submit_many``; returns the newly accepted messages."""
        accepted: list[InboundMessage] = []
        self.offered += len(batch)
        pending = self.pending
        for (msg, redelivery), result in zip(batch, results, strict=True):
            if redelivery:
                self.duplicates_offered += 1
            if isinstance(result, Accepted):
                self.accepted += 1
                if msg.message_id in pending:
                    self.accepted_twice += 1
                pending[msg.message_id] = t
                if redelivery:
                    self.duplicates_accepted += 1
                else:
                    accepted.append(msg)
            else:
                self.rejected[result.reason] += 1
                if redelivery and result.reason == "duplicate":
                    self.duplicates_rejected += 1
        return accepted

    def resolved(self, outcomes: Sequence[Outcome], t: float) -> None:
        """Book outcomes received at ``t``."""
        pending = self.pending
        for o in outcomes:
            self.outcomes += 1
            self.by_status[o.status] += 1
            self.by_outcome[o.status + (f".{o.reason}" if o.reason else "")] += 1
            submitted = pending.pop(o.message_id, None)
            if submitted is None:
                self.unexpected_total += 1
                if len(self.unexpected) < 20:
                    self.unexpected.append(o.message_id)
                continue
            latency = t - submitted
            self.latencies.add(latency)
            self._window.append(latency)

    def window(self) -> tuple[int, list[float]]:
        """Outcomes since the last call and their p50/p90/p99 latency in ms."""
        values, self._window = self._window, []
        return len(values), [x * 1000 for x in percentiles(values, (50, 90, 99))]

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def exactly_once(self) -> dict[str, Any]:
        """Whether every accepted message got exactly one outcome, with the evidence."""
        missing = len(self.pending)
        ok = (
            missing == 0
            and self.unexpected_total == 0
            and self.accepted_twice == 0
            and self.outcomes == self.accepted
            and self.offered == self.accepted + self.rejected_total
        )
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
        if self.accepted_twice:
            problems.append(f"{self.accepted_twice} ids accepted twice while pending")
        if self.outcomes != self.accepted and not problems:
            problems.append(f"{self.accepted} accepted but {self.outcomes} outcomes")
        if self.offered != self.accepted + self.rejected_total:
            problems.append(
                f"offered {self.offered} != accepted {self.accepted} + rejected "
                f"{self.rejected_total}"
            )
        return {
            "ok": ok,
            "accepted": self.accepted,
            "outcomes": self.outcomes,
            "missing": missing,
            "unexpected": self.unexpected_total,
            "accepted_twice": self.accepted_twice,
            "problems": problems,
        }

"""A steady load for fault and flood tests: submit at a rate, collect outcomes, check once.

``Load`` runs one background thread that submits a batch every ``batch / rate_per_s``
seconds and collects whatever outcomes are ready in between, recording when each message
was accepted and when its outcome arrived. The engine serialises its calls anyway, so one
thread doing both keeps the test deterministic in what it asks; the test's main thread is
free to kill processes, call ``shutdown()`` or reprogram a fake meanwhile.

Deadlines are checked without timing the test's own thread (``Load.late``): the facade times
a message out at ``deadline + LEDGER_GRACE_S`` whenever ``outcomes()`` is called, so an
outcome that a collection starting past that moment did not return was held too long. How
often a busy machine lets this thread ask does not change the verdict.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from actors.engine import Engine
from actors.runtime import procs as _procs
from protocols import Accepted, InboundMessage, Outcome, Rejected

__all__ = ["LEDGER_GRACE_S", "Batch", "Load", "cpu_seconds", "loadrun_refusal", "rss_mb"]

LEDGER_GRACE_S = 1.0
"""The facade's ledger grace (``Engine``'s ``Ledger(grace_s=1.0)``): past ``deadline`` plus
this, ``outcomes()`` times an unresolved message out itself."""


@dataclass(frozen=True, slots=True)
class Batch:
    """One ``submit_many`` call: when it started and returned, and its answers."""

    started: float
    returned: float
    results: tuple[Accepted | Rejected, ...]


@dataclass
class Load:
    """Submit ``rate_per_s`` messages a second in batches of ``batch``; collect outcomes.

    Messages are ``<prefix>.<n>`` from customer ``n % customers`` of account
    ``accounts[n % len(accounts)]``. Times are ``time.monotonic()``, except ``due`` and
    ``asked_before`` (epoch seconds, the clock of ``Accepted.deadline``).
    """

    engine: Engine
    prefix: str
    rate_per_s: float = 300.0
    batch: int = 30
    customers: int = 100_000
    accounts: tuple[str, ...] = ("acct-1",)
    text: str = "hi"
    accepted: dict[str, float] = field(default_factory=dict)  # id -> time accepted
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)  # id -> time the outcome came
    due: dict[str, float] = field(default_factory=dict)  # id -> its Accepted.deadline
    # id -> when the last collection that did not return its outcome began
    asked_before: dict[str, float] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    batches: list[Batch] = field(default_factory=list)
    second_outcomes: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)  # outcomes for ids never accepted
    errors: list[BaseException] = field(default_factory=list)
    offered: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _last_ask: float = -math.inf  # when the latest collection began (epoch)

    def message(self, n: int) -> InboundMessage:
        return InboundMessage(
            account_id=self.accounts[n % len(self.accounts)],
            customer_id=f"+1555{n % self.customers:07d}",
            message_id=f"{self.prefix}.{n}",
            text=self.text,
        )

    # --- running ------------------------------------------------------------------------

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, name=f"load-{self.prefix}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        period = self.batch / self.rate_per_s
        due = time.monotonic()
        try:
            while not self._stop.is_set():
                self.submit([self.message(self.offered + k) for k in range(self.batch)])
                self.strays += [o.message_id for o in self.collect(timeout=0.0)]
                due += period
                self._stop.wait(max(0.0, due - time.monotonic()))
        except BaseException as exc:  # handed to the test by stop()
            self.errors.append(exc)

    def submit(self, messages: list[InboundMessage]) -> list[Accepted | Rejected]:
        started = time.monotonic()
        results = self.engine.submit_many(messages)
        returned = time.monotonic()
        self.offered += len(messages)
        self.batches.append(Batch(started, returned, tuple(results)))
        for result in results:
            if isinstance(result, Accepted):
                self.accepted[result.message_id] = returned
                if result.deadline is not None:
                    self.due[result.message_id] = result.deadline
            else:
                self.rejected[result.reason] += 1
        return results

    def collect(self, timeout: float = 0.0) -> list[Outcome]:
        """Take the outcomes ``engine.outcomes(timeout)`` returns; hand back the others.

        Outcomes whose id does not start with ``<prefix>.`` (a probe the test sent itself)
        are returned to the caller; every other one goes to :meth:`take`, which records
        for :meth:`late` when the previous collection (the last that did not return it)
        began.
        """
        asked = time.time()
        outcomes = self.engine.outcomes(timeout=timeout)
        mine = f"{self.prefix}."
        self.take(o for o in outcomes if o.message_id.startswith(mine))
        self._last_ask = asked
        return [o for o in outcomes if not o.message_id.startswith(mine)]

    def collect_until(self, until: float) -> list[Outcome]:
        """Keep collecting until ``time.monotonic()`` reaches ``until``; return the others.

        For a test that waits on purpose while messages are in flight: the facade times out
        whatever it is asked for only past ``deadline + LEDGER_GRACE_S``, even an outcome the
        router had ready, so outcomes must keep being collected during the wait.
        """
        others: list[Outcome] = []
        while (left := until - time.monotonic()) > 0:
            others += self.collect(timeout=min(left, 0.2))
        return others

    def take(self, outcomes: Iterable[Outcome]) -> None:
        """Record outcomes a collection returned (prefer :meth:`collect`, which times it)."""
        now = time.monotonic()
        for outcome in outcomes:
            mid = outcome.message_id
            if mid in self.outcomes:
                self.second_outcomes.append(mid)
            elif mid not in self.accepted:
                self.strays.append(mid)
            else:
                self.outcomes[mid] = outcome
                self.arrived[mid] = now
                self.asked_before[mid] = self._last_ask

    def stop(self) -> None:
        """Stop submitting (the thread ends after its current call)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            assert not self._thread.is_alive(), "the load thread did not stop"
        if self.errors:
            raise self.errors[0]

    def finish(self, *, deadline_s: float = 30.0) -> None:
        """Stop, then collect until every accepted message has its outcome (or fail)."""
        self.stop()
        until = time.monotonic() + deadline_s
        while self.missing and time.monotonic() < until:
            self.strays += [o.message_id for o in self.collect(timeout=0.2)]
        self.check_exactly_once()

    # --- checks and figures -------------------------------------------------------------

    @property
    def missing(self) -> set[str]:
        return set(self.accepted) - set(self.outcomes)

    def check_exactly_once(self) -> None:
        assert not self.second_outcomes, f"second outcomes for {self.second_outcomes[:5]}"
        assert not self.strays, f"outcomes for messages never accepted: {self.strays[:5]}"
        missing = self.missing
        assert not missing, (
            f"{len(missing)} accepted messages have no outcome: {sorted(missing)[:5]}"
        )
        assert set(self.outcomes) == set(self.accepted)

    def statuses(self) -> Counter[str]:
        return Counter(
            f"{o.status}/{o.reason}" if o.reason else o.status for o in self.outcomes.values()
        )

    def latencies(self) -> list[float]:
        """Seconds from acceptance to outcome as this thread saw them (figures, not checks)."""
        return [self.arrived[mid] - self.accepted[mid] for mid in self.outcomes]

    def late(self, grace_s: float = LEDGER_GRACE_S) -> list[str]:
        """Messages whose outcome came later than the engine promised, e.g. ``["p.7"]``.

        The facade resolves every message by ``deadline + grace_s``: a collection that
        began at or past that moment returns its outcome (or a timeout). So an outcome that
        such a collection did not return, and a later one did, was held too long. True by
        construction while the engine keeps its deadlines, whatever the scheduler does.
        """
        return sorted(
            mid
            for mid, asked in self.asked_before.items()
            if mid in self.due and asked >= self.due[mid] + grace_s
        )

    def summary(self) -> str:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses().items()))
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) or "none"
        return (
            f"offered {self.offered}, accepted {len(self.accepted)}, "
            f"outcomes {len(self.outcomes)} ({statuses}); rejected: {rejected}"
        )


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB (VmRSS), or None when it is gone."""
    kb = _procs.rss_kb(pid)
    return None if kb is None else kb / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        data = fh.read()
    fields = data[data.rfind(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def loadrun_refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What the load runner says on stderr refusing ``argv`` (it must exit with status 2)."""
    from apps.loadrun import parse_args

    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    err: str = capsys.readouterr().err
    return err

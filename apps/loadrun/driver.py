"""The driving loop: submit batches at the target rate, collect outcomes, sample, kill.

One thread does everything, in this order each turn: sample when due, kill when due,
submit one batch when the pacing clock allows (else wait for outcomes until it does),
collect whatever outcomes are ready. Pacing is by the monotonic clock: the n-th message
is due at ``start + n / rate``; "unlimited" submits as fast as the engine answers.

With ``--crash-every`` the engine is hosted (:mod:`apps.loadrun.hosted`) and a
:class:`~apps.loadrun.crashes.Crasher` thread SIGKILLs it on its own clock. The call in
progress (or the next) raises :class:`~apps.loadrun.hosted.HostGoneError`: a batch whose
answer was lost is booked as such (its messages are offered again, first in the next
batches, as WhatsApp redelivers a webhook that got no 200), the crash is booked, and the
driver carries on with the new engine.
"""

from __future__ import annotations

import math
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocols import InboundMessage

from . import procs
from .crashes import CrashBook, Crasher
from .hosted import EngineLike, HostedEngine, HostGoneError
from .options import AUTO_BATCH_MAX, RunOptions, engine_config
from .progress import Progress
from .sampler import Sampler
from .tracker import Tracker
from .traffic import Traffic

__all__ = ["Driver", "Kill", "Phases"]

_MAX_WAIT_S = 0.05  # longest a paced wait blocks before the loop looks at its clocks again
_BACKOFF_S = 0.005  # unlimited rate: wait this long for outcomes after a capacity rejection
_PROGRESS_EVERY_S = 0.25


@dataclass(frozen=True, slots=True)
class Kill:
    """One SIGKILL the runner sent."""

    t: float
    role: str
    name: str
    pid: int
    delivered: bool


@dataclass(slots=True)
class Phases:
    """When things happened, in seconds from the first submission."""

    offer_s: float = 0.0
    collect_s: float = 0.0
    last_outcome_s: float = 0.0
    outcomes_in_run: int = 0  # outcomes collected before the shutdown
    outcomes_while_offering: int = 0  # outcomes collected before the last submission
    replied_while_offering: int = 0
    collect_timed_out: bool = False
    interrupted: bool = False
    error: str | None = None  # an engine call raised: the run stopped there
    kills: list[Kill] = field(default_factory=list)


class Driver:
    """Runs the traffic through an engine that is started and has its accounts."""

    def __init__(
        self,
        engine: EngineLike,
        traffic: Traffic,
        tracker: Tracker,
        sampler: Sampler,
        opts: RunOptions,
        *,
        collect_timeout_s: float,
        progress: Progress,
        crashes: CrashBook | None = None,
        crasher: Crasher | None = None,
    ) -> None:
        self.engine = engine
        self.crashes = crashes
        self.crasher = crasher
        self.traffic = traffic
        self.tracker = tracker
        self.sampler = sampler
        self.opts = opts
        self.collect_timeout_s = collect_timeout_s
        self.progress = progress
        self.phases = Phases()
        # Auto batches fill the engine's processing window, not more (options: --batch).
        self._window = engine_config(opts).max_concurrent_processing
        self._rng = random.Random(opts.seed + 1)
        self._t0 = 0.0
        self._next_sample = 0.0
        self._middle_marked = False
        self._last_progress = 0.0

    def run(self) -> Phases:
        """Offer the traffic, then collect every outstanding outcome (or time out).

        A ``crasher`` kills the engine on its clock while the traffic is offered only.
        """
        self._t0 = time.monotonic()
        self.tracker.origin = self._t0
        self._next_sample = self._t0
        if self.crasher is not None:
            self.crasher.start(self._t0)
        try:
            self._guarded(self._offer)
        finally:
            if self.crasher is not None:
                self.crasher.stop()
        self.phases.offer_s = time.monotonic() - self._t0
        self.phases.outcomes_while_offering = self.tracker.outcomes
        self.phases.replied_while_offering = self.tracker.by_status.get("replied", 0)
        if self.phases.error is None:
            self._guarded(self._collect_rest)
        self.phases.collect_s = time.monotonic() - self._t0 - self.phases.offer_s
        self._guarded(lambda: self._sample(time.monotonic(), force=True))
        self.phases.outcomes_in_run = self.tracker.outcomes
        return self.phases

    def _guarded(self, phase: Callable[[], None]) -> None:
        # Ctrl-C ends the phase early; an engine call that raises ends the run, and the
        # report says so (the runner still shuts the engine down and balances its books).
        try:
            phase()
        except KeyboardInterrupt:
            self.phases.interrupted = True
        except Exception as exc:
            if self.phases.error is None:
                where = traceback.extract_tb(exc.__traceback__)[-1]
                self.phases.error = (
                    f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno} "
                    f"in {where.name}, {time.monotonic() - self._t0:.1f} s into the run)"
                )

    # -- phases ---------------------------------------------------------------------------

    def _offer(self) -> None:
        opts, tracker = self.opts, self.tracker
        rate = opts.rate
        cap = opts.batch or AUTO_BATCH_MAX
        # Paced runs submit about every 20 ms, so a low rate does not arrive in lumps.
        size = cap if rate <= 0 else max(1, min(cap, math.ceil(rate * 0.02)))
        next_kill = self._t0 + opts.kill_every if opts.kill_every else math.inf
        congested = False
        while True:
            now = time.monotonic()
            self._sample(now)
            if now >= next_kill:
                self._kill(now)
                next_kill += opts.kill_every or math.inf
            if self._offered_all(now):
                return
            left = math.inf if opts.messages is None else opts.messages - tracker.offered
            n = int(min(size, left))
            if rate > 0:
                # Wait until a whole step is due; when behind, catch up in bigger batches.
                behind = (now - self._t0) * rate - tracker.offered
                if behind < n:
                    due = self._t0 + (tracker.offered + n) / rate
                    self._collect(min(due - now, self._next_sample - now, _MAX_WAIT_S))
                    continue
                n = int(min(cap, behind, left))
            elif not opts.batch:
                # Auto: as many as the engine has room for, like a gateway whose webhooks
                # queue while the engine is busy; none while it is full (wait for outcomes).
                room = self._window - len(tracker.pending)
                if room < 1:
                    self._collect(_MAX_WAIT_S)
                    continue
                n = int(min(n, room))
            elif congested:
                self._collect(_BACKOFF_S)
            batch = tracker.take_redeliveries(n)
            batch += self.traffic.batch(n - len(batch))
            results = self._submit(batch)
            congested = any(getattr(r, "reason", None) == "capacity" for r in results)
            self._collect(0.0)

    def _submit(self, batch: list[tuple[InboundMessage, bool]]) -> list[Any]:
        """Submit one batch and book its answers (none if the engine died meanwhile)."""
        t = time.monotonic()
        try:
            results = self.engine.submit_many([m for m, _ in batch])
        except HostGoneError as exc:
            self.tracker.lost(batch, t)
            self._restart(exc)
            return []
        for msg in self.tracker.submitted(batch, results, t):
            self.traffic.accepted(msg)
        return results

    def _restart(self, gone: HostGoneError) -> None:
        # The hosted engine died (the Crasher killed it, or it died on its own): bury it,
        # start the next one on the same store, and book the crash.
        if self.crashes is None or not isinstance(self.engine, HostedEngine):
            raise gone
        restart = self.engine.restart()
        self.crashes.crashed(restart, self.tracker, self._t0)

    def _offered_all(self, now: float) -> bool:
        if self.opts.messages is not None:
            return self.tracker.offered >= self.opts.messages
        return now - self._t0 >= (self.opts.duration or 0.0)

    def _collect_rest(self) -> None:
        deadline = time.monotonic() + self.collect_timeout_s
        tracker = self.tracker
        while tracker.pending or tracker.redeliveries:
            now = time.monotonic()
            if now >= deadline:
                self.phases.collect_timed_out = True
                return
            self._sample(now)
            if tracker.redeliveries:  # lost answers still to offer again
                self._submit(tracker.take_redeliveries(self.opts.batch or AUTO_BATCH_MAX))
            self._collect(min(0.2, deadline - now))

    # -- one step -------------------------------------------------------------------------

    def _collect(self, timeout: float) -> None:
        try:
            outcomes = self.engine.outcomes(timeout=max(0.0, timeout))
        except HostGoneError as exc:
            self._restart(exc)
            return
        if outcomes:
            t = time.monotonic()
            self.tracker.resolved(outcomes, t)
            if self.crashes is not None:
                self.crashes.outcomes(outcomes)
            self.phases.last_outcome_s = t - self._t0

    def _sample(self, now: float, *, force: bool = False) -> None:
        if now >= self._next_sample or force:
            self._next_sample = max(self._next_sample + self.opts.sample_every, now)
            tr = self.tracker
            n, (p50, p90, p99) = tr.window()
            extra: dict[str, Any] = {
                "offered": tr.offered,
                "accepted": tr.accepted,
                "completed": tr.outcomes,
                "window_outcomes": n,
                "p50_ms": round(p50, 3),
                "p90_ms": round(p90, 3),
                "p99_ms": round(p99, 3),
            }
            self.sampler.sample(now - self._t0, extra)
            if not self._middle_marked and self._past_middle(now):
                self.sampler.mark("middle")
                self._middle_marked = True
        if now - self._last_progress >= _PROGRESS_EVERY_S or force:
            self._last_progress = now
            self._show_progress(now)

    def _past_middle(self, now: float) -> bool:
        if self.opts.messages is not None:
            return self.tracker.offered >= self.opts.messages / 2
        return now - self._t0 >= (self.opts.duration or 0.0) / 2

    def _show_progress(self, now: float) -> None:
        tr, rows = self.tracker, self.sampler.rows
        rate = ""
        if len(rows) >= 2 and rows[-1]["t"] > rows[-2]["t"]:
            dt = rows[-1]["t"] - rows[-2]["t"]
            rate = f"{(rows[-1]['completed'] - rows[-2]['completed']) / dt:,.0f} done/s "
        status = (
            f"{rate}accepted {tr.accepted:,} done {tr.outcomes:,} in flight {len(tr.pending):,}"
        )
        if self.opts.messages is not None:
            self.progress.update(tr.offered, status)
        else:
            self.progress.update(min(now - self._t0, self.opts.duration or 0.0), status)

    def _kill(self, now: float) -> None:
        stats = self.sampler.last_stats
        if stats is None:
            return
        actors = [a for a in stats.actors if a.pid and a.state == "up"]
        supervisor = next((a.pid for a in actors if a.role == "supervisor"), None)
        accounts = [a for a in actors if a.role == "account"]
        victims = [self._rng.choice(accounts)] if accounts else []
        if self.opts.kill_router:
            victims += [a for a in actors if a.role == "router"]
        for a in victims:
            assert a.pid is not None  # only actors with a pid were kept
            delivered = procs.kill(a.pid, expected_parent=supervisor)
            self.phases.kills.append(Kill(now - self._t0, a.role, a.name, a.pid, delivered))

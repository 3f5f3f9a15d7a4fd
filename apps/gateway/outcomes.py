"""The gateway's outcome collector: the loop that takes the engine's outcomes, and what
each one updates (the delivery desk, the counters, the latency histogram, the log).

The loop runs as one task from the app's startup to its cleanup; every engine call goes
through the gateway's one engine thread (``fetch``), so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from apps.gateway.desk import DeliveryDesk
from apps.gateway.metrics import GatewayMetrics, SubmitTimes
from apps.gateway.sampled import SampledLog
from protocols import Outcome

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["OutcomeCollector"]


class OutcomeCollector:
    """Collects outcomes until told to stop, and records each.

    Args:
        fetch: ``Engine.outcomes`` on the engine thread: waits up to its argument (seconds).
        wait_s: how long one collection waits (``outcome_wait_s``).
        metrics: the gateway's metrics (counters and the latency histogram).
        submitted: the submit times of accepted messages, for the latency histogram.
        deliveries: the delivery desk, told of each reply's outcome.
        sampled: the gateway's sampled log (floods of one failure stay small).
        log: the gateway's logger.
    """

    def __init__(
        self,
        fetch: Callable[[float], Awaitable[list[Outcome]]],
        *,
        wait_s: float,
        metrics: GatewayMetrics,
        submitted: SubmitTimes,
        deliveries: DeliveryDesk,
        sampled: SampledLog,
        log: Logger,
    ) -> None:
        self._fetch = fetch
        self._wait_s = wait_s
        self._metrics = metrics
        self._counters = metrics.counters
        self._submitted = submitted
        self._deliveries = deliveries
        self._sampled = sampled
        self.log = log

    async def run(self, stop: asyncio.Event, stopping: Callable[[], bool]) -> None:
        """Collect outcomes until ``stopping()``; each call waits at most ``wait_s``.

        Args:
            stop: set at cleanup; ends the pause after an empty answer early.
            stopping: whether cleanup has begun (checked between calls, so the call in
                progress ends and its outcomes are recorded: none is dropped).
        """
        loop = asyncio.get_running_loop()
        wait_s = self._wait_s
        while not stopping():
            started = loop.time()
            try:
                outcomes = await self._fetch(wait_s)
            except Exception as exc:  # a broken engine must not end the collector
                self._counters.inc("engine_errors", call="outcomes")
                if n := self._sampled.should_log("outcomes failed"):
                    self.log.error("collecting outcomes failed ({} so far): {}", n, exc)
                outcomes = []
            self.record(outcomes)
            if not outcomes and loop.time() - started < wait_s / 2:
                # The engine answered at once with nothing (it is stopped): do not spin.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait_s)

    def record(self, outcomes: Iterable[Outcome]) -> None:
        """Tell the desk, count, time and (sampled) log each outcome."""
        now = time.monotonic()
        outcomes = list(outcomes)
        self._deliveries.replied(outcomes)
        for outcome in outcomes:
            self._counters.inc("outcomes", status=outcome.status, reason=outcome.reason)
            seconds = self._submitted.finish(outcome.message_id, now)
            if seconds is not None:
                self._metrics.observe(outcome.status, seconds)
            if outcome.status == "replied":
                continue
            n = self._sampled.should_log(f"outcome {outcome.status}/{outcome.reason}")
            if n:
                self.log.bind(
                    message_id=outcome.message_id, status=outcome.status, reason=outcome.reason
                ).warning(
                    "message {} ended {}/{} ({} so far): {}",
                    outcome.message_id,
                    outcome.status,
                    outcome.reason,
                    n,
                    outcome.detail,
                )

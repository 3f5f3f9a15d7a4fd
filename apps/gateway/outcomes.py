"""The gateway's outcome collector: the loop that takes the engine's outcomes, and what
each one updates (the delivery desk, the counters, the latency histogram, the log).

The loop runs as one task from the app's startup to its cleanup, over the outcome
iterator of the engine's asyncio face (its polls run on the engine thread, so the event
loop never blocks). It ends when the iteration does: after the outcomes the engine's
shutdown left, or when the gateway closes its engine face.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING

from apps.gateway.desk import DeliveryDesk
from apps.gateway.metrics import GatewayMetrics, SubmitTimes
from apps.gateway.sampled import SampledLog
from protocols import Outcome

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["OutcomeCollector"]


class OutcomeCollector:
    """Collects the engine's outcomes until their iteration ends, and records each.

    Args:
        batches: starts an iteration over the engine's outcomes, one list per poll
            (``AsyncEngine.outcome_batches``).
        wait_s: the pause after a failed iteration before the next one (``outcome_wait_s``).
        metrics: the gateway's metrics (counters and the latency histogram).
        submitted: the submit times of accepted messages, for the latency histogram.
        deliveries: the delivery desk, told of each reply's outcome.
        sampled: the gateway's sampled log (floods of one failure stay small).
        log: the gateway's logger.
    """

    def __init__(
        self,
        batches: Callable[[], AsyncIterator[list[Outcome]]],
        *,
        wait_s: float,
        metrics: GatewayMetrics,
        submitted: SubmitTimes,
        deliveries: DeliveryDesk,
        sampled: SampledLog,
        log: Logger,
    ) -> None:
        self._batches = batches
        self._wait_s = wait_s
        self._metrics = metrics
        self._counters = metrics.counters
        self._submitted = submitted
        self._deliveries = deliveries
        self._sampled = sampled
        self.log = log

    async def run(self, stop: asyncio.Event) -> None:
        """Record outcomes until the iteration ends; a failed one is started again.

        Args:
            stop: set at cleanup: after a failure the collector then ends instead of
                pausing ``wait_s`` and starting again.
        """
        while True:
            try:
                async for outcomes in self._batches():
                    self.record(outcomes)
                return  # the engine was shut down, or its face closed: nothing more comes
            except Exception as exc:  # a broken engine must not end the collector
                self._counters.inc("engine_errors", call="outcomes")
                if n := self._sampled.should_log("outcomes failed"):
                    self.log.error("collecting outcomes failed ({} so far): {}", n, exc)
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._wait_s)

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

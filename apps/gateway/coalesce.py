"""Webhooks arriving together are submitted together: one ``submit_many``, one intake commit.

The engine records every accepted message durably before ``submit_many`` returns, and a
commit's cost (an fsync with ``durability = "fsync"``) is per call, not per message. The
gateway's engine calls run one at a time on one thread; so while one submission is in
flight, the webhooks that arrive meanwhile wait anyway: :class:`SubmitCoalescer` joins
them into the next call. A submission leaves at once when nothing is in flight (no added
latency at low load, no timer), and batches grow by themselves under load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from protocols import Accepted, InboundMessage, Rejected

__all__ = ["SubmitCoalescer"]

Results = list[Accepted | Rejected]
Waiting = tuple[Sequence[InboundMessage], "asyncio.Future[Results]"]


class SubmitCoalescer:
    """Joins concurrent ``submit`` calls into one ``submit_many`` per flight.

    Args:
        submit_many: the engine call (run on the engine's thread by the caller's wrapper);
            it answers one result per message, in order.
        max_messages: the most messages one call carries; more wait for the next flight.
    """

    def __init__(
        self,
        submit_many: Callable[[Sequence[InboundMessage]], Awaitable[Results]],
        *,
        max_messages: int = 2_000,
    ) -> None:
        self._submit_many = submit_many
        self._max = max_messages
        self._waiting: list[Waiting] = []
        self._flying = False
        self.calls = 0
        self.joined = 0  # submissions that shared a call with another

    async def submit(self, messages: Sequence[InboundMessage]) -> Results:
        """Submit ``messages`` (one webhook's) and return their results, in order.

        Raises:
            Exception: whatever the engine call raised for the flight this joined.
        """
        future: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        self._waiting.append((messages, future))
        if not self._flying:
            self._flying = True
            asyncio.get_running_loop().create_task(self._fly(), name="wae-submit")
        return await future

    async def _fly(self) -> None:
        try:
            while self._waiting:
                flight = self._take()
                self.calls += 1
                self.joined += len(flight) - 1
                messages = [m for batch, _ in flight for m in batch]
                try:
                    results = await self._submit_many(messages)
                except Exception as exc:
                    for _, future in flight:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for batch, future in flight:
                    end = start + len(batch)
                    if not future.done():
                        future.set_result(results[start:end])
                    start = end
        finally:
            self._flying = False

    def _take(self) -> list[Waiting]:
        # Whole webhooks only, up to max_messages (one larger webhook goes alone).
        flight: list[Waiting] = []
        count = 0
        while self._waiting:
            batch = self._waiting[0][0]
            if flight and count + len(batch) > self._max:
                break
            flight.append(self._waiting.pop(0))
            count += len(batch)
        return flight

"""The outcome side of ``AsyncEngine``: long polls on the engine thread, as async iterations.

Each poll is ``Engine.outcomes(wait_s)`` on the engine thread: it answers at once with
what is ready, or waits up to ``wait_s`` for a first outcome. While it waits it holds the
thread, and a submission that arrives meanwhile waits for it: that is why ``wait_s`` is
short, and why a poll does not wait at all while submissions are in flight or waiting.

Why not poll without waiting and wait on the event loop instead (a pause doubling from
1 ms, ended when a flight lands): tried, and measured with ``scripts/bench_gateway.py
--duration 5`` (two runs each on a shared, busy machine), it made a poll after nearly
every flight, mostly empty, and smaller flights: at concurrency 10 the gateway served
122-157 webhooks/s with p50 60-83 ms, against 203-300 webhooks/s with p50 32-43 ms with
the long poll. The wait of a long poll lets the next flight gather.

An iteration ends after the outcomes the engine's shutdown left, or when the asyncio face
is closed. No outcome is dropped: a consumer cancelled during a poll, or one that leaves
an iteration part way, leaves what it did not see for the next iteration.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Future
from typing import Any, Protocol

from protocols import Outcome, ShutdownReport

__all__ = ["OutcomeFeed"]

Polled = tuple[list[Outcome], bool]


class _Polls(Protocol):
    """What the feed needs of ``Engine``: its outcome poll, and whether it was shut down."""

    @property
    def shutdown_report(self) -> ShutdownReport | None: ...

    def outcomes(self, timeout: float = ...) -> list[Outcome]: ...


class OutcomeFeed:
    """Outcome iterations over one engine; see the module docstring.

    Args:
        engine: the blocking engine (its ``outcomes`` runs on the engine thread).
        send: runs a function on the engine thread, returning its future (raises when
            the asyncio face is closed).
        closed: whether the asyncio face is closed (iterations then end).
        busy: whether submissions are in flight or waiting (a poll then does not wait).
    """

    def __init__(
        self,
        engine: _Polls,
        send: Callable[..., Future[Any]],
        *,
        closed: Callable[[], bool],
        busy: Callable[[], bool],
    ) -> None:
        self._engine = engine
        self._send = send
        self._closed = closed
        self._busy = busy
        # Outcomes taken from the engine that no consumer has seen yet (a consumer was
        # cancelled during a poll, or left an iteration part way): the next one gets them.
        self._carry: deque[Outcome] = deque()

    async def batches(self, wait_s: float) -> AsyncGenerator[list[Outcome], None]:
        """Non-empty lists of outcomes, one per poll, until the engine is shut down or
        the face closed."""
        final = False
        while True:
            if self._carry:
                yield self._take_carry()
            if self._closed():
                return
            polled, stopped = await self._poll_once(0.0 if self._busy() else wait_s)
            out = self._take_carry() + polled  # a cancelled poll before this one came first
            if out:
                yield out
            if final:
                return
            # Seen stopped after a poll: the next poll starts after the shutdown, so it
            # takes what the shutdown left; then nothing more can come.
            final = stopped

    async def one_by_one(self, wait_s: float) -> AsyncGenerator[Outcome, None]:
        """The outcomes of :meth:`batches` one at a time; those not seen when the consumer
        leaves part way are kept for the next iteration."""
        async for batch in self.batches(wait_s):
            rest = deque(batch)
            try:
                while rest:
                    yield rest[0]
                    rest.popleft()
            finally:
                if rest:  # closed part way: the first was seen, the rest was not
                    rest.popleft()
                    self._carry.extendleft(reversed(rest))

    async def _poll_once(self, wait_s: float) -> Polled:
        call: Future[Polled] = self._send(self._poll, wait_s)
        try:
            return await asyncio.wrap_future(call)
        except asyncio.CancelledError:
            # The poll runs on regardless: its outcomes go to the next consumer.
            call.add_done_callback(self._keep_polled)
            raise

    def _poll(self, wait_s: float) -> Polled:
        # On the engine thread. Whether the engine is stopped is read after the poll:
        # the caller polls once more before it ends (see batches).
        out = self._engine.outcomes(wait_s)
        return out, self._engine.shutdown_report is not None

    def _keep_polled(self, call: Future[Polled]) -> None:
        if not call.cancelled() and call.exception() is None:
            self._carry.extend(call.result()[0])

    def _take_carry(self) -> list[Outcome]:
        out = list(self._carry)
        self._carry.clear()
        return out

"""Webhooks arriving together share one submit_many (apps.gateway.coalesce)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from apps.gateway.coalesce import SubmitCoalescer
from protocols import Accepted, InboundMessage, Rejected
from tests.engine_helpers import inbound


class _Engine:
    """A submit_many whose calls the test lets finish one at a time."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release: asyncio.Queue[BaseException | None] = asyncio.Queue()

    async def submit_many(self, messages: Sequence[InboundMessage]) -> list[Accepted | Rejected]:
        self.calls.append([m.message_id for m in messages])
        outcome = await self.release.get()
        if outcome is not None:
            raise outcome
        return [Accepted(message_id=m.message_id) for m in messages]


async def _until(condition: object, what: str) -> None:
    # Wait for the event loop to run the other tasks up to a point (bounded, no clock).
    for _ in range(1_000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def test_a_lone_webhook_is_submitted_at_once_and_alone() -> None:
    async def scenario() -> None:
        engine = _Engine()
        coalescer = SubmitCoalescer(engine.submit_many)
        task = asyncio.create_task(coalescer.submit([inbound(1), inbound(2)]))
        await _until(lambda: engine.calls, "the call")
        engine.release.put_nowait(None)
        results = await task
        assert [r.message_id for r in results] == ["wamid.1", "wamid.2"]
        assert engine.calls == [["wamid.1", "wamid.2"]]
        assert (coalescer.calls, coalescer.joined) == (1, 0)

    asyncio.run(scenario())


def test_webhooks_arriving_during_a_flight_share_the_next_call_and_get_their_own_results() -> None:
    async def scenario() -> None:
        engine = _Engine()
        coalescer = SubmitCoalescer(engine.submit_many)
        first = asyncio.create_task(coalescer.submit([inbound(1)]))
        await _until(lambda: len(engine.calls) == 1, "the first call")
        later = [
            asyncio.create_task(coalescer.submit([inbound(i), inbound(i + 100)])) for i in (2, 3, 4)
        ]
        await _until(lambda: len(coalescer._waiting) == 3, "three waiting")
        engine.release.put_nowait(None)  # the first flight lands; the three fly together
        await _until(lambda: len(engine.calls) == 2, "the second call")
        engine.release.put_nowait(None)
        assert [r.message_id for r in await first] == ["wamid.1"]
        answers = [[r.message_id for r in await t] for t in later]
        assert answers == [
            ["wamid.2", "wamid.102"],
            ["wamid.3", "wamid.103"],
            ["wamid.4", "wamid.104"],
        ]
        assert engine.calls[1] == [
            "wamid.2",
            "wamid.102",
            "wamid.3",
            "wamid.103",
            "wamid.4",
            "wamid.104",
        ]
        assert (coalescer.calls, coalescer.joined) == (2, 2)

    asyncio.run(scenario())


def test_a_flight_carries_whole_webhooks_up_to_its_bound() -> None:
    async def scenario() -> None:
        engine = _Engine()
        coalescer = SubmitCoalescer(engine.submit_many, max_messages=3)
        first = asyncio.create_task(coalescer.submit([inbound(1)]))
        await _until(lambda: len(engine.calls) == 1, "the first call")
        waiting = [
            asyncio.create_task(coalescer.submit([inbound(i), inbound(i + 10)])) for i in (2, 3)
        ]
        await _until(lambda: len(coalescer._waiting) == 2, "two waiting")
        for _ in range(3):
            engine.release.put_nowait(None)
        await asyncio.gather(first, *waiting)
        # 2 + 2 > 3: the second webhook waits for its own flight rather than being split.
        assert engine.calls[1:] == [["wamid.2", "wamid.12"], ["wamid.3", "wamid.13"]]

    asyncio.run(scenario())


def test_an_engine_error_reaches_every_webhook_of_that_flight_and_the_next_flight_goes_on() -> None:
    async def scenario() -> None:
        engine = _Engine()
        coalescer = SubmitCoalescer(engine.submit_many)
        first = asyncio.create_task(coalescer.submit([inbound(1)]))
        await _until(lambda: len(engine.calls) == 1, "the first call")
        joined = [asyncio.create_task(coalescer.submit([inbound(i)])) for i in (2, 3)]
        await _until(lambda: len(coalescer._waiting) == 2, "two waiting")
        engine.release.put_nowait(None)
        await _until(lambda: len(engine.calls) == 2, "the second call")
        engine.release.put_nowait(RuntimeError("engine unavailable"))
        await first
        for task in joined:
            with pytest.raises(RuntimeError, match="engine unavailable"):
                await task
        after = asyncio.create_task(coalescer.submit([inbound(4)]))
        await _until(lambda: len(engine.calls) == 3, "a later call")
        engine.release.put_nowait(None)
        assert [r.message_id for r in await after] == ["wamid.4"]

    asyncio.run(scenario())

"""The engine's asyncio face (actors.engine.aio_engine.AsyncEngine).

pytest-asyncio is not used: each test drives its own loop with ``asyncio.run``. The first
half drives the face over a stand-in blocking engine whose calls the test lets finish one
at a time (what the coalescer does, exactly); the second half runs real engines on both
bases.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from actors import AsyncEngine, EngineConfig
from actors.errors import EngineError
from actors.runtime import procs
from protocols import Accepted, InboundMessage, Outcome, ProviderSpec, Rejected
from tests.conftest import BASES, EngineFactory
from tests.engine_helpers import inbound, wait_for

README = Path(__file__).resolve().parent.parent / "README.md"


async def until(condition: Callable[[], object], what: str, deadline_s: float = 20.0) -> None:
    """Wait on the loop until ``condition`` holds; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        await asyncio.sleep(0.005)  # the poll interval of a condition wait


def ids(results: Sequence[Accepted | Rejected | Outcome | InboundMessage]) -> list[str]:
    return [r.message_id for r in results]


def engine_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("wae-engine")}


class GatedEngine:
    """A blocking engine whose ``submit_many`` calls finish one at a time, when released,
    and whose ``outcomes`` polls answer what the test hands them."""

    shutdown_report = None

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.polls = 0
        self._release: queue.Queue[BaseException | None] = queue.Queue()
        self._outcomes: queue.Queue[list[Outcome]] = queue.Queue()

    def outcomes(self, timeout: float = 1.0) -> list[Outcome]:
        self.polls += 1
        return self._outcomes.get(timeout=20)

    def answer_poll(self, *message_ids: str) -> None:
        self._outcomes.put(
            [Outcome(message_id=m, status="replied", reply="echo: hi") for m in message_ids]
        )

    def submit_many(self, messages: Sequence[InboundMessage]) -> list[Accepted | Rejected]:
        self.calls.append(ids(messages))
        error = self._release.get(timeout=20)
        if error is not None:
            raise error
        return [Accepted(message_id=m.message_id) for m in messages]

    def release(self, error: BaseException | None = None) -> None:
        self._release.put(error)


def gated(**kw: Any) -> tuple[GatedEngine, AsyncEngine]:
    fake = GatedEngine()
    kw.setdefault("max_waiting_messages", 100)
    return fake, AsyncEngine(engine=fake, **kw)  # type: ignore[arg-type]


# --- submissions, over a stand-in engine ------------------------------------------------------


def test_a_lone_submission_on_an_idle_engine_is_its_own_call_and_leaves_at_once() -> None:
    async def scenario() -> None:
        fake, aio = gated()
        task = asyncio.create_task(aio.submit_many([inbound(1), inbound(2)]))
        await asyncio.sleep(0)  # one turn of the loop: the task runs to its first wait
        # Handed to the engine thread within the call itself: no timer, no other turn.
        assert (aio.flights.calls, aio.waiting_messages) == (1, 0)
        await until(lambda: fake.calls, "the call")
        fake.release()
        assert ids(await task) == ["wamid.1", "wamid.2"]
        assert fake.calls == [["wamid.1", "wamid.2"]]
        assert (aio.flights.calls, aio.flights.joined) == (1, 0)
        await aio.aclose()

    asyncio.run(scenario())


def test_submissions_arriving_during_a_flight_share_the_next_call_and_get_their_own_results() -> (
    None
):
    async def scenario() -> None:
        fake, aio = gated()
        first = asyncio.create_task(aio.submit(inbound(1)))
        await until(lambda: len(fake.calls) == 1, "the first call")
        later = [
            asyncio.create_task(aio.submit_many([inbound(i), inbound(i + 100)])) for i in (2, 3, 4)
        ]
        await until(lambda: aio.waiting_messages == 6, "three waiting")
        fake.release()  # the first flight lands; the three fly together
        await until(lambda: len(fake.calls) == 2, "the second call")
        fake.release()
        assert (await first).message_id == "wamid.1"
        assert [ids(await t) for t in later] == [
            ["wamid.2", "wamid.102"],
            ["wamid.3", "wamid.103"],
            ["wamid.4", "wamid.104"],
        ]
        assert fake.calls[1] == [
            "wamid.2",
            "wamid.102",
            "wamid.3",
            "wamid.103",
            "wamid.4",
            "wamid.104",
        ]
        assert (aio.flights.calls, aio.flights.joined, aio.flights.largest) == (2, 2, 6)
        await aio.aclose()

    asyncio.run(scenario())


def test_a_flight_carries_whole_submissions_up_to_its_bound() -> None:
    async def scenario() -> None:
        fake, aio = gated(max_flight_messages=3)
        first = asyncio.create_task(aio.submit(inbound(1)))
        await until(lambda: len(fake.calls) == 1, "the first call")
        waiting = [
            asyncio.create_task(aio.submit_many([inbound(i), inbound(i + 10)])) for i in (2, 3)
        ]
        await until(lambda: aio.waiting_messages == 4, "two waiting")
        for _ in range(3):
            fake.release()
        await asyncio.gather(first, *waiting)
        # 2 + 2 > 3: the second waits for its own flight rather than being split.
        assert fake.calls[1:] == [["wamid.2", "wamid.12"], ["wamid.3", "wamid.13"]]
        await aio.aclose()

    asyncio.run(scenario())


def test_an_engine_error_reaches_every_caller_of_that_flight_and_the_next_flight_goes_on() -> None:
    async def scenario() -> None:
        fake, aio = gated()
        first = asyncio.create_task(aio.submit(inbound(1)))
        await until(lambda: len(fake.calls) == 1, "the first call")
        joined = [asyncio.create_task(aio.submit(inbound(i))) for i in (2, 3)]
        await until(lambda: aio.waiting_messages == 2, "two waiting")
        fake.release()
        await until(lambda: len(fake.calls) == 2, "the second call")
        fake.release(RuntimeError("engine unavailable"))
        await first
        for task in joined:
            with pytest.raises(RuntimeError, match="engine unavailable"):
                await task
        after = asyncio.create_task(aio.submit(inbound(4)))
        await until(lambda: len(fake.calls) == 3, "a later call")
        fake.release()
        assert (await after).message_id == "wamid.4"
        await aio.aclose()

    asyncio.run(scenario())


def test_a_bad_item_fails_only_its_own_caller_and_a_cancelled_waiting_one_is_never_sent() -> None:
    async def scenario() -> None:
        fake, aio = gated()
        first = asyncio.create_task(aio.submit(inbound(1)))
        await until(lambda: len(fake.calls) == 1, "the first call")
        with pytest.raises(TypeError, match="not str"):
            await aio.submit_many([inbound(2), "junk"])  # type: ignore[list-item]
        gives_up = asyncio.create_task(aio.submit(inbound(3)))
        stays = asyncio.create_task(aio.submit(inbound(4)))
        await until(lambda: aio.waiting_messages == 2, "two waiting")
        gives_up.cancel()
        await asyncio.gather(gives_up, return_exceptions=True)
        assert aio.waiting_messages == 1
        fake.release()
        await until(lambda: len(fake.calls) == 2, "the second call")
        fake.release()
        await asyncio.gather(first, stays)
        assert fake.calls == [["wamid.1"], ["wamid.4"]]
        await aio.aclose()

    asyncio.run(scenario())


def test_past_max_waiting_messages_a_submission_is_refused_capacity_without_a_call() -> None:
    async def scenario() -> None:
        fake, aio = gated(max_waiting_messages=2)
        first = asyncio.create_task(aio.submit(inbound(1)))
        await until(lambda: len(fake.calls) == 1, "the first call")
        waits = asyncio.create_task(aio.submit_many([inbound(2), inbound(3)]))
        await until(lambda: aio.waiting_messages == 2, "two waiting")
        refused = await aio.submit(inbound(4))
        assert isinstance(refused, Rejected)
        assert refused.reason == "capacity"
        assert "max_waiting_messages=2" in refused.detail
        fake.release()
        fake.release()
        await asyncio.gather(first, waits)
        assert fake.calls == [["wamid.1"], ["wamid.2", "wamid.3"]]
        assert aio.flights.refused == 1
        await aio.aclose()

    asyncio.run(scenario())


def test_aclose_ends_the_engine_thread_and_later_calls_raise() -> None:
    before = engine_threads()

    async def scenario() -> None:
        fake, aio = gated()
        task = asyncio.create_task(aio.submit(inbound(1)))
        await until(lambda: fake.calls, "the call")
        waiting = asyncio.create_task(aio.submit(inbound(2)))
        await until(lambda: aio.waiting_messages == 1, "one waiting")
        closing = asyncio.create_task(aio.aclose())
        await asyncio.sleep(0)  # aclose has begun: nothing more goes to the engine thread
        fake.release()
        assert (await task).message_id == "wamid.1"  # the call in progress finished first
        with pytest.raises(EngineError, match="closed"):
            await waiting  # never sent
        await closing
        assert fake.calls == [["wamid.1"]]
        assert aio.closed
        with pytest.raises(EngineError, match="closed"):
            await aio.submit(inbound(2))
        assert [b async for b in aio.outcome_batches()] == []  # ends at once

    asyncio.run(scenario())
    wait_for(lambda: not engine_threads() - before, what="the engine thread to end")


def test_outcomes_a_consumer_left_unseen_go_to_the_next_iteration() -> None:
    async def scenario() -> None:
        fake, aio = gated()

        # A consumer cancelled during a poll: the poll runs on, and its outcomes are kept.
        async def first_batch() -> list[Outcome]:
            return await anext(aio.outcome_batches())

        consumer = asyncio.create_task(first_batch())
        await until(lambda: fake.polls == 1, "the first poll")
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        fake.answer_poll("wamid.1", "wamid.2", "wamid.3")
        fake.answer_poll("wamid.4")  # for a later poll
        # A consumer that leaves after one outcome: the rest are kept.
        async with contextlib.aclosing(aio.outcomes()) as stream:
            async for outcome in stream:
                assert outcome.message_id == "wamid.1"
                break
        seen: list[str] = []
        async with contextlib.aclosing(aio.outcomes()) as stream:
            async for outcome in stream:
                seen.append(outcome.message_id)
                if len(seen) == 3:
                    break
        assert seen == ["wamid.2", "wamid.3", "wamid.4"]  # each once, in order
        await aio.aclose()

    asyncio.run(scenario())


def test_both_an_engine_and_the_arguments_to_build_one_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not both"):
        AsyncEngine(EngineConfig(), engine=GatedEngine())  # type: ignore[arg-type]


# --- real engines, both bases -----------------------------------------------------------------


def config(tmp_path: Path, **kw: Any) -> EngineConfig:
    kw.setdefault("dead_letter_path", str(tmp_path / "dead-letters.bin"))
    kw.setdefault("intake_path", str(tmp_path / "intake" / "intake.db"))
    return EngineConfig(**kw)


async def add_edges(aio: AsyncEngine, *, latency_s: float = 0.0) -> None:
    await aio.add_provider(
        ProviderSpec(name="echo", kind="echo", priority=10, options={"latency_s": latency_s})
    )
    await aio.add_account("acct-1")


@pytest.mark.parametrize("base", BASES)
def test_async_with_starts_submits_streams_outcomes_and_shuts_down(
    base: str, tmp_path: Path
) -> None:
    before = engine_threads()
    aio = AsyncEngine(config(tmp_path), base=base, seed=7)
    events: list[str] = []

    async def scenario() -> None:
        async with aio:
            loop_thread = threading.current_thread()
            seen_on: list[threading.Thread] = []

            def on_event(event: Any) -> None:
                seen_on.append(threading.current_thread())
                events.append(event.kind)

            sub = await aio.subscribe("acct-1", on_event)  # before the account: "connected"
            await add_edges(aio)
            answers = await asyncio.gather(*(aio.submit(inbound(i)) for i in range(8)))
            assert all(isinstance(a, Accepted) for a in answers)
            assert ids(answers) == [f"wamid.{i}" for i in range(8)]
            got: list[Outcome] = []
            async for outcome in aio.outcomes():
                got.append(outcome)
                if len(got) == 8:
                    break
            assert sorted(ids(got)) == sorted(f"wamid.{i}" for i in range(8))
            assert {o.status for o in got} == {"replied"}
            stats = await aio.stats()
            assert (stats.in_flight, stats.actor("router").state) == (0, "up")  # type: ignore[union-attr]
            await until(lambda: events, "the account's status event")
            assert events == ["connected"]
            assert set(seen_on) == {loop_thread}  # delivered during a poll, called on the loop
            assert await aio.unsubscribe(sub)

    asyncio.run(scenario())
    report = aio.engine.shutdown_report
    assert report is not None
    assert report.stages[-1].name == "actor_system"
    assert aio.closed
    assert not [p for p in aio.engine.pids if procs.alive(p)], "an actor process outlived it"
    wait_for(lambda: not engine_threads() - before, what="the engine thread to end")


@pytest.mark.parametrize("base", BASES)
def test_leaving_async_with_by_an_exception_shuts_the_engine_down(
    base: str, tmp_path: Path
) -> None:
    aio = AsyncEngine(config(tmp_path), base=base, seed=7)

    async def scenario() -> None:
        async with aio:
            await add_edges(aio)
            assert isinstance(await aio.submit(inbound(1)), Accepted)
            raise LookupError("the application failed")

    with pytest.raises(LookupError, match="the application failed"):
        asyncio.run(scenario())
    assert aio.engine.shutdown_report is not None
    assert aio.closed
    assert not [p for p in aio.engine.pids if procs.alive(p)], "an actor process outlived it"


@pytest.mark.parametrize("base", BASES)
def test_concurrent_submitters_share_engine_calls_and_an_engine_error_reaches_all_joined(
    base: str, make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(base, echo={"latency_s": 0.0}, accounts=("acct-1",))
    real = engine.submit_many
    calls: list[list[str]] = []
    gate = threading.Event()

    def counted(messages: Sequence[InboundMessage]) -> list[Accepted | Rejected]:
        calls.append(ids(messages))
        n = len(calls)
        if n in (2, 4):  # hold a flight so that others gather behind it
            assert gate.wait(20)
            gate.clear()
        if n == 5:
            raise EngineError("the router is gone")
        return real(messages)

    monkeypatch.setattr(engine, "submit_many", counted)
    aio = AsyncEngine(engine=engine)

    async def scenario() -> None:
        # Idle: a lone submission is its own call, carrying only its own messages.
        assert ids(await aio.submit_many([inbound(1), inbound(2)])) == ["wamid.1", "wamid.2"]
        assert calls == [["wamid.1", "wamid.2"]]
        # Busy: three callers wait behind a flight and share the next call.
        held = asyncio.create_task(aio.submit(inbound(3)))
        await until(lambda: len(calls) == 2, "the held call")
        joined = [
            asyncio.create_task(aio.submit_many([inbound(i), inbound(i + 100)])) for i in (4, 5, 6)
        ]
        await until(lambda: aio.waiting_messages == 6, "three waiting")
        gate.set()
        answers = [await t for t in joined]
        assert [ids(a) for a in answers] == [[f"wamid.{i}", f"wamid.{i + 100}"] for i in (4, 5, 6)]
        assert all(isinstance(r, Accepted) for a in answers for r in a)
        assert (await held).message_id == "wamid.3"
        assert calls[2] == ["wamid.4", "wamid.104", "wamid.5", "wamid.105", "wamid.6", "wamid.106"]
        assert (aio.flights.calls, aio.flights.joined) == (3, 2)
        # An error of the engine's call reaches every caller that call carried.
        held = asyncio.create_task(aio.submit(inbound(7)))
        await until(lambda: len(calls) == 4, "the second held call")
        doomed = [asyncio.create_task(aio.submit(inbound(i))) for i in (8, 9)]
        await until(lambda: aio.waiting_messages == 2, "two waiting")
        gate.set()
        assert (await held).message_id == "wamid.7"
        for task in doomed:
            with pytest.raises(EngineError, match="the router is gone"):
                await task
        assert calls[-1] == ["wamid.8", "wamid.9"]
        # And the engine goes on: the next submission is admitted.
        assert isinstance(await aio.submit(inbound(8)), Accepted)
        await aio.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("base", BASES)
def test_the_outcome_iteration_ends_at_shutdown_after_what_the_shutdown_left(
    base: str, tmp_path: Path
) -> None:
    # No drain and no durable store: the shutdown itself ends the messages in flight
    # (abandoned), and those outcomes exist only after it.
    aio = AsyncEngine(config(tmp_path, durability="off", drain_timeout_s=0.0), base=base, seed=7)
    got: list[Outcome] = []

    async def scenario() -> None:
        async with aio:
            await add_edges(aio, latency_s=30.0)
            answers = await aio.submit_many([inbound(i) for i in range(5)])
            assert all(isinstance(a, Accepted) for a in answers)

            async def consume() -> None:
                async for outcome in aio.outcomes():
                    got.append(outcome)

            consumer = asyncio.create_task(consume())
            report = await aio.shutdown()
            assert sorted(report.abandoned) == sorted(f"wamid.{i}" for i in range(5))
            await asyncio.wait_for(consumer, 30)  # it ends by itself

    asyncio.run(scenario())
    assert sorted(ids(got)) == sorted(f"wamid.{i}" for i in range(5))  # each exactly once
    assert {o.status for o in got} == {"abandoned"}


# --- README ------------------------------------------------------------------------------------


def test_the_asyncio_example_in_readme_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = README.read_text()
    section = text[text.index("## Embedding the engine") : text.index("## Running against")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    example = next((b for b in blocks if "AsyncEngine" in b), None)
    assert example, "README has no AsyncEngine example under 'Embedding the engine'"
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "['Accepted', 'Accepted', 'Accepted', 'Accepted', 'Accepted']" in out
    assert "5 replied" in out
    assert "calls=2" in out  # one alone, then the four that arrived meanwhile together
    assert "['drain', 'accounts', 'ai_pool', 'router', 'actor_system']" in out

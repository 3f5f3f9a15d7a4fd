"""AsyncRunner: coroutines on a private loop thread, polled from the caller's thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from actors.runtime.aio import AsyncRunner, RunnerClosedError, RunnerFullError
from tests.engine_helpers import wait_for


def _runner(n: int = 10) -> AsyncRunner[str]:
    return AsyncRunner(max_in_flight=n, name="test-runner")


def test_many_calls_run_at_once_and_their_results_are_polled() -> None:
    runner = _runner(500)
    gate = threading.Event()

    async def call(i: int) -> str:
        while not gate.is_set():
            await asyncio.sleep(0.005)
        return f"r{i}"

    try:
        for i in range(500):
            runner.submit(f"k{i}", lambda i=i: call(i))
        assert runner.in_flight == 500  # all started, none finished: nothing blocks
        gate.set()
        results: dict[str, object] = {}
        wait_for(
            lambda: bool(results.update(runner.poll())) or len(results) == 500, what="500 results"
        )
        assert results == {f"k{i}": f"r{i}" for i in range(500)}
        assert runner.in_flight == 0
    finally:
        runner.close()


def test_an_exception_is_a_result_not_a_crash() -> None:
    runner = _runner()

    async def boom() -> str:
        raise ConnectionError("refused")

    try:
        runner.submit("k", boom)
        got: list[tuple[str, object]] = []
        wait_for(lambda: bool(got.extend(runner.poll())) or bool(got), what="a result")
        key, result = got[0]
        assert key == "k"
        assert isinstance(result, ConnectionError)
    finally:
        runner.close()


def test_the_in_flight_bound_refuses_the_next_call() -> None:
    runner = _runner(2)
    stop = threading.Event()

    async def wait() -> str:
        while not stop.is_set():
            await asyncio.sleep(0.005)
        return "done"

    try:
        runner.submit("a", wait)
        runner.submit("b", wait)
        with pytest.raises(RunnerFullError, match="2 calls already in flight"):
            runner.submit("c", wait)
        with pytest.raises(ValueError, match="already running"):
            runner.submit("a", wait)
        assert runner.cancel("a")
        runner.submit("c", wait)  # the cancelled call freed its place
    finally:
        stop.set()
        runner.close()


def test_close_stops_the_thread_and_refuses_new_calls() -> None:
    runner = _runner()

    async def quick() -> str:
        return "x"

    runner.submit("k", quick)
    thread = runner._thread
    runner.close()
    assert thread is not None
    assert not thread.is_alive()
    with pytest.raises(RunnerClosedError):
        runner.submit("k2", quick)

"""Real I/O for sans-IO adapters: one asyncio loop in a thread of the actor's process.

Providers and transports talk to the actor in the sans-IO shape (``start`` a call, ``poll``
for what finished, ``next_due`` for when to look again). For HTTP edges, ``start`` hands a
coroutine to this runner's event loop, which keeps any number of requests in flight on
pooled keep-alive connections without blocking the actor's mailbox; the actor polls the
runner every ``poll_interval_s`` while something is in flight.

The thread is started on first use, inside the actor process (never before Thespian forks).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["AsyncRunner", "RunnerClosedError", "RunnerFullError"]

T = TypeVar("T")


class RunnerFullError(RuntimeError):
    """Raised by ``AsyncRunner.submit`` when ``max_in_flight`` calls are already running."""


class RunnerClosedError(RuntimeError):
    """Raised by ``AsyncRunner.submit`` after ``close``."""


class AsyncRunner(Generic[T]):
    """Run coroutines on a private event loop; collect their results from any thread.

    Args:
        max_in_flight: the most calls running at once (a bound, not a queue).
        name: the thread's name, for diagnostics.
        setup: optional coroutine function run once on the loop before the first call
            (e.g. to open an ``aiohttp.ClientSession``); ``teardown`` runs at ``close``.
    """

    def __init__(
        self,
        *,
        max_in_flight: int,
        name: str,
        setup: Callable[[], Awaitable[None]] | None = None,
        teardown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
        self.max_in_flight = max_in_flight
        self.name = name
        self._setup = setup
        self._teardown = teardown
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._futures: dict[str, concurrent.futures.Future[T]] = {}
        self._done: deque[tuple[str, T | BaseException]] = deque()
        self._closed = False
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return len(self._futures)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The runner's loop (started on first access)."""
        if self._loop is None:
            self._start()
        assert self._loop is not None
        return self._loop

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop
        if self._setup is not None:
            asyncio.run_coroutine_threadsafe(_call(self._setup), loop).result()

    def submit(self, key: str, make: Callable[[], Awaitable[T]]) -> None:
        """Start ``make()`` on the loop; its result (or exception) is polled under ``key``.

        Raises:
            RunnerFullError: ``max_in_flight`` calls are running.
            RunnerClosedError: the runner was closed.
            ValueError: ``key`` is already running.
        """
        if self._closed:
            raise RunnerClosedError(f"{self.name}: runner is closed")
        if key in self._futures:
            raise ValueError(f"{self.name}: {key!r} is already running")
        if len(self._futures) >= self.max_in_flight:
            raise RunnerFullError(f"{self.name}: {self.max_in_flight} calls already in flight")
        future = asyncio.run_coroutine_threadsafe(_call(make), self.loop)
        self._futures[key] = future
        future.add_done_callback(functools.partial(self._finished, key))

    def _finished(self, key: str, future: concurrent.futures.Future[T]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        with self._lock:
            self._done.append((key, exc if exc is not None else future.result()))

    def poll(self) -> list[tuple[str, T | BaseException]]:
        """Every call finished since the last poll: (key, result or exception)."""
        out: list[tuple[str, T | BaseException]] = []
        with self._lock:
            while self._done:
                key, result = self._done.popleft()
                if self._futures.pop(key, None) is not None:
                    out.append((key, result))
        return out

    def cancel(self, key: str) -> bool:
        """Cancel a running call; it produces no result."""
        future = self._futures.pop(key, None)
        if future is None:
            return False
        future.cancel()
        return True

    async def _finish_tasks(self) -> None:
        await _cancel_others()
        if self._teardown is not None:
            await self._teardown()
        # Host name lookups run on the loop's default executor: end its threads too.
        await asyncio.get_running_loop().shutdown_default_executor()

    def close(self, timeout_s: float = 2.0) -> None:
        """Cancel what runs, run ``teardown``, stop the loop and join the thread."""
        if self._closed:
            return
        self._closed = True
        for key in list(self._futures):
            self.cancel(key)
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        # Best effort: a teardown that fails or hangs must not keep the actor alive.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._finish_tasks(), loop).result(timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        if not thread.is_alive():
            loop.close()


async def _cancel_others() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _call(make: Callable[[], Awaitable[Any]]) -> Any:
    return await make()

"""``AsyncEngine``: the engine's asyncio face, for an asyncio application that embeds it.

Every call of the blocking :class:`Engine` is a Thespian ask, and the engine serialises
its calls with a lock anyway (Thespian's external API is not thread-safe). So the asyncio
face runs every engine call on ONE dedicated thread and awaits it: the event loop never
blocks, and a second thread would only wait for the lock.

Submissions from concurrent callers (webhooks, say) are joined by
:class:`~actors.engine.aio_coalesce.Coalescer`: one ``submit_many`` per flight, one
intake commit for all of them. A submission leaves at once when nothing is in flight;
those that arrive meanwhile join the next flight, which leaves the moment the current one
lands. There is no timer, and each caller gets its own messages' answers, in order, as
soon as the flight that carried them has been admitted.

Outcomes come as an async iterator over long polls (``Engine.outcomes(wait_s)``) on the
engine thread (:mod:`actors.engine.aio_outcomes`). A poll holds the thread for up to
``wait_s`` when nothing is ready, and a submission that arrives during it waits for it:
hence the short default wait, and no wait at all while submissions are in flight.

On ``multiprocTCPBase`` starting the engine forks its actor processes. ``async with
AsyncEngine(config)`` starts it on the engine thread (the fork takes only that thread
along); an application with threads of its own that may hold locks starts the blocking
``Engine`` before them and wraps it: ``AsyncEngine(engine=started)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from actors.config import EngineConfig
from actors.engine.aio_coalesce import (
    MAX_FLIGHT_MESSAGES,
    Coalescer,
    Flight,
    FlightStats,
    refuse_waiting,
)
from actors.engine.aio_outcomes import OutcomeFeed
from actors.engine.facade import Engine
from actors.engine.listeners import Subscription
from actors.errors import EngineError
from protocols import (
    Accepted,
    AccountEvent,
    CommandResult,
    InboundMessage,
    Outcome,
    ProviderSpec,
    Rejected,
    Scalar,
    ShutdownReport,
    StatsReply,
)

__all__ = ["AsyncEngine"]

T = TypeVar("T")
Results = list[Accepted | Rejected]

DEFAULT_WAIT_S = 0.05
"""How long one outcome poll waits for a first outcome: short, because a submission that
arrives meanwhile waits for the poll (the engine thread is busy with it)."""


class AsyncEngine:
    """The embedded engine for asyncio; see README "Embedding the engine".

    Build it from the arguments of :class:`Engine` (``AsyncEngine(config, base=...)``) or
    around an engine (``AsyncEngine(engine=engine)``, started or not). ``async with``
    starts the engine (unless it runs already) and, on the way out — an exception
    included — shuts it down and ends the engine thread.

    Args:
        config: the engine's limits (as for :class:`Engine`).
        engine: an engine to wrap instead of building one.
        max_flight_messages: the most messages one ``submit_many`` call carries.
        max_waiting_messages: the most messages waiting for a flight; past it a
            submission is answered ``Rejected(capacity)`` at once. Default: the engine's
            ``config.capacity`` (more could not be admitted at once anyway).
        **engine_kwargs: ``base``, ``admin_port``, ``ask_timeout_s``, ``seed`` of
            :class:`Engine`.

    Raises:
        TypeError: both an engine and arguments to build one were given.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        engine: Engine | None = None,
        max_flight_messages: int = MAX_FLIGHT_MESSAGES,
        max_waiting_messages: int | None = None,
        **engine_kwargs: Any,
    ) -> None:
        if engine is not None and (config is not None or engine_kwargs):
            raise TypeError("AsyncEngine takes an engine or the arguments to build one, not both")
        self.engine = engine if engine is not None else Engine(config, **engine_kwargs)
        limit = (
            self.engine.config.capacity if max_waiting_messages is None else max_waiting_messages
        )
        self._coalescer: Coalescer[asyncio.Future[Results]] = Coalescer(
            max_flight_messages=max_flight_messages, max_waiting_messages=limit
        )
        # No thread exists until the first call (starting a TCP-base engine forks).
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wae-engine")
        self._closed = False
        self._feed = OutcomeFeed(
            self.engine,
            self._send,
            closed=lambda: self._closed,
            busy=lambda: self._coalescer.busy,
        )

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncEngine:
        try:
            return await self.start()
        except BaseException:
            await self.aclose()  # a failed start leaves nothing to shut down
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.shutdown()
        finally:
            await self.aclose()

    async def start(self) -> AsyncEngine:
        """Start the engine on the engine thread, unless it was started before.

        Raises:
            StoreLockedError, StoreError, EngineError: as ``Engine.start``.
        """
        # Engine.__enter__ starts a new engine and leaves a started one as it is.
        await self._call(self.engine.__enter__)
        return self

    async def shutdown(self) -> ShutdownReport:
        """``Engine.shutdown`` (idempotent): ends the outcome iterators after their last
        outcomes. The engine thread stays for what comes after; :meth:`aclose` ends it."""
        return await self._call(self.engine.shutdown)

    async def aclose(self) -> None:
        """End the engine thread once the calls already made have finished (idempotent).

        The engine is left as it is (``async with`` shuts it down first): this ends the
        asyncio face only. Later calls raise ``EngineError``; the outcome iterators end.
        """
        if self._closed:
            return
        self._closed = True
        try:
            # The thread runs calls in order: when this one runs, every earlier call is done.
            await asyncio.wrap_future(self._thread.submit(_nothing))
        finally:
            self._thread.shutdown(wait=False)  # the thread is idle: it ends at once

    @property
    def closed(self) -> bool:
        """True after :meth:`aclose`: no engine call can be made through this object."""
        return self._closed

    # --- messages ---------------------------------------------------------------------------

    async def submit(self, message: InboundMessage) -> Accepted | Rejected:
        """Submit one message; see :meth:`submit_many`."""
        return (await self.submit_many([message]))[0]

    async def submit_many(self, messages: Iterable[InboundMessage]) -> Results:
        """Submit messages; one ``Accepted``/``Rejected`` each, in order (``Engine.submit_many``).

        Concurrent calls share engine calls: this one leaves at once when no call is in
        flight, else with the next one. It returns as soon as its own messages are
        admitted (committed to the intake store when accepted).

        Raises:
            TypeError: an item is not an ``InboundMessage`` (nothing is submitted).
            EngineError: the asyncio face is closed.
            Exception: whatever the engine call that carried these messages raised (every
                caller whose messages it carried gets the same exception).
        """
        batch = tuple(messages)
        for msg in batch:
            # Checked per caller: one caller's bad item must not fail a shared flight.
            if not isinstance(msg, InboundMessage):
                raise TypeError(f"submit takes InboundMessage, not {type(msg).__name__}")
        self._check_open()
        if not batch:
            return []
        waiter: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        if not self._coalescer.add(batch, waiter):
            c = self._coalescer
            return refuse_waiting(batch, c.waiting_messages, c.max_waiting_messages)
        self._fly()
        try:
            return await waiter
        except asyncio.CancelledError:
            self._coalescer.withdraw(waiter)  # not flown yet: then it is never submitted
            raise

    def _fly(self) -> None:
        # Hand the next flight to the engine thread now: no task, no timer between them.
        flight = self._coalescer.take()
        if flight is None:
            return
        try:
            done = asyncio.wrap_future(self._send(self.engine.submit_many, flight.messages))
        except EngineError as exc:  # closed meanwhile: the flight fails at once
            done = asyncio.get_running_loop().create_future()
            done.set_exception(exc)
        done.add_done_callback(lambda done: self._land(flight, done))

    def _land(self, flight: Flight[asyncio.Future[Results]], done: asyncio.Future[Results]) -> None:
        self._coalescer.landed(flight)
        try:
            answers = flight.split(done.result())
        except Exception as exc:  # the engine's error reaches every caller of the flight
            for waiter, _ in flight.parts:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for waiter, results in answers:
                if not waiter.done():  # its caller may have been cancelled meanwhile
                    waiter.set_result(results)
        self._fly()

    @property
    def flights(self) -> FlightStats:
        """The engine calls the submissions made: how many, and how many shared one."""
        return self._coalescer.stats

    @property
    def waiting_messages(self) -> int:
        """Messages waiting for the next flight (at most ``max_waiting_messages``)."""
        return self._coalescer.waiting_messages

    def outcome_batches(
        self, wait_s: float = DEFAULT_WAIT_S
    ) -> AsyncGenerator[list[Outcome], None]:
        """The engine's outcomes, one non-empty list per poll, until the engine is shut down.

        Each poll is ``Engine.outcomes(wait_s)`` on the engine thread (it waits up to
        ``wait_s`` for a first outcome; not at all while submissions are in flight). The
        iteration ends after the outcomes the shutdown left (none is dropped), or when
        the asyncio face is closed. Events for :meth:`subscribe` callbacks are delivered
        during the polls.

        Raises:
            ValueError: ``wait_s`` is negative (at the call).
            Exception: whatever a poll raised (the iteration ends with it).
        """
        return self._feed.batches(_wait(wait_s))

    def outcomes(self, wait_s: float = DEFAULT_WAIT_S) -> AsyncGenerator[Outcome, None]:
        """The engine's outcomes one by one, until it is shut down; see :meth:`outcome_batches`.

        Leaving the loop early (``break``) keeps the outcomes not yet seen for the next
        iteration: none is dropped.
        """
        return self._feed.one_by_one(_wait(wait_s))

    # --- management -------------------------------------------------------------------------

    async def add_provider(self, spec: ProviderSpec) -> CommandResult:
        """``Engine.add_provider`` on the engine thread."""
        return await self._call(self.engine.add_provider, spec)

    async def remove_provider(self, name: str) -> CommandResult:
        """``Engine.remove_provider`` on the engine thread."""
        return await self._call(self.engine.remove_provider, name)

    async def add_account(
        self,
        account_id: str,
        *,
        transport: str = "loopback",
        options: Mapping[str, Scalar] | None = None,
    ) -> None:
        """``Engine.add_account`` on the engine thread (raises what it raises)."""

        def add() -> None:
            self.engine.add_account(account_id, transport=transport, options=options)

        await self._call(add)

    async def remove_account(self, account_id: str) -> CommandResult:
        """``Engine.remove_account`` on the engine thread."""
        return await self._call(self.engine.remove_account, account_id)

    async def subscribe(
        self, account_id: str, callback: Callable[[AccountEvent], object]
    ) -> Subscription:
        """Call ``callback`` on this event loop with the account's status events.

        The events arrive during outcome polls (on the engine thread) and are handed to
        the loop; end the subscription with :meth:`unsubscribe` (the engine's
        subscriptions are touched on its thread only).

        Raises:
            ListenerLimitError: the account already has ``max_listeners`` subscriptions.
        """
        loop = asyncio.get_running_loop()

        def on_loop(event: AccountEvent) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(callback, event)

        return await self._call(self.engine.subscribe, account_id, on_loop)

    async def unsubscribe(self, subscription: Subscription) -> bool:
        """End ``subscription``; returns whether it was active (``Subscription.cancel``)."""
        return await self._call(subscription.cancel)

    async def stats(self) -> StatsReply:
        """``Engine.stats`` on the engine thread (raises ``EngineError`` when not running)."""
        return await self._call(self.engine.stats)

    async def ask_child(self, role: str, name: str, message: Any) -> Any:
        """``Engine.ask_child`` on the engine thread."""
        return await self._call(self.engine.ask_child, role, name, message)

    # --- the engine thread ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("the AsyncEngine is closed: its engine thread has ended")

    def _send(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        self._check_open()
        return self._thread.submit(fn, *args)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._send(fn, *args))


def _wait(wait_s: float) -> float:
    if not wait_s >= 0:
        raise ValueError(f"wait_s must be >= 0, got {wait_s!r}")
    return wait_s


def _nothing() -> None:
    """The last call before the engine thread ends (see :meth:`AsyncEngine.aclose`)."""

"""The router's answers to its requests, as a pure object: it says what to send, not sends.

The gateway asks the router to admit batches (``SubmitBatch``) and to hand over outcomes
(``CollectOutcomes``); the supervisor asks it to drain before shutdown; the pool and the
accounts report results. The policy around those answers lives here, with the clock
passed in, so that tests need no actor system:

- A request id asked again gets the same answer, from the last answer kept, and is never
  applied twice: the gateway asks again when our answer was late or lost.
- A request tagged with another router generation (a reused TCP port) is answered empty,
  with no side effect: the caller relocates and retries. Results from the pool or an
  account tagged with another generation are dropped: their messages were readmitted.
- A collection that finds nothing waits (a long poll), up to its ``wait_s``, for the first
  outcome or account event; a newer collection ends an older one empty, because the
  gateway asks one at a time and no longer waits for the older.
- Account events for the gateway's listeners are kept up to :data:`MAX_EVENTS`; older
  ones are dropped and counted (``events_dropped``).
- A drain ends when the router holds no message any more, or at its deadline, abandoning
  what is left; the supervisor gets the count, the abandoned ids and the last outcomes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from actors.router.core import RouterCore
from actors.router.effects import Effect, Send, Warn
from actors.runtime.wiring import Address, DrainDone
from protocols import (
    AccountEvent,
    AIResults,
    CollectOutcomes,
    DeliveryBatch,
    OutcomeBatch,
    SubmitBatch,
    SubmitResults,
)

__all__ = ["MAX_EVENTS", "RequestDesk"]

MAX_EVENTS = 1000
"""Account events kept for the gateway's listeners; older ones are dropped and counted."""


@dataclass(frozen=True, slots=True)
class _Collector:
    """A long-polling collection: answered at the first outcome or at ``until``."""

    asker: Address
    max_items: int
    until: float
    request_id: int


@dataclass(frozen=True, slots=True)
class _Drain:
    supervisor: Address
    deadline: float
    in_flight_at_start: int


class RequestDesk:
    """The answers of one router generation; see the module docstring.

    Args:
        core: the router's core, which admits, routes and ends the messages.
        generation: the router's generation, which tags every answer.
    """

    __slots__ = (
        "_collector",
        "_drain",
        "_events",
        "_last_batch",
        "_last_submit",
        "collections",
        "core",
        "events_dropped",
        "generation",
    )

    def __init__(self, core: RouterCore, generation: int) -> None:
        self.core = core
        self.generation = generation
        self.events_dropped = 0
        self.collections = 0  # CollectOutcomes asked
        self._events: deque[AccountEvent] = deque(maxlen=MAX_EVENTS)
        self._collector: _Collector | None = None
        self._last_submit: SubmitResults | None = None
        self._last_batch: OutcomeBatch | None = None
        self._drain: _Drain | None = None

    # --- the gateway ------------------------------------------------------------------------

    def submit(self, msg: SubmitBatch, sender: Address, now: float) -> list[Effect]:
        """Admit a batch and answer it, or answer it again from the last answer.

        Returns:
            The answer to ``sender``, then a sampled warning per occupancy alert.
        """
        if not self._for_me(msg.generation):
            empty = SubmitResults(results=(), generation=self.generation, request_id=msg.request_id)
            return [self._ignored(msg.generation), Send(to=sender, msg=empty)]
        last = self._last_submit
        if msg.request_id and last is not None and last.request_id == msg.request_id:
            return [Send(to=sender, msg=last)]
        results = self.core.submit(msg.messages, now, readmit=msg.readmit, deadlines=msg.deadlines)
        reply = SubmitResults.trusted(
            results=tuple(results), generation=self.generation, request_id=msg.request_id
        )
        self._last_submit = reply
        effects: list[Effect] = [Send(to=sender, msg=reply)]
        effects += [Warn(text=alert, sample="occupancy") for alert in self.core.alerts]
        self.core.alerts.clear()
        return effects

    def collect(self, msg: CollectOutcomes, sender: Address, now: float) -> list[Effect]:
        """Answer a collection now, or keep it waiting until :meth:`settle` answers it.

        Returns:
            The empty answer to an older collection this one ends, and this one's answer
            when something is ready or it does not wait.
        """
        self.collections += 1
        if not self._for_me(msg.generation):
            empty = OutcomeBatch(generation=self.generation, request_id=msg.request_id)
            return [self._ignored(msg.generation), Send(to=sender, msg=empty)]
        last = self._last_batch
        if msg.request_id and last is not None and last.request_id == msg.request_id:
            return [Send(to=sender, msg=last)]  # the same outcomes, not lost ones
        effects: list[Effect] = []
        old = self._collector
        if old is not None:
            empty = OutcomeBatch(generation=self.generation, request_id=old.request_id)
            effects.append(Send(to=old.asker, msg=empty))
        self._collector = _Collector(sender, msg.max_items, now + msg.wait_s, msg.request_id)
        if self.core.outcomes_ready or self._events or msg.wait_s <= 0:
            effects.append(self._answer_collector())
        return effects

    def event(self, msg: AccountEvent) -> None:
        """Keep an account event for the next collection, dropping the oldest past the bound."""
        if len(self._events) == MAX_EVENTS:
            self.events_dropped += 1
        self._events.append(msg)

    def _for_me(self, generation: int) -> bool:
        return not generation or generation == self.generation

    def _ignored(self, generation: int) -> Warn:
        return Warn(text=f"request for router generation {generation} ignored")

    def _answer_collector(self) -> Send:
        assert self._collector is not None
        collector, self._collector = self._collector, None
        events = tuple(self._events)
        self._events.clear()
        batch = OutcomeBatch.trusted(
            outcomes=tuple(self.core.collect(collector.max_items)),
            events=events,
            generation=self.generation,
            request_id=collector.request_id,
        )
        self._last_batch = batch
        return Send(to=collector.asker, msg=batch)

    # --- the pool and the accounts ---------------------------------------------------------

    def ai_results(self, msg: AIResults, now: float) -> None:
        """Hand the pool's results to the core, unless meant for another generation."""
        if msg.generation == self.generation:
            self.core.on_ai_results(msg.results, now)

    def deliveries(self, msg: DeliveryBatch, now: float) -> None:
        """Hand an account's reports to the core, unless meant for another generation."""
        if msg.generation == self.generation:
            self.core.on_deliveries(msg.reports, now)

    # --- the drain, and the end of a turn --------------------------------------------------

    def drain(self, supervisor: Address, deadline: float) -> None:
        """Refuse new submissions; :meth:`settle` answers ``supervisor`` when done."""
        self.core.start_drain()
        self._drain = _Drain(supervisor, deadline, self.core.in_flight)

    def settle(self, now: float) -> list[Effect]:
        """At the end of a turn: answer the waiting collection and the drain when due.

        Returns:
            The collection's answer when an outcome or event is ready or its time is up;
            then ``DrainDone`` when the router holds nothing or the drain deadline passed
            (with a warning when that abandoned messages).
        """
        effects: list[Effect] = []
        collector = self._collector
        if collector is not None and (
            self.core.outcomes_ready or self._events or now >= collector.until
        ):
            effects.append(self._answer_collector())
        drain = self._drain
        if drain is not None and (self.core.drained or now >= drain.deadline):
            self._drain = None
            abandoned = self.core.abandon_all()
            if abandoned:
                effects.append(
                    Warn(text=f"drain deadline passed: {len(abandoned)} messages abandoned")
                )
            outcomes = self.core.collect(self.core.outcomes_ready)
            done = DrainDone(
                drained=drain.in_flight_at_start - len(abandoned),
                abandoned=tuple(abandoned),
                outcomes=tuple(outcomes),
            )
            effects.append(Send(to=drain.supervisor, msg=done))
        return effects

    def next_wakeup(self) -> float | None:
        """When :meth:`settle` must run next (the core's own deadlines aside)."""
        times = []
        if self._collector is not None:
            times.append(self._collector.until)
        if self._drain is not None:
            times.append(self._drain.deadline)
        return min(times) if times else None

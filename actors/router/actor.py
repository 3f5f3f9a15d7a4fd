"""The conversation router actor: a thin shell around ``RouterCore``.

It answers the gateway's submissions and outcome collections (a long poll: a collection
that finds nothing waits, up to its ``wait_s``, for the first outcome), sends one batch
per receiver per turn, and follows the supervisor's news about accounts and the pool.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors.router.core import RouterCore
from actors.runtime.base_actor import EngineActor
from actors.runtime.wiring import (
    AccountGone,
    AccountUp,
    ActorReport,
    Address,
    Configure,
    Configured,
    Drain,
    DrainDone,
    PoolUp,
    StatsQuery,
    WiringAck,
)
from protocols import (
    AccountEvent,
    AIBatch,
    AIResults,
    CancelBatch,
    CollectOutcomes,
    DeliveryBatch,
    OutcomeBatch,
    SendBatch,
    SubmitBatch,
    SubmitResults,
)

__all__ = ["RouterActor"]

MAX_EVENTS = 1000
"""Account events kept for the gateway's listeners; older ones are dropped and counted."""


@dataclass(frozen=True, slots=True)
class _Collector:
    """A long-polling collection: answered at the first outcome or at ``until``."""

    asker: Address
    max_items: int
    until: float
    request_id: int


class RouterActor(EngineActor):
    role = "router"

    def __init__(self) -> None:
        super().__init__()
        self.core: RouterCore | None = None
        self.pool: Address = None
        self.pool_generation = 0
        self.accounts: dict[str, tuple[Address, int]] = {}
        self.collector: _Collector | None = None
        self.last_submit: SubmitResults | None = None
        self.last_batch: OutcomeBatch | None = None
        self.drain: tuple[Address, float] | None = None  # (supervisor, deadline)
        self._drained_at_start = 0
        self.events: deque[AccountEvent] = deque(maxlen=MAX_EVENTS)
        self.events_dropped = 0

    def handlers(self) -> dict[type, Callable[[Any, Address], None]]:
        return {
            SubmitBatch: self.on_submit,
            CollectOutcomes: self.on_collect,
            AIResults: self.on_ai_results,
            DeliveryBatch: self.on_deliveries,
            AccountUp: self.on_account_up,
            AccountGone: self.on_account_gone,
            PoolUp: self.on_pool_up,
            StatsQuery: self.on_stats,
            Drain: self.on_drain,
            AccountEvent: self.on_event,
        }

    def configure(self, msg: Configure, sender: Address) -> None:
        self.core = RouterCore(msg.config)
        self.pool, self.pool_generation = msg.pool, msg.pool_generation
        for account_id, address, generation in msg.accounts:
            self.accounts[account_id] = (address, generation)
            self.core.account_up(account_id, restarted=False, now=time.time())
        for account_id in msg.failed_accounts:
            self.core.account_gone(account_id, failed=True, now=time.time())
        self.send(
            sender,
            Configured(role=self.role, name=self.name, generation=self.generation, pid=self.pid),
        )

    @property
    def _core(self) -> RouterCore:
        assert self.core is not None, "router used before Configure"
        return self.core

    # --- the gateway ------------------------------------------------------------------------

    def _wrong_generation(self, generation: int) -> bool:
        # A request meant for another generation reached this router (a reused TCP port):
        # answer it without side effects; the caller relocates and retries.
        if generation and generation != self.generation:
            self.log.warning("request for router generation {} ignored", generation)
            return True
        return False

    def on_submit(self, msg: SubmitBatch, sender: Address) -> None:
        if self._wrong_generation(msg.generation):
            self.send(
                sender,
                SubmitResults(results=(), generation=self.generation, request_id=msg.request_id),
            )
            return
        if msg.request_id and self.last_submit and self.last_submit.request_id == msg.request_id:
            # The gateway asks again because our answer was late or lost: answer the same,
            # never admit the batch twice.
            self.send(sender, self.last_submit)
            return
        results = self._core.submit(msg.messages, time.time(), readmit=msg.readmit)
        reply = SubmitResults(
            results=tuple(results), generation=self.generation, request_id=msg.request_id
        )
        self.last_submit = reply
        self.send(sender, reply)
        for alert in self._core.alerts:
            self.warn_sampled("occupancy", alert)
        self._core.alerts.clear()

    def on_collect(self, msg: CollectOutcomes, sender: Address) -> None:
        if self._wrong_generation(msg.generation):
            self.send(sender, OutcomeBatch(generation=self.generation, request_id=msg.request_id))
            return
        if msg.request_id and self.last_batch and self.last_batch.request_id == msg.request_id:
            self.send(sender, self.last_batch)  # asked again: the same outcomes, not lost ones
            return
        if self.collector is not None:
            # The gateway gave up on its earlier collection (it asks one at a time): end it
            # empty, so that no outcome goes to an ask nobody waits for.
            old = self.collector
            self.collector = None
            self.send(
                old.asker, OutcomeBatch(generation=self.generation, request_id=old.request_id)
            )
        self.collector = _Collector(sender, msg.max_items, time.time() + msg.wait_s, msg.request_id)
        if self._core.outcomes_ready or self.events or msg.wait_s <= 0:
            self._answer_collector()
            return
        self.arm(self.collector.until, time.time())

    def _answer_collector(self) -> None:
        assert self.collector is not None
        collector, self.collector = self.collector, None
        batch = OutcomeBatch(
            outcomes=tuple(self._core.collect(collector.max_items)),
            events=self._take_events(),
            generation=self.generation,
            request_id=collector.request_id,
        )
        self.last_batch = batch
        self.send(collector.asker, batch)

    def on_event(self, msg: AccountEvent, sender: Address) -> None:
        if len(self.events) == MAX_EVENTS:
            self.events_dropped += 1
        self.events.append(msg)

    def _take_events(self) -> tuple[AccountEvent, ...]:
        events = tuple(self.events)
        self.events.clear()
        return events

    # --- the pool and the accounts ---------------------------------------------------------

    def on_ai_results(self, msg: AIResults, sender: Address) -> None:
        if msg.generation != self.generation:
            return  # meant for an earlier router generation: its messages were readmitted
        self._core.on_ai_results(msg.results, time.time())

    def on_deliveries(self, msg: DeliveryBatch, sender: Address) -> None:
        if msg.generation != self.generation:
            return
        self._core.on_deliveries(msg.reports, time.time())

    def on_account_up(self, msg: AccountUp, sender: Address) -> None:
        self.accounts[msg.account_id] = (msg.address, msg.generation)
        resent = self._core.account_up(msg.account_id, restarted=msg.restarted, now=time.time())
        if resent:
            self.log.info("account {} restarted: re-sent {} replies", msg.account_id, resent)
        self.send(sender, WiringAck(token=msg.token))

    def on_account_gone(self, msg: AccountGone, sender: Address) -> None:
        ended = 0
        if msg.state == "down":
            self._core.account_down(msg.account_id)
        else:
            self.accounts.pop(msg.account_id, None)
            ended = self._core.account_gone(
                msg.account_id, failed=msg.state == "failed", now=time.time()
            )
            self.log.info("account {} {}: ended {} messages", msg.account_id, msg.state, ended)
        self.send(sender, WiringAck(token=msg.token, ended=ended))

    def on_pool_up(self, msg: PoolUp, sender: Address) -> None:
        if msg.failed:
            ended = self._core.pool_failed(time.time())
            self.log.error("AI pool failed for good: {} messages failed no_provider", ended)
        else:
            self.pool, self.pool_generation = msg.address, msg.generation
            if msg.restarted:
                self._core.pool_restarted()
        self.send(sender, WiringAck(token=msg.token))

    # --- time, effects, stats, shutdown ----------------------------------------------------

    def next_wakeup(self) -> float | None:
        times = [t for t in (self._core.next_wakeup() if self.core else None,) if t is not None]
        if self.collector is not None:
            times.append(self.collector.until)
        if self.drain is not None:
            times.append(self.drain[1])
        return min(times) if times else None

    def on_tick(self, now: float) -> None:
        if self.core is None:
            return
        expired = self._core.expire(now)
        if expired:
            self.warn_sampled("timeouts", "{} messages timed out", expired)

    def after_turn(self, now: float) -> None:
        if self.core is None:
            return
        to_pool, to_accounts, cancel = self._core.take_outbox()
        if to_pool and self.pool is not None:
            self.send(self.pool, AIBatch(requests=tuple(to_pool), generation=self.generation))
        for account_id, replies in to_accounts.items():
            target = self.accounts.get(account_id)
            if target is not None:
                self.send(target[0], SendBatch(replies=tuple(replies), generation=self.generation))
        if cancel and self.pool is not None:
            self.send(self.pool, CancelBatch(message_ids=tuple(cancel), generation=self.generation))
        if self.collector is not None and (
            self._core.outcomes_ready or self.events or now >= self.collector.until
        ):
            self._answer_collector()
        if self.drain is not None and (self._core.drained or now >= self.drain[1]):
            self._finish_drain()

    def on_drain(self, msg: Drain, sender: Address) -> None:
        self._core.start_drain()
        self._drained_at_start = self._core.in_flight
        self.drain = (sender, msg.deadline)

    def _finish_drain(self) -> None:
        assert self.drain is not None
        supervisor, _ = self.drain
        self.drain = None
        abandoned = self._core.abandon_all()
        if abandoned:
            self.log.warning("drain deadline passed: {} messages abandoned", len(abandoned))
        outcomes = self._core.collect(self._core.outcomes_ready)
        drained = self._drained_at_start - len(abandoned)
        self.send(
            supervisor,
            DrainDone(drained=drained, abandoned=tuple(abandoned), outcomes=tuple(outcomes)),
        )

    def on_stats(self, msg: StatsQuery, sender: Address) -> None:
        core = self._core
        pool_depth, account_depth = core.outstanding()
        self.send(
            sender,
            ActorReport(
                token=msg.token,
                role=self.role,
                name=self.name,
                generation=self.generation,
                pid=self.pid,
                depth=core.in_flight,
                capacity=core.capacity,
                counters={
                    **core.counters(),
                    "events_dropped": self.events_dropped,
                    **self.process_counters(),
                },
                extra={"pool_depth": pool_depth, "account_depth": account_depth},
            ),
        )

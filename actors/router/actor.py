"""The conversation router actor: a thin shell around ``RouterCore`` and ``RequestDesk``.

Each handler calls the core (admission, routing, deadlines) or the desk (the answers to
the gateway and the supervisor, see ``actors.router.requests``) with the clock, and
performs the effects they return. At the end of a turn it hands the core's outbox to its
``Links`` (one batch window per peer: what may leave now leaves as one batch per peer, the
rest waits for the peer's acknowledgement), then sends what the desk has to answer by
then. It keeps the addresses of the pool and the accounts, which the supervisor's news
updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from actors.router.core import RouterCore
from actors.router.effects import Effect, Send
from actors.router.links import Links
from actors.router.requests import RequestDesk
from actors.runtime.base_actor import EngineActor
from actors.runtime.wiring import (
    AccountGone,
    AccountUp,
    ActorReport,
    Address,
    Configure,
    Configured,
    Drain,
    PoolUp,
    StatsQuery,
    WiringAck,
)
from protocols import (
    AccountEvent,
    AIResults,
    CollectOutcomes,
    DeliveryBatch,
    OutcomeBatch,
    SubmitBatch,
)

__all__ = ["RouterActor"]


class RouterActor(EngineActor):
    role = "router"

    def __init__(self) -> None:
        super().__init__()
        self.desk: RequestDesk | None = None
        self.links = Links(1)  # replaced by Configure
        self.pool: Address = None
        self.accounts: dict[str, Address] = {}

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
        self.links = Links(msg.config.batch_window)
        core = RouterCore(msg.config, silence=self.links.silent_for)
        self.desk = RequestDesk(core, self.generation)
        self.pool = msg.pool
        for account_id, address, _generation in msg.accounts:
            self.accounts[account_id] = address
            core.account_up(account_id, restarted=False, now=time.time())
        for account_id in msg.failed_accounts:
            core.account_gone(account_id, failed=True, now=time.time())
        self.send(
            sender,
            Configured(role=self.role, name=self.name, generation=self.generation, pid=self.pid),
        )

    @property
    def _desk(self) -> RequestDesk:
        assert self.desk is not None, "router used before Configure"
        return self.desk

    @property
    def _core(self) -> RouterCore:
        return self._desk.core

    def _perform(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                if isinstance(effect.msg, OutcomeBatch) and effect.msg.outcomes:
                    self.links.received("outcomes", len(effect.msg.outcomes))
                self.send(effect.to, effect.msg)
            elif effect.sample:
                self.warn_sampled(effect.sample, effect.text)
            else:
                self.log.warning("{}", effect.text)

    # --- the gateway ------------------------------------------------------------------------

    def on_submit(self, msg: SubmitBatch, sender: Address) -> None:
        self.links.received("submit", len(msg.messages))
        self._perform(self._desk.submit(msg, sender, time.time()))

    def on_collect(self, msg: CollectOutcomes, sender: Address) -> None:
        # A collection left waiting is answered in after_turn; _settle arms its deadline.
        self._perform(self._desk.collect(msg, sender, time.time()))

    def on_event(self, msg: AccountEvent, sender: Address) -> None:
        self._desk.event(msg)

    # --- the pool and the accounts ---------------------------------------------------------

    def on_ai_results(self, msg: AIResults, sender: Address) -> None:
        now = time.time()
        if msg.generation == self.generation:  # an ack for another router is not ours
            self.links.pool_acked(msg.ack)
            if msg.results:
                self.links.received("from_pool", len(msg.results))
        self._desk.ai_results(msg, now)

    def on_deliveries(self, msg: DeliveryBatch, sender: Address) -> None:
        now = time.time()
        if msg.generation == self.generation:
            self.links.account_acked(msg.account_id, msg.ack)
            if msg.reports:
                self.links.received("from_accounts", len(msg.reports))
        self._desk.deliveries(msg, now)

    def on_account_up(self, msg: AccountUp, sender: Address) -> None:
        self.accounts[msg.account_id] = msg.address
        # What waited for the old generation is dropped: the core sends again every reply
        # the account holds, in the next batch, to the new one.
        self.links.account_replaced(msg.account_id)
        resent = self._core.account_up(msg.account_id, restarted=msg.restarted, now=time.time())
        if resent:
            self.log.info("account {} restarted: re-sent {} replies", msg.account_id, resent)
        self.send(sender, WiringAck(token=msg.token))

    def on_account_gone(self, msg: AccountGone, sender: Address) -> None:
        ended = 0
        self.links.account_replaced(msg.account_id, gone=msg.state != "down")
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
            self.pool = msg.address
            if msg.restarted:
                self.links.pool_replaced()
                self._core.pool_restarted()
        self.send(sender, WiringAck(token=msg.token))

    # --- time, effects, stats, shutdown ----------------------------------------------------

    def next_wakeup(self) -> float | None:
        if self.desk is None:
            return None
        times = [t for t in (self._core.next_wakeup(), self.desk.next_wakeup()) if t is not None]
        return min(times) if times else None

    def on_tick(self, now: float) -> None:
        if self.desk is None:
            return
        expired = self._core.expire(now)
        if expired:
            self.warn_sampled("timeouts", "{} messages timed out", expired)

    def after_turn(self, now: float) -> None:
        if self.desk is None:
            return
        core = self._core
        self._perform(
            self.links.sends(
                *core.take_outbox(),
                pool=self.pool,
                accounts=self.accounts,
                generation=self.generation,
                waits_for_ai=core.waits_for_ai,
                waits_for_send=core.waits_for_send,
                now=now,
            )
        )
        self._perform(self.desk.settle(now))

    def on_drain(self, msg: Drain, sender: Address) -> None:
        self._desk.drain(sender, msg.deadline)

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
                    "events_dropped": self._desk.events_dropped,
                    "collections": self._desk.collections,
                    **self.links.counters(),
                    **self.process_counters(),
                },
                extra={"pool_depth": pool_depth, "account_depth": account_depth},
            ),
        )

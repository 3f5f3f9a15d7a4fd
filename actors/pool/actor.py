"""The AI provider pool actor: a thin shell around ``PoolCore``.

Provider calls never block the mailbox: each provider is sans-IO (a call is started, its
result is polled later), so one process holds thousands of calls in flight.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from actors.pool.core import PoolCore
from actors.runtime.servant import RouterServant
from actors.runtime.wiring import Address, Configure, Configured, Forward, StatsQuery
from protocols import (
    AddProvider,
    AIBatch,
    AIFailure,
    AIReply,
    AIResults,
    CancelBatch,
    RemoveProvider,
)

__all__ = ["PoolActor"]


class PoolActor(RouterServant[AIReply | AIFailure]):
    role = "ai_pool"
    core: PoolCore | None

    def handlers(self) -> dict[type, Callable[[Any, Address], None]]:
        return {
            AIBatch: self.on_batch,
            CancelBatch: self.on_cancel,
            Forward: self.on_forward,
            StatsQuery: self.on_stats,
        }

    def configure(self, msg: Configure, sender: Address) -> None:
        c = msg.config
        self.core = PoolCore(
            max_providers=c.max_providers,
            cooldown_s=c.provider_cooldown_s,
            allowed_fails=c.provider_allowed_fails,
            capacity=c.max_concurrent_processing,
            rng=random.Random(msg.seed),
        )
        report = self.core.load(msg.providers, time.time())
        self._log_load(report.left_out)
        for refused in report.refused:
            self.log.error("provider {} refused: {}", refused.name, refused.detail)
        self.send(
            sender,
            Configured(role=self.role, name=self.name, generation=self.generation, pid=self.pid),
        )

    def _log_load(self, left_out: tuple[str, ...]) -> None:
        if left_out:
            self.log.warning(
                "AI provider limit ({}) reached: {} providers left out ({})",
                self._core_.stats().get("max_providers", "max"),
                len(left_out),
                ", ".join(left_out[:10]),
            )

    @property
    def _core_(self) -> PoolCore:
        assert self.core is not None, "pool used before Configure"
        return self.core

    def on_batch(self, msg: AIBatch, sender: Address) -> None:
        if self.from_old_router(msg.generation):
            return
        self.take_work(
            sender, msg.generation, self._core_.submit(msg.requests, time.time()), msg.seq
        )

    def on_cancel(self, msg: CancelBatch, sender: Address) -> None:
        self._core_.cancel(msg.message_ids)

    def on_forward(self, msg: Forward, sender: Address) -> None:
        core, now, command = self._core_, time.time(), msg.message
        if isinstance(command, AddProvider):
            result = core.add_provider(command.spec, now)
            if result.error == "provider_limit" or "left out" in result.detail:
                self.log.warning(
                    "AI provider limit ({}) reached: {}",
                    core.stats()["max_providers"],
                    result.detail,
                )
            elif not result.ok:
                self.log.error("add_provider {} failed: {}", command.spec.name, result.detail)
        elif isinstance(command, RemoveProvider):
            result = core.remove_provider(command.name, now)
        else:
            self.log.warning("ignored forwarded {}", type(command).__name__)
            return
        self.send(msg.reply_to, result)

    def batch(
        self, results: tuple[AIReply | AIFailure, ...], generation: int, ack: int
    ) -> AIResults:
        return AIResults.trusted(results=results, generation=generation, ack=ack)

    def on_stats(self, msg: StatsQuery, sender: Address) -> None:
        core = self._core_
        counters = {k: int(v) for k, v in core.stats().items()}
        extra = {
            "providers": [p.name for p in core.providers()],
            "provider_stats": core.provider_stats(),
        }
        self.send(sender, self.report(msg.token, counters, extra))

    def on_exit(self) -> None:
        if self.core is not None:
            self.core.close()

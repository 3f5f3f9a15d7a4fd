"""The facade's line to the router: asks that survive a router restart.

A restarted router has a new address and a higher generation, and TCP ports get reused:
so every answer must carry the generation the facade expects. When the router does not
answer (dead: the ask fails at once; or a stranger on its old port: the ask times out),
the link asks the supervisor where the router is now, re-admits every message the
facade's ledger still holds to the new generation, and retries once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from loguru import logger

from actors._system import SystemHandle
from actors._wiring import RouterLocation, WhereIsRouter
from actors.ledger import Ledger
from protocols import (
    CollectOutcomes,
    Outcome,
    OutcomeBatch,
    Rejected,
    SubmitBatch,
    SubmitResults,
)

__all__ = ["RouterLink"]


class RouterLink:
    """Ask the current router generation; relocate and re-admit when it changed."""

    def __init__(
        self,
        system: SystemHandle,
        address: Any,
        generation: int,
        *,
        ask_timeout_s: float,
        restart_wait_s: float,
    ) -> None:
        self.system = system
        self.address = address
        self.generation = generation
        self.ask_timeout_s = ask_timeout_s
        self.restart_wait_s = restart_wait_s
        self.relocations = 0
        self.readmitted = 0
        self._refused: list[Outcome] = []
        self.log = logger.bind(actor="engine")

    def ask(self, msg: SubmitBatch | CollectOutcomes, timeout_s: float, ledger: Ledger) -> Any:
        """Ask the router; None when no router generation could answer.

        Outcomes owed for messages a new router refused on re-admission are returned in
        ``self.take_refused()``.
        """
        reply = self.system.ask(self.address, msg, timeout_s)
        if self._ok(reply):
            return reply
        if not self._relocate(ledger):
            return None
        retry = type(msg)(**{**_fields(msg), "generation": self.generation})
        reply = self.system.ask(self.address, retry, timeout_s)
        return reply if self._ok(reply) else None

    def _ok(self, reply: Any) -> bool:
        return (
            isinstance(reply, SubmitResults | OutcomeBatch) and reply.generation == self.generation
        )

    def _relocate(self, ledger: Ledger) -> bool:
        deadline = time.time() + self.ask_timeout_s + self.restart_wait_s
        while time.time() < deadline:
            where = self.system.ask(self.system.supervisor, WhereIsRouter(), self.ask_timeout_s)
            if not isinstance(where, RouterLocation):
                return False
            if where.up and where.generation != self.generation:
                self.address, self.generation = where.address, where.generation
                self.relocations += 1
                self.log.warning("router is now generation {}", where.generation)
                self._refused = self._readmit(ledger)
                return True
            if where.up:
                return False  # same generation: alive, but it did not answer
            threading.Event().wait(0.05)  # the router is restarting: ask again shortly
        return False

    def take_refused(self) -> list[Outcome]:
        """Outcomes for accepted messages the new router refused on re-admission."""
        refused, self._refused = self._refused, []
        return refused

    def _readmit(self, ledger: Ledger) -> list[Outcome]:
        pending = ledger.unresolved()
        if not pending:
            return []
        batch = SubmitBatch(messages=tuple(pending), generation=self.generation, readmit=True)
        reply = self.system.ask(self.address, batch, self.ask_timeout_s)
        if not isinstance(reply, SubmitResults):
            return []  # the ledger's deadlines still end each of them
        self.readmitted += len(pending)
        return [
            Outcome(
                message_id=r.message_id,
                status="rejected",
                reason=r.reason,
                detail=f"refused on re-admission after a router restart: {r.detail}",
            )
            for r in reply.results
            if isinstance(r, Rejected)
        ]


def _fields(msg: Any) -> dict[str, Any]:
    return {name: getattr(msg, name) for name in msg.__dataclass_fields__}

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

from actors.engine.ledger import Ledger
from actors.runtime.system import SystemHandle
from actors.runtime.wiring import RouterLocation, WhereIsRouter
from protocols import (
    Accepted,
    CollectOutcomes,
    Outcome,
    OutcomeBatch,
    Rejected,
    SubmitBatch,
    SubmitResults,
)

__all__ = ["ATTEMPTS", "RouterLink"]

ATTEMPTS = 3
"""Tries of one request (same id) before the facade gives up on the router."""


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
        self._set_aside_outcomes: list[Outcome] = []
        self._request = 0
        self.orphaned_admissions = 0
        self.log = logger.bind(actor="engine")

    def ask(self, msg: SubmitBatch | CollectOutcomes, timeout_s: float, ledger: Ledger) -> Any:
        """Ask the router; None when no router generation answered after a few tries.

        Every ask carries a fresh request id; a try that gets no answer is repeated with the
        SAME id (the router answers a repeated id from its last answer instead of applying
        it twice), on the router's new generation if it was restarted meanwhile. Late
        answers to earlier asks are set aside: their outcomes are kept (``take_set_aside``).
        """
        self._request += 1
        rid = self._request
        for _ in range(ATTEMPTS):
            request = type(msg)(
                **{**_fields(msg), "generation": self.generation, "request_id": rid}
            )
            reply = self.system.ask(
                self.address,
                request,
                timeout_s,
                accept=lambda r: self._ok(r) and r.request_id == rid,
                other=self.set_aside,
            )
            if reply is not None:
                return reply
            self._relocate(ledger)  # same generation: ask it again; new one: ask that one
        self.log.error("the router did not answer {} tries of request {}", ATTEMPTS, rid)
        return None

    def _ok(self, reply: Any) -> bool:
        return (
            isinstance(reply, SubmitResults | OutcomeBatch) and reply.generation == self.generation
        )

    def set_aside(self, reply: Any) -> None:
        if isinstance(reply, OutcomeBatch):
            self._set_aside_outcomes.extend(reply.outcomes)
        elif isinstance(reply, SubmitResults):
            accepted = sum(isinstance(r, Accepted) for r in reply.results)
            if accepted:
                # Only possible after ATTEMPTS unanswered tries: the caller was told the
                # batch was refused. Their outcomes will be dropped as late; say so loudly.
                self.orphaned_admissions += accepted
                self.log.error("{} admissions arrived after their request was given up", accepted)

    def take_set_aside(self) -> list[Outcome]:
        """Outcomes that came in late answers (the ledger drops any it already has)."""
        out, self._set_aside_outcomes = self._set_aside_outcomes, []
        return out

    def _relocate(self, ledger: Ledger) -> bool:
        deadline = time.time() + self.ask_timeout_s + self.restart_wait_s
        while time.time() < deadline:
            where = self.system.ask(
                self.system.supervisor,
                WhereIsRouter(),
                self.ask_timeout_s,
                accept=lambda r: isinstance(r, RouterLocation),
            )
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
        self._request += 1
        rid = self._request
        batch = SubmitBatch(
            messages=tuple(pending), generation=self.generation, readmit=True, request_id=rid
        )
        reply = self.system.ask(
            self.address,
            batch,
            self.ask_timeout_s,
            accept=lambda r: self._ok(r) and r.request_id == rid,
            other=self.set_aside,
        )
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

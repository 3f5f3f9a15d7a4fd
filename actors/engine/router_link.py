"""The facade's line to the router: asks that survive a router restart.

A restarted router has a new address and a higher generation, and TCP ports get reused:
so every answer must carry the generation the facade expects. When the router does not
answer (dead: the ask fails at once; or a stranger on its old port: the ask times out),
the link asks the supervisor where the router is now (``LocateRouter``, which also tells
the supervisor how long the router has been silent: it checks the router's process then,
and restarts a dead one at once), re-admits every message the facade's ledger still
holds to the new generation with their original deadlines, and retries.

A router failed for good (past the restart policy) is answered for by the link itself:
every message the ledger holds ends ``failed``/``router_failed`` and new submissions are
rejected ``router_failed``, at once, instead of every call waiting for a restart that
will not come.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from loguru import logger

from actors.engine.ledger import Ledger
from actors.runtime.system import SystemHandle
from actors.runtime.wiring import LocateRouter, RouterWhereabouts
from protocols import (
    Accepted,
    CollectOutcomes,
    Outcome,
    OutcomeBatch,
    Reason,
    Rejected,
    Status,
    SubmitBatch,
    SubmitResults,
)

__all__ = ["ATTEMPTS", "RouterLink"]

ATTEMPTS = 3
"""Tries of one request (same id) before the facade gives up on the router."""

_POLL_S = 0.05  # how often a restarting router's whereabouts are asked again
_LOG_EVERY_S = 5.0  # at most one "did not answer" line this often


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
        self.failed: str | None = None  # why the router was failed for good, once it was
        self._silent_since: float | None = None  # the current router's first unanswered ask
        self._gave_up = 0  # requests no router generation answered
        self._gave_up_logged = -math.inf
        self.log = logger.bind(actor="engine")

    def ask(self, msg: SubmitBatch | CollectOutcomes, timeout_s: float, ledger: Ledger) -> Any:
        """Ask the router; None when no router generation answered after a few tries.

        Every ask carries a fresh request id; a try that gets no answer is repeated with the
        SAME id (the router answers a repeated id from its last answer instead of applying
        it twice), on the router's new generation if it was restarted meanwhile. Late
        answers to earlier asks are set aside: their outcomes are kept (``take_set_aside``).
        Once the router has failed for good, the link answers in its place (see the
        module docstring).
        """
        self._request += 1
        rid = self._request
        for _ in range(ATTEMPTS):
            if self.failed is not None:
                return self._answer_for_failed(msg, rid, timeout_s, ledger)
            request = type(msg)(
                **{**_fields(msg), "generation": self.generation, "request_id": rid}
            )
            started = time.time()
            reply = self.system.ask(
                self.address,
                request,
                timeout_s,
                accept=lambda r: self._ok(r) and r.request_id == rid,
                other=self.set_aside,
            )
            if reply is not None:
                self._silent_since = None
                return reply
            if self._silent_since is None:
                self._silent_since = started
            self._relocate(ledger)  # same generation: ask it again; new one: ask that one
        if self.failed is not None:
            return self._answer_for_failed(msg, rid, timeout_s, ledger)
        self._gave_up += 1
        now = time.monotonic()
        if now - self._gave_up_logged >= _LOG_EVERY_S:  # one line per restart, not per call
            self.log.error(
                "the router did not answer {} tries of request {} ({} requests given up so far)",
                ATTEMPTS,
                rid,
                self._gave_up,
            )
            self._gave_up_logged = now
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
        """Find the router after an unanswered ask; True when it moved to a new generation.

        Polls the supervisor while the router is down or starting, for up to one ask
        timeout plus the longest restart backoff, but not past the moment the ledger's
        earliest message is due (its timeout must reach the caller then); stops at once
        when it is up (new generation: re-admit; same one: it lives and did not answer) or
        failed for good.
        """
        deadline = time.time() + self.ask_timeout_s + self.restart_wait_s
        due = ledger.next_wakeup()
        if due is not None:
            # Waiting past it would hold back the timeouts the caller is owed by then.
            deadline = min(deadline, due)
        while True:
            silent_since = self._silent_since if self._silent_since is not None else time.time()
            where = self.system.ask(
                self.system.supervisor,
                LocateRouter(
                    generation=self.generation,
                    unanswered_s=max(1e-3, time.time() - silent_since),
                ),
                self.ask_timeout_s,
                accept=lambda r: isinstance(r, RouterWhereabouts),
            )
            if not isinstance(where, RouterWhereabouts):
                return False
            if where.state == "failed":
                self._fail(where.detail or "past its restart policy")
                return False
            if where.state == "up" and where.generation != self.generation:
                self.address, self.generation = where.address, where.generation
                self._silent_since = None
                self.relocations += 1
                self.log.warning("router is now generation {}", where.generation)
                self._refused = self._readmit(ledger)
                return True
            if where.state not in ("down", "starting"):
                return False  # up at our generation (alive, did not answer), or stopping
            if time.time() >= deadline:
                return False  # still restarting: the caller gets its answer (and timeouts)
            threading.Event().wait(_POLL_S)  # the router is restarting: ask again shortly

    def _fail(self, reason: str) -> None:
        self.failed = reason
        self.log.error(
            "the router failed for good ({}): every message it held ends {}/{} and new "
            "submissions are rejected {}",
            reason,
            Status.FAILED.value,
            Reason.ROUTER_FAILED.value,
            Reason.ROUTER_FAILED.value,
        )

    def _answer_for_failed(
        self, msg: SubmitBatch | CollectOutcomes, rid: int, timeout_s: float, ledger: Ledger
    ) -> SubmitResults | OutcomeBatch:
        """The answer a failed router cannot give: reject new messages, fail held ones."""
        detail = f"the router failed for good: {self.failed}"
        reason = Reason.ROUTER_FAILED.value
        if isinstance(msg, SubmitBatch):
            rejected = tuple(
                Rejected(message_id=m.message_id, reason=reason, detail=detail)
                for m in msg.messages
            )
            return SubmitResults(results=rejected, generation=self.generation, request_id=rid)
        held = ledger.unresolved()[: msg.max_items]
        if not held and msg.wait_s > 0:
            # Like a router with nothing to hand over: the caller's poll loop must not spin.
            threading.Event().wait(min(msg.wait_s, timeout_s))
        outcomes = tuple(
            Outcome(
                message_id=m.message_id, status=Status.FAILED.value, reason=reason, detail=detail
            )
            for m in held
        )
        return OutcomeBatch(outcomes=outcomes, generation=self.generation, request_id=rid)

    def take_refused(self) -> list[Outcome]:
        """Outcomes for accepted messages the new router refused on re-admission."""
        refused, self._refused = self._refused, []
        return refused

    def _readmit(self, ledger: Ledger) -> list[Outcome]:
        pending = ledger.pending()
        if not pending:
            return []
        self._request += 1
        rid = self._request
        # Each keeps the deadline it was accepted with (the ledger ends it then anyway): a
        # new deadline would only let the router work on what is already timed out.
        batch = SubmitBatch(
            messages=tuple(m for m, _ in pending),
            generation=self.generation,
            readmit=True,
            request_id=rid,
            deadlines=tuple(d for _, d in pending),
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

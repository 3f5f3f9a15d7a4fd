"""The conversation router's pure core: admission, per-customer order, deadlines, outcomes.

The router owns every accepted message from admission to outcome. Its core is fed events
(submissions, AI results, delivery reports, account and pool lifecycle changes, the
clock) and accumulates effects: AI requests for the pool, replies for each account, and
outcomes for the gateway. The actor sends the effects after each turn, one batch per
receiver, which is what keeps a TCP pipeline fast. A message in processing is a ``Flight``
(``actors.router.flight``: its stage and the one table of moves between stages).

Every accepted message is live in the ``ConversationGate`` until it ends, and the gate
caps how many are in processing (``max_concurrent_processing``). So the number of items
outstanding at the pool or at any account never exceeds that cap: the gate is the credit
window of the whole pipeline, and each downstream actor declares it as its capacity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from actors.config import EngineConfig
from actors.cores.dedupe import DedupeSet
from actors.cores.gate import ConversationGate, Item
from actors.router.account_state import AccountState
from actors.router.accounts import AccountTable
from actors.router.admission import gate_refusal, refusal
from actors.router.effects import Outbox
from actors.router.flight import Flight, Flights, Stage
from actors.router.outcomes import OutcomeBook
from protocols import (
    Accepted,
    AIFailure,
    AIReply,
    AIRequest,
    DeliveryReport,
    InboundMessage,
    OutboundReply,
    Outcome,
    Reason,
    Rejected,
    Status,
)

__all__ = ["RouterCore"]

MAX_SEND_ATTEMPTS = 3
"""Times a reply is handed to (successive generations of) its account before it fails."""


class RouterCore:
    """Admission and bookkeeping of the router; see the module docstring."""

    __slots__ = (
        "_accounts",
        "_book",
        "_config",
        "_dedupe",
        "_flights",
        "_gate",
        "_outbox",
        "_silence",
        "alerts",
        "draining",
        "pool_up",
    )

    def __init__(
        self, config: EngineConfig, silence: Callable[[str, float], float] | None = None
    ) -> None:
        self._config = config
        self._silence = silence  # account id, now -> how long it has not read (Links)
        self._dedupe = DedupeSet(config.dedupe_capacity)
        self._gate: ConversationGate[InboundMessage] = ConversationGate(
            max_processing=config.max_concurrent_processing,
            max_queue_per_customer=config.max_pending_per_customer,
            timeout_s=config.processing_timeout_s,
            warn_ratio=config.occupancy_warn_ratio,
        )
        self._accounts = AccountTable()  # each account's state, moved by the supervisor
        self._flights = Flights()
        self._book = OutcomeBook()  # outcomes, counters, live messages by account
        self._outbox = Outbox()
        self.alerts: list[str] = []
        self.draining = False
        self.pool_up = True

    # --- admission ------------------------------------------------------------------------

    def submit(
        self,
        messages: Sequence[InboundMessage],
        now: float,
        *,
        readmit: bool = False,
        deadlines: Sequence[float] = (),
    ) -> list[Accepted | Rejected]:
        """Admit, queue or refuse each message; accepted ones will get exactly one outcome.

        Args:
            messages: the messages, answered in order.
            now: the time (epoch seconds).
            readmit: the engine accepted these before (a router restart, a recovery): no
                duplicate check, no ``max_uncollected_outcomes`` refusal.
            deadlines: one per message, the deadline it was first given (a re-admission
                keeps it); empty: each gets ``now + processing_timeout_s``. A re-admitted
                message already past its deadline is accepted and times out at once,
                without a send.
        """
        if deadlines:
            return [
                self._admit(msg, now, readmit, deadline)
                for msg, deadline in zip(messages, deadlines, strict=True)
            ]
        return [self._admit(msg, now, readmit, None) for msg in messages]

    def _admit(
        self, msg: InboundMessage, now: float, readmit: bool, deadline: float | None
    ) -> Accepted | Rejected:
        mid = msg.message_id
        refused = refusal(
            msg,
            self._accounts.state(msg.account_id),
            self._config,
            draining=self.draining,
            readmit=readmit,
            seen=mid in self._dedupe,
            uncollected=len(self._book),
            silent_s=self._silence(msg.account_id, now) if self._silence else 0.0,
        )
        if refused is not None:
            if refused[0] == Reason.DUPLICATE:
                self._dedupe.seen_before(mid)  # refresh: a redelivery keeps the id remembered
            return self._book.reject(mid, *refused)
        if readmit and deadline is not None and deadline <= now:
            self._dedupe.seen_before(mid)
            return self._book.late_readmission(mid, deadline)
        key = f"{msg.account_id}/{msg.customer_id}"
        offer = self._gate.offer(key, mid, msg, now, deadline=deadline)
        if offer.occupancy_alert:
            self.alerts.append(
                f"{self._gate.processing} of {self._config.max_concurrent_processing} "
                "customers in processing (occupancy warning)"
            )
        if offer.item is None:
            return self._book.reject(mid, *gate_refusal(offer.reason, self._config))
        self._dedupe.seen_before(mid)
        self._book.hold(msg.account_id, mid)
        self._book.counters["accepted"] += 1
        if readmit:
            self._book.counters["readmitted"] += 1
        if offer.decision == "admit":
            self._start(offer.item, now)
        return Accepted.trusted(message_id=mid, deadline=offer.item.deadline)

    def _start(self, item: Item[InboundMessage], now: float) -> None:
        msg = item.payload
        flight = self._flights[msg.message_id] = Flight(msg=msg, deadline=item.deadline)
        if msg.fixed_reply:  # the gateway's fallback text: sent as it is, no AI asked
            flight.move("ai_reply")
            flight.reply = msg.fixed_reply
            self._book.counters["fixed_replies"] += 1
            self._send(flight, now)
            return
        if not self.pool_up:
            self._finish(
                msg.message_id, Status.FAILED, Reason.NO_PROVIDER, now, detail="the AI pool failed"
            )
            return
        self._outbox.to_pool.append(flight.ai_request())

    # --- results from the pool and the accounts ---------------------------------------------

    def on_ai_results(self, results: Iterable[AIReply | AIFailure], now: float) -> None:
        """Route each AI reply to its account; end the message on an AI failure."""
        for result in results:
            flight = self._flights.get(result.message_id)
            event = "ai_failure" if isinstance(result, AIFailure) else "ai_reply"
            if flight is None or not flight.expects(event):
                self._book.counters["late_replies"] += 1
                continue
            flight.move(event)
            if isinstance(result, AIFailure):
                status = Status.TIMEOUT if result.reason == Reason.TIMEOUT else Status.FAILED
                self._finish(result.message_id, status, result.reason, now, detail=result.detail)
                continue
            flight.reply = result.text
            self._send(flight, now)

    def _send(self, flight: Flight, now: float) -> None:
        msg = flight.msg
        if flight.attempts >= MAX_SEND_ATTEMPTS:
            self._finish(
                msg.message_id,
                Status.FAILED,
                Reason.ACCOUNT_FAILED,
                now,
                detail=f"account crashed {flight.attempts} times while sending this reply",
            )
            return
        if self._accounts.state(msg.account_id) is not AccountState.UP:
            return  # sent when the account is (back) up: see account_up
        flight.attempts += 1
        self._outbox.to_accounts.setdefault(msg.account_id, []).append(flight.outbound_reply())

    def on_deliveries(self, reports: Iterable[DeliveryReport], now: float) -> None:
        """End each message whose reply the account sent, or failed to send."""
        for report in reports:
            flight = self._flights.get(report.message_id)
            if flight is None or not flight.expects("delivery"):
                self._book.counters["late_deliveries"] += 1
                continue
            flight.move("delivery")
            if report.ok:
                self._finish(
                    report.message_id,
                    Status.REPLIED,
                    "",
                    now,
                    reply=flight.reply,
                    wamid=report.wamid,
                )
            else:
                status = Status.TIMEOUT if report.reason == Reason.TIMEOUT else Status.FAILED
                self._finish(report.message_id, status, report.reason, now, detail=report.detail)

    def _finish(
        self,
        message_id: str,
        status: str,
        reason: str,
        now: float,
        *,
        reply: str | None = None,
        detail: str = "",
        wamid: str = "",
    ) -> None:
        flight = self._flights.pop(message_id, None)
        account_id = flight.msg.account_id if flight else None
        step = self._gate.complete(message_id, now)
        if step.completed is not None:
            account_id = step.completed.payload.account_id
        self._book.record(message_id, account_id, status, reason, reply, detail, wamid=wamid)
        for item in step.started:
            self._start(item, now)

    # --- time -------------------------------------------------------------------------------

    def expire(self, now: float) -> int:
        """End every message whose deadline passed with ``timeout``; returns how many."""
        step = self._gate.expire(now)
        for item in step.expired:
            flight = self._flights.pop(item.item_id, None)
            if flight is not None and flight.stage is Stage.AI:
                self._outbox.cancel_pool.append(item.item_id)
            self._book.record(
                item.item_id,
                item.payload.account_id,
                Status.TIMEOUT,
                Reason.TIMEOUT,
                None,
                f"no outcome within processing_timeout_s={self._config.processing_timeout_s:g}",
            )
        for item in step.started:
            self._start(item, now)
        return len(step.expired)

    def next_wakeup(self) -> float | None:
        """When ``expire`` should run next."""
        return self._gate.next_deadline()

    # --- lifecycle of the other actors -------------------------------------------------------

    def account_up(self, account_id: str, *, restarted: bool, now: float) -> int:
        """An account (re)started; re-send the replies its previous generation held."""
        self._accounts.news(account_id, "up")
        resent = 0
        for flight in self._flights.at_account(account_id):
            self._send(flight, now)
            resent += 1
        if restarted:
            self._book.counters["resent_after_restart"] += resent
        return resent

    def account_down(self, account_id: str) -> None:
        """An account crashed and waits for its restart: hold its replies until then."""
        self._accounts.news(account_id, "down")  # ignored for an account unknown here

    def account_gone(self, account_id: str, *, failed: bool, now: float) -> int:
        """An account failed for good or was removed: end all its messages."""
        self._accounts.news(account_id, "failed" if failed else "removed")
        if failed:
            status, reason = Status.FAILED, Reason.ACCOUNT_FAILED
            detail = f"account {account_id!r} failed past its restart policy"
        else:
            status, reason = Status.REJECTED, Reason.UNKNOWN_ACCOUNT
            detail = f"account {account_id!r} was removed"
        ended = 0
        live = self._book.release_account(account_id)
        # Queued messages first: cancelling one in processing starts its customer's next
        # message, which would send the pool a request for a message ending in this call.
        for message_id in sorted(live, key=self._gate.is_processing):
            flight = self._flights.pop(message_id, None)
            if flight is not None and flight.stage is Stage.AI:
                self._outbox.cancel_pool.append(message_id)
            step = self._gate.cancel(message_id)
            self._book.record(message_id, None, status, reason, None, detail)
            ended += 1
            for item in step.started:
                self._start(item, now)
        return ended

    def pool_restarted(self) -> int:
        """The AI pool came back with a new generation: ask it again for what it held."""
        self.pool_up = True
        resent = 0
        for flight in self._flights.at_pool():
            self._outbox.to_pool.append(flight.ai_request())
            resent += 1
        self._book.counters["resent_after_restart"] += resent
        return resent

    def pool_failed(self, now: float) -> int:
        """The AI pool failed for good: every message waiting for it fails ``no_provider``."""
        self.pool_up = False
        waiting = [f.msg.message_id for f in self._flights.at_pool()]
        for message_id in waiting:
            self._finish(
                message_id, Status.FAILED, Reason.NO_PROVIDER, now, detail="AI pool failed"
            )
        return len(waiting)

    # --- shutdown -------------------------------------------------------------------------

    def start_drain(self) -> None:
        """Refuse new submissions from now on; in-flight messages carry on."""
        self.draining = True

    @property
    def drained(self) -> bool:
        return len(self._gate) == 0

    def abandon_all(self) -> list[str]:
        """End every live message with ``abandoned``; returns their ids."""
        items = self._gate.drain()
        for item in items:
            self._flights.pop(item.item_id, None)
            self._book.record(
                item.item_id,
                item.payload.account_id,
                Status.ABANDONED,
                Reason.SHUTDOWN,
                None,
                "still pending when the drain deadline passed",
            )
        return [item.item_id for item in items]

    # --- effects and stats -----------------------------------------------------------------

    def take_outbox(self) -> tuple[list[AIRequest], dict[str, list[OutboundReply]], list[str]]:
        """Hand the accumulated sends to the actor (and forget them)."""
        box, self._outbox = self._outbox, Outbox()
        return box.to_pool, box.to_accounts, box.cancel_pool

    def waits_for_ai(self, message_id: str) -> bool:
        """Whether the message is live and waits for its AI reply (its request may leave)."""
        flight = self._flights.get(message_id)
        return flight is not None and flight.stage is Stage.AI

    def waits_for_send(self, message_id: str) -> bool:
        """Whether the message is live and waits for its send (its reply may leave)."""
        flight = self._flights.get(message_id)
        return flight is not None and flight.stage is Stage.SEND

    def collect(self, max_items: int) -> list[Outcome]:
        """Hand over up to ``max_items`` outcomes, oldest first."""
        return self._book.collect(max_items)

    @property
    def outcomes_ready(self) -> int:
        return len(self._book)

    @property
    def capacity(self) -> int:
        """The most messages the router can hold: in processing plus queued behind them."""
        return self._config.capacity

    @property
    def in_flight(self) -> int:
        """Accepted messages without an outcome yet (queued or in processing)."""
        return len(self._gate)

    def outstanding(self) -> tuple[int, dict[str, int]]:
        """Items held by the pool, and by each account (for depth/capacity in stats)."""
        return self._flights.outstanding()

    def counters(self) -> dict[str, int]:
        out = dict(self._book.counters)
        out["dedupe.evictions"] = self._dedupe.evictions
        out["gate.peak_processing"] = self._gate.peak_processing
        out["gate.late_completions"] = self._gate.late_completions
        out["gate.processing"] = self._gate.processing
        out["gate.queued"] = self._gate.queued
        out["outcomes_ready"] = len(self._book)
        return out

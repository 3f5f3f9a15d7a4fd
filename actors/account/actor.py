"""The WhatsApp account (number) actor: a thin shell around ``AccountCore``.

Sends never block the mailbox (the transport is sans-IO), so one account keeps many sends
in flight. The rate log's cleanup runs as an incremental sweep on a timer; the timer is
Thespian's, so it dies with the actor.

A reply the transport confirmed is marked sent in the engine's intake store
(``actors.engine.intake_marks``) at the end of the turn, before its delivery report goes
to the router: after a crash, recovery then does not send it again.

An account on a convention member is fenced (``Configure.lease_s`` > 0): it sends only
while it holds a lease from the supervisor (``actors.cores.lease``, on its own monotonic
clock), which it asks for every ``LEASE_RENEW_EVERY_S``. Without one it neither starts a
send nor lets one finish (the core is not polled) and keeps the replies it is given; a
grant resumes the work. Its member was dropped meanwhile, most likely, and a new
generation elsewhere got those replies again from the router; so past the grace
(``LEASE_GRACE_S``) without a lease, or when the supervisor answers that it was replaced,
the actor exits and abandons what it held.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from thespian.actors import ActorExitRequest

from actors.account.core import AccountCore
from actors.account.kinds import make_transport
from actors.account.transports import SentRecord
from actors.cores.lease import LEASE_RENEW_EVERY_S, Lease
from actors.engine.intake_marks import SentMarks
from actors.errors import StoreError
from actors.runtime.convention import pinned_check
from actors.runtime.servant import RouterServant
from actors.runtime.wiring import (
    Address,
    Configure,
    Configured,
    Forward,
    LeaseAsk,
    LeaseGrant,
    StatsQuery,
    crosses_processes,
)
from protocols import DeliveryBatch, DeliveryReport, OutboundReply, SendBatch

__all__ = ["AccountActor", "LoopbackSent", "LoopbackSentReply"]

_SWEEP = "sweep"
_LEASE = "lease"


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class LoopbackSent:
    """Ask an account with the loopback transport for its bounded record of sends."""


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class LoopbackSentReply:
    account_id: str
    records: tuple[SentRecord, ...]
    sent_total: int


class AccountActor(RouterServant[DeliveryReport]):
    role = "account"
    core: AccountCore | None
    actorSystemCapabilityCheck = staticmethod(pinned_check)  # noqa: N815 - where the supervisor pins it

    def __init__(self) -> None:
        super().__init__()
        self.transport: Any = None
        self.sweep_tick_s = 1.0
        self.marks: SentMarks | None = None  # opens the store at the first confirmed send
        self.texts: dict[str, str] = {}  # reply text by message id, until its report
        self.max_texts = 1
        self.lease: Lease | None = None  # None: not fenced (an account on the leader)
        self.supervisor: Address = None  # who grants the lease
        self.incarnation = 0  # the granting supervisor's lifetime (Configure.incarnation)
        self.held: list[OutboundReply] = []  # replies taken while without a lease
        self.exiting = False  # fenced out: sends nothing more, whatever comes

    def handlers(self) -> dict[type, Callable[[Any, Address], None]]:
        return {
            SendBatch: self.on_batch,
            Forward: self.on_forward,
            StatsQuery: self.on_stats,
            LeaseGrant: self.on_lease_grant,
        }

    def configure(self, msg: Configure, sender: Address) -> None:
        assert msg.account is not None, "an account actor needs its AccountSpec"
        c, spec = msg.config, msg.account
        try:
            self.transport = make_transport(
                spec.transport, spec.account_id, spec.options, random.Random(msg.seed)
            )
        except ValueError as exc:
            self.send(
                sender,
                Configured(
                    role=self.role,
                    name=self.name,
                    generation=self.generation,
                    pid=self.pid,
                    ok=False,
                    error=str(exc),
                ),
            )
            return
        self.core = AccountCore(
            account_id=spec.account_id,
            transport=self.transport,
            max_recipients=c.max_queue_recipients,
            max_entries_per_recipient=c.max_queue_size_per_recipient,
            rate_window_s=c.recipient_rate_window_s,
            rate_allowance=c.recipient_rate_allowance,
            sweep_budget=c.sweep_budget,
            capacity=c.max_concurrent_processing,
        )
        self.sweep_tick_s = c.sweep_tick_s
        # An account on a convention member (it holds a lease) does not open the leader's
        # intake store: on another host the file is not there, and on one host a second
        # process tree sharing its WAL killed the leader with SIGBUS in a load run. Its
        # sends are not marked: after a crash of the leader they may go out again.
        on_member = msg.lease_s > 0
        marked = c.durability != "off" and not on_member
        self.marks = SentMarks(c.intake_path, c.durability) if marked else None
        self.max_texts = 2 * c.max_concurrent_processing
        self.wakeupAfter(timedelta(seconds=self.sweep_tick_s), payload=(_SWEEP,))
        if msg.lease_s > 0:
            self.lease = Lease(
                valid_for_s=msg.lease_s, grace_s=2 * msg.lease_s, now=time.monotonic()
            )
            self.supervisor = sender
            self.incarnation = msg.incarnation
            self._ask_lease()  # before Configured: the grant leaves before the router's work
        self.send(
            sender,
            Configured(role=self.role, name=self.name, generation=self.generation, pid=self.pid),
        )

    @property
    def _core_(self) -> AccountCore:
        assert self.core is not None, "account used before Configure"
        return self.core

    def on_batch(self, msg: SendBatch, sender: Address) -> None:
        if self.from_old_router(msg.generation):
            return
        if not self._may_send():
            # Kept for when a grant comes (bounded like the core: a router sends no more
            # than the account's capacity; beyond, the oldest wait for their deadline).
            self.held += msg.replies
            del self.held[: max(0, len(self.held) - self._core_.capacity)]
            self.take_work(sender, msg.generation, [], msg.seq)
            return
        self.take_work(sender, msg.generation, self._submit(msg.replies), msg.seq)

    def _submit(self, replies: tuple[OutboundReply, ...] | list[OutboundReply]) -> list[Any]:
        if self.marks is not None:
            for reply in replies:
                self.texts[reply.message_id] = reply.text
            while len(self.texts) > self.max_texts:  # reports that never came: forget
                del self.texts[next(iter(self.texts))]
        return self._core_.submit(replies, time.time())

    # --- the lease (fencing) ----------------------------------------------------------------

    def _may_send(self) -> bool:
        if self.lease is None:
            return True
        return not self.exiting and self.lease.may_act(time.monotonic())

    def _ask_lease(self) -> None:
        assert self.lease is not None
        ask = self.lease.asked(time.monotonic())
        self.send(
            self.supervisor,
            LeaseAsk(
                account_id=self.name,
                generation=self.generation,
                ask=ask,
                incarnation=self.incarnation,
            ),
        )
        self.wakeupAfter(timedelta(seconds=LEASE_RENEW_EVERY_S), payload=(_LEASE,))

    def on_lease_grant(self, msg: LeaseGrant, sender: Address) -> None:
        if self.lease is None or self.exiting:
            return
        if not self.lease.granted(msg.ask, time.monotonic()):
            return
        if self.held:
            held, self.held = self.held, []
            self.outbox += self._submit(held)

    def _fenced_out(self) -> None:
        """Without a lease past the grace: cut off, or replaced by a new generation; exit."""
        assert self.lease is not None
        self.log.warning(
            "no lease for {:.1f} s: cut off from the supervisor or replaced; exiting "
            "without sending the {} replies it holds",
            self.lease.expired_for(time.monotonic()),
            len(self.held) + (self.core.pending if self.core is not None else 0),
        )
        self.exiting = True
        self.held = []
        self.send(self.myAddress, ActorExitRequest())

    def on_tick(self, now: float) -> None:
        if self._may_send():  # without a lease, no send starts or finishes
            super().on_tick(now)

    def next_wakeup(self) -> float | None:
        return super().next_wakeup() if self._may_send() else None

    def after_turn(self, now: float) -> None:
        if self.marks is not None and self.outbox:
            self._mark_sent()
        super().after_turn(now)

    def _mark_sent(self) -> None:
        """Record this turn's confirmed sends in the intake store, before their reports."""
        assert self.marks is not None
        sent = []
        for report in self.outbox:
            text = self.texts.pop(report.message_id, None)
            if report.ok and text is not None:
                sent.append((report.message_id, text))
        try:
            self.marks.mark(sent)
        except StoreError as exc:
            # Never crash for it: a restarted account would send these again at once.
            self.warn_sampled("marks", "replies sent but not marked sent: {}", exc)

    def on_wakeup(self, payload: Any, now: float) -> None:
        if payload == (_SWEEP,) and self.core is not None:
            self.core.sweep(now)
            self.wakeupAfter(timedelta(seconds=self.sweep_tick_s), payload=(_SWEEP,))
        elif payload == (_LEASE,) and self.lease is not None and not self.exiting:
            if self.lease.fenced_out(time.monotonic()):
                self._fenced_out()
            else:
                self._ask_lease()

    def on_forward(self, msg: Forward, sender: Address) -> None:
        if isinstance(msg.message, LoopbackSent):
            sent = getattr(self.transport, "sent", None)
            records = tuple(sent()) if callable(sent) else ()
            total = int(getattr(self.transport, "sent_total", 0))
            self.send(
                msg.reply_to,
                LoopbackSentReply(account_id=self.name, records=records, sent_total=total),
            )

    def batch(
        self, results: tuple[DeliveryReport, ...], generation: int, ack: int
    ) -> DeliveryBatch:
        return DeliveryBatch.trusted(
            reports=results, generation=generation, ack=ack, account_id=self.name
        )

    def on_stats(self, msg: StatsQuery, sender: Address) -> None:
        counters = {k: int(v) for k, v in self._core_.stats().items()}
        counters.update(self._transport_stats())
        if self.lease is not None:  # fenced: whether it may send now, what it keeps meanwhile
            counters["lease_valid"] = int(self._may_send())
            counters["lease_held_replies"] = len(self.held)
        if self.marks is not None:
            counters["marked_sent"] = self.marks.marked
            counters["mark_failures"] = self.marks.failures
        extra = {"transport_failed": getattr(self.transport, "failure", "") or ""}
        self.send(sender, self.report(msg.token, counters, extra))

    def _transport_stats(self) -> dict[str, int]:
        stats = getattr(self.transport, "stats", None)
        if not callable(stats):
            return {}
        return {f"transport.{k}": int(v) for k, v in stats().items()}

    def on_exit(self) -> None:
        if self.core is not None:
            self.core.close()
        if self.marks is not None:
            self.marks.close()

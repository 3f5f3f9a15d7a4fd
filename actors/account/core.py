"""The account (WhatsApp number) core: rate-limited, idempotent, bounded sending of replies.

The account actor feeds it ``OutboundReply`` batches and timer ticks and sends back the
``DeliveryReport`` values it returns. Per reply, in this order:

1. a ``message_id`` sent before is answered ``ok`` at once without a second send: after a
   router restart the engine may ask again, and a customer must never get two replies to
   one inbound message;
2. a reply past its deadline fails ``timeout``;
3. a ``message_id`` already pending is ignored (its one report is still to come);
4. past ``capacity`` pending replies it fails ``capacity``;
5. the per-recipient rate log decides: send now, wait until the allowance frees up if that
   is no later than the deadline, or fail ``rate_limited``.

A send takes one of the recipient's allowance when it starts. When WhatsApp refuses it
(any error answer: a throughput limit, a pair-rate limit, a bad request) the allowance is
given back, since nothing reached the customer; only a send that may have gone out (no
answer, or one cut short) keeps it. So a burst of refusals and retries cannot use up a
customer's allowance and fail their next message without a single attempt.

A customer's waiting replies leave in submission order: a reply for a customer who has
replies waiting queues behind them even when the log would let it go.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from actors.account._waitlist import DONE, SENDING, WAITING, Pending, WaitList, WaitQueue
from actors.account.transports import SendResult, Transport
from actors.cores._args import require_int
from actors.cores.dedupe import DedupeSet
from actors.cores.ratelog import RecipientRateLog
from protocols import DeliveryReport, OutboundReply, Reason

__all__ = ["AccountCore"]

# The counters in stats(); each is present from the start, zero or not.
_COUNTERS = (
    "sent",
    "failed",
    "rate_limited",
    "rate_waits",
    "duplicate_sends",
    "duplicate_pending",
    "timeouts",
    "capacity_rejects",
    "invalid",
    "transport_retries",
    "allowance_returned",
    "cancelled",
    "stray_results",
    "sweeps",
)


class AccountCore:
    """Send replies for one account within the per-recipient rate limit, each reported once.

    Memory is bounded: at most ``capacity`` replies pending (waiting or in the transport),
    ``max_recipients`` in the rate log and ``sent_memory`` remembered sent ids.

    Args:
        account_id: the account this core sends for; replies for another account fail
            ``invalid``.
        transport: where sends go (see ``actors.account.transports``).
        max_recipients: recipients tracked by the rate log (seed: 10,000).
        max_entries_per_recipient: send times kept per recipient (seed: 100).
        rate_window_s: the sliding window of the per-recipient limit, in seconds.
        rate_allowance: sends per recipient per window.
        sweep_budget: recipients examined by one :meth:`sweep`.
        capacity: replies pending at once; the next one fails ``capacity``.
        sent_memory: sent message ids remembered for idempotent resends (LRU).

    Raises:
        ValueError: an argument is of the wrong type or out of range (the message names it).
    """

    __slots__ = (
        "_account_id",
        "_capacity",
        "_charged",
        "_close_reason",
        "_counts",
        "_now",
        "_pending",
        "_ratelog",
        "_sent",
        "_sweep_budget",
        "_transport",
        "_waitlist",
    )

    def __init__(
        self,
        *,
        account_id: str,
        transport: Transport,
        max_recipients: int,
        max_entries_per_recipient: int,
        rate_window_s: float,
        rate_allowance: int,
        sweep_budget: int,
        capacity: int,
        sent_memory: int = 10_000,
    ) -> None:
        self._account_id = account_id
        self._transport = transport
        self._ratelog = RecipientRateLog(
            max_recipients=max_recipients,
            max_entries_per_recipient=max_entries_per_recipient,
            window_s=rate_window_s,
            allowance=rate_allowance,
        )
        self._sweep_budget = require_int("sweep_budget", sweep_budget, minimum=1)
        self._capacity = require_int("capacity", capacity, minimum=1)
        self._sent = DedupeSet(require_int("sent_memory", sent_memory, minimum=1))
        self._pending: dict[str, Pending] = {}  # waiting in _waitlist or in the transport
        # Sends in the transport -> when they took their recipient's allowance (to give it
        # back if WhatsApp refuses them).
        self._charged: dict[str, float] = {}
        self._waitlist = WaitList()
        self._now = -math.inf
        self._close_reason = ""  # set by close(); non-empty means closed
        self._counts = dict.fromkeys(_COUNTERS, 0)

    # -- events in, reports out ------------------------------------------------------------

    def submit(self, replies: Iterable[OutboundReply], now: float) -> list[DeliveryReport]:
        """Take replies to send; return the reports that are known at once.

        Every reply gets exactly one report, now or from a later :meth:`poll`, except a
        reply whose ``message_id`` is already pending: the pending one's report answers it.

        Raises:
            TransportCrash: propagated from the transport (fault injection); the core's
                state stays consistent, but reports for earlier replies of this batch are
                lost with the exception, so the actor should be restarted.
            ValueError: ``now`` is not finite.
        """
        now = self._advance(now)
        reports: list[DeliveryReport] = []
        for reply in replies:
            report = self._admit(reply, now)
            if report is not None:
                reports.append(report)
        return reports

    def poll(self, now: float) -> list[DeliveryReport]:
        """Return the reports that became ready by ``now``.

        Collects finished sends, sends waiting replies whose allowance freed up (or fails
        them ``rate_limited`` when it frees up too late), and fails ``timeout`` the waiting
        replies whose deadline passed.

        Raises:
            TransportCrash: propagated from the transport when a waiting reply is started.
        """
        now = self._advance(now)
        reports: list[DeliveryReport] = []
        if self._close_reason:
            return reports
        for result in self._transport.poll(now):
            self._on_result(result, now, reports)
        while (what := self._waitlist.pop_due(now)) is not None:
            if isinstance(what, WaitQueue):
                self._drain(what, now, reports)
            else:
                self._settle(what)
                reports.append(self._timed_out(what.reply, now))
        # Sends just started by the timers may already be done (a zero-latency transport).
        for result in self._transport.poll(now):
            self._on_result(result, now, reports)
        return reports

    def sweep(self, now: float) -> int:
        """Forget fully expired recipients of the rate log, at most ``sweep_budget`` of them.

        The incremental form of the seed's 5-minute cleanup: the actor calls it every
        ``sweep_tick_s``. Returns how many recipients were removed.
        """
        now = self._advance(now)
        self._counts["sweeps"] += 1
        return self._ratelog.sweep(now, self._sweep_budget)

    def cancel(self, message_ids: Iterable[str]) -> int:
        """Drop pending replies without a report (their caller settled them); return how many."""
        cancelled = 0
        for message_id in message_ids:
            pending = self._pending.get(message_id)
            if pending is None:
                continue
            if pending.state != WAITING:
                self._transport.cancel(message_id)
            self._settle(pending)
            cancelled += 1
        self._counts["cancelled"] += cancelled
        return cancelled

    def close(self, reason: str = Reason.SHUTDOWN.value) -> list[DeliveryReport]:
        """Stop: close the transport and fail every pending reply with ``reason``.

        Later submissions fail with the same reason at once; polls return nothing.
        Idempotent: a second call returns no reports.
        """
        if self._close_reason:
            return []
        # Validate the reason before changing anything: a bad one must not half-close.
        DeliveryReport(message_id="close", ok=False, reason=reason)
        self._close_reason = reason
        self._transport.close()
        reports = [
            DeliveryReport(message_id=message_id, ok=False, reason=reason, detail="account closed")
            for message_id in self._pending
        ]
        for pending in self._pending.values():
            pending.state = DONE
        self._pending.clear()
        self._charged.clear()
        self._waitlist.clear()
        return reports

    # -- queries ----------------------------------------------------------------------------

    def next_wakeup(self) -> float | None:
        """Return when :meth:`poll` should next run, or None when nothing is pending."""
        timer = self._waitlist.next_due()
        due = self._transport.next_due() if not self._close_reason else None
        return min((t for t in (timer, due) if t is not None), default=None)

    @property
    def account_id(self) -> str:
        """The account this core sends for."""
        return self._account_id

    @property
    def pending(self) -> int:
        """Replies owed a report: waiting for the rate limit or in the transport."""
        return len(self._pending)

    @property
    def capacity(self) -> int:
        """The most replies pending at once."""
        return self._capacity

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return bool(self._close_reason)

    def entries_for(self, customer_id: str) -> int:
        """Return how many send times the rate log stores for ``customer_id``."""
        return self._ratelog.entries_for(customer_id)

    def stats(self) -> dict[str, int | float]:
        """Counters and gauges since construction.

        ``sent`` and ``failed`` count transport results; ``rate_limited``, ``timeouts``,
        ``capacity_rejects`` and ``invalid`` count the other failed reports; ``rate_waits``
        replies that had to wait; ``duplicate_sends`` resends answered from memory;
        ``allowance_returned`` refused sends whose allowance was given back;
        ``duplicate_pending`` resubmissions of a pending id. ``recipients``,
        ``recipients_peak``, ``evictions`` (recipients forgotten with live entries),
        ``expired`` and ``swept`` describe the rate log; ``sweeps`` counts sweep calls.
        """
        log = self._ratelog
        stats: dict[str, int | float] = dict(self._counts)
        stats.update(
            pending=len(self._pending),
            capacity=self._capacity,
            waiting=len(self._waitlist),
            waiting_customers=self._waitlist.customers,
            in_transport=len(self._pending) - len(self._waitlist),
            recipients=log.recipients,
            recipients_peak=log.peak_recipients,
            evictions=log.evictions,
            expired=log.expired,
            dropped_entries=log.dropped_entries,
            swept=log.swept,
            sent_memory=len(self._sent),
            sent_memory_evictions=self._sent.evictions,
        )
        return stats

    # -- internals ----------------------------------------------------------------------------

    def _advance(self, now: float) -> float:
        # Clamped like the rate log's clock, so a step back cannot reorder the timers.
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite number, got {now!r}")
        if now > self._now:
            self._now = now
        return self._now

    def _admit(self, reply: OutboundReply, now: float) -> DeliveryReport | None:
        message_id = reply.message_id
        if self._close_reason:
            return DeliveryReport(
                message_id=message_id, ok=False, reason=self._close_reason, detail="account closed"
            )
        if reply.account_id != self._account_id:
            detail = f"reply for account {reply.account_id!r} reached account {self._account_id!r}"
            return self._fail(reply, "invalid", Reason.INVALID, detail)
        if message_id in self._sent:
            self._counts["duplicate_sends"] += 1
            return DeliveryReport(message_id=message_id, ok=True, detail="already sent")
        if reply.deadline < now:
            return self._timed_out(reply, now)
        if message_id in self._pending:
            self._counts["duplicate_pending"] += 1
            return None
        if len(self._pending) >= self._capacity:
            detail = f"account {self._account_id!r}: {self._capacity} replies pending (capacity)"
            return self._fail(reply, "capacity_rejects", Reason.CAPACITY, detail)
        if reply.customer_id in self._waitlist:  # FIFO: never overtake a waiting reply
            self._counts["rate_waits"] += 1
            self._waitlist.append(self._owe(Pending(reply, WAITING)))
            return None
        retry_at = self._ratelog.try_acquire(reply.customer_id, now).retry_at
        if retry_at is None:  # allowed: RateDecision has a retry time exactly when not
            self._transport.start(reply, now)
            self._owe(Pending(reply, SENDING))
            self._charged[message_id] = now
            return None
        if retry_at > reply.deadline:
            return self._too_late(reply, now, retry_at)
        self._counts["rate_waits"] += 1
        self._waitlist.start(self._owe(Pending(reply, WAITING)), retry_at)
        return None

    def _drain(self, queue: WaitQueue, now: float, reports: list[DeliveryReport]) -> None:
        """Send a customer's waiting replies in order while the allowance lets them go."""
        while (head := self._waitlist.head(queue)) is not None:
            reply = head.reply
            if reply.deadline < now:
                self._settle(head)
                reports.append(self._timed_out(reply, now))
                continue
            if head.not_before > now:
                self._waitlist.schedule(queue, head.not_before)
                return
            retry_at = self._ratelog.try_acquire(queue.customer_id, now).retry_at
            if retry_at is None:
                self._transport.start(reply, now)
                self._waitlist.start_head(queue)  # forgets the queue with its last reply
                self._charged[reply.message_id] = now
                continue
            if retry_at <= reply.deadline:
                self._waitlist.schedule(queue, retry_at)
                return
            self._settle(head)
            reports.append(self._too_late(reply, now, retry_at))

    def _on_result(self, result: SendResult, now: float, reports: list[DeliveryReport]) -> None:
        message_id = result.message_id
        pending = self._pending.get(message_id)
        if pending is None or pending.state != SENDING:
            self._counts["stray_results"] += 1
            return
        charged_at = self._charged.get(message_id)
        self._settle(pending)
        reply = pending.reply
        if result.ok:
            self._sent.seen_before(message_id)
            self._counts["sent"] += 1
            reports.append(
                DeliveryReport(
                    message_id=message_id, ok=True, detail=result.detail, wamid=result.wamid
                )
            )
            return
        # Refused: nothing reached the customer, so the attempt uses none of their allowance
        # (a retry takes it again when it starts).
        if (
            not result.maybe_sent
            and charged_at is not None
            and self._ratelog.release(reply.customer_id, charged_at)
        ):
            self._counts["allowance_returned"] += 1
        retry_after = result.retry_after
        if retry_after is not None and now + retry_after <= reply.deadline:
            # The transport says the same send may succeed later (e.g. a pair-rate error):
            # wait at the head of the customer's queue; a fresh Pending leaves the old
            # object's timers stale.
            self._counts["transport_retries"] += 1
            retry_at = now + retry_after
            self._waitlist.put_first(self._owe(Pending(reply, WAITING, retry_at)), retry_at)
            return
        self._counts["failed"] += 1
        reason = result.reason or Reason.TRANSPORT_ERROR.value
        reports.append(
            DeliveryReport(message_id=message_id, ok=False, reason=reason, detail=result.detail)
        )

    def _owe(self, pending: Pending) -> Pending:
        self._pending[pending.reply.message_id] = pending
        return pending

    def _settle(self, pending: Pending) -> None:
        """Forget a pending reply: its report is out, or none is owed any more."""
        if pending.state == WAITING:
            self._waitlist.remove(pending)
        del self._pending[pending.reply.message_id]
        self._charged.pop(pending.reply.message_id, None)
        pending.state = DONE

    def _fail(
        self, reply: OutboundReply, counter: str, reason: Reason, detail: str
    ) -> DeliveryReport:
        self._counts[counter] += 1
        return DeliveryReport(
            message_id=reply.message_id, ok=False, reason=reason.value, detail=detail
        )

    def _timed_out(self, reply: OutboundReply, now: float) -> DeliveryReport:
        detail = f"deadline passed {now - reply.deadline:.3f}s before the send could start"
        return self._fail(reply, "timeouts", Reason.TIMEOUT, detail)

    def _too_late(self, reply: OutboundReply, now: float, retry_at: float) -> DeliveryReport:
        log = self._ratelog
        detail = (
            f"allowance of {log.allowance} sends per {log.window_s:g}s to this customer frees "
            f"up in {retry_at - now:.3f}s, after the deadline in {reply.deadline - now:.3f}s"
        )
        return self._fail(reply, "rate_limited", Reason.RATE_LIMITED, detail)

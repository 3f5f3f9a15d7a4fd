"""Tests for the account core (actors.account.core) and its transports (loopback)."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping
from itertools import count

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors.account import (
    TRANSPORTS,
    AccountCore,
    LoopbackTransport,
    SendResult,
    Transport,
    TransportCrash,
    make_transport,
)
from protocols import DeliveryReport, OutboundReply, Scalar, ValidationError

ACCOUNT = "acct-1"
# The seed's rate-log limits (WhatsAppService.MAX_QUEUE_RECIPIENTS / _SIZE_PER_RECIPIENT).
SEED_RECIPIENTS = 10_000
SEED_ENTRIES = 100
FAR = 1e12  # a deadline nothing in these tests reaches


def phone(n: int) -> str:
    return f"+1555{n:07d}"


def reply(
    message_id: str, customer: int = 0, *, deadline: float = FAR, text: str = "hello"
) -> OutboundReply:
    return OutboundReply(
        account_id=ACCOUNT,
        customer_id=phone(customer),
        message_id=message_id,
        text=text,
        deadline=deadline,
    )


def loopback(**options: Scalar) -> LoopbackTransport:
    return LoopbackTransport(ACCOUNT, options, random.Random(7))


def make_core(transport: Transport | None = None, **overrides: object) -> AccountCore:
    args: dict[str, object] = {
        "account_id": ACCOUNT,
        "transport": transport if transport is not None else loopback(),
        "max_recipients": SEED_RECIPIENTS,
        "max_entries_per_recipient": SEED_ENTRIES,
        "rate_window_s": 10.0,
        "rate_allowance": 2,
        "sweep_budget": 34,
        "capacity": 1000,
    }
    args.update(overrides)
    return AccountCore(**args)  # type: ignore[arg-type]


def by_id(reports: Iterable[DeliveryReport]) -> dict[str, DeliveryReport]:
    return {report.message_id: report for report in reports}


def sent_ids(transport: LoopbackTransport) -> list[str]:
    return [record.message_id for record in transport.sent()]


# -- the seed's rate-log bounds ---------------------------------------------------------------


def test_ten_thousand_recipients_fill_the_rate_log_and_more_evict_the_oldest_counted():
    core = make_core(capacity=20_000, rate_allowance=SEED_ENTRIES, rate_window_s=60.0)
    core.submit((reply(f"m{n}", n) for n in range(SEED_RECIPIENTS)), now=0.0)
    assert len(core.poll(0.0)) == SEED_RECIPIENTS
    assert (core.stats()["recipients"], core.stats()["evictions"]) == (SEED_RECIPIENTS, 0)

    core.submit((reply(f"x{n}", SEED_RECIPIENTS + n) for n in range(500)), now=1.0)
    core.poll(1.0)

    stats = core.stats()
    assert stats["recipients"] == stats["recipients_peak"] == SEED_RECIPIENTS
    assert stats["evictions"] == 500
    assert stats["sent"] == SEED_RECIPIENTS + 500


def test_a_hundred_sends_fill_a_recipients_entries_and_the_next_one_waits_instead():
    core = make_core(rate_allowance=SEED_ENTRIES, rate_window_s=60.0)
    core.submit((reply(f"m{n}") for n in range(SEED_ENTRIES)), now=0.0)
    assert core.entries_for(phone(0)) == SEED_ENTRIES

    assert core.submit([reply("m100")], now=1.0) == []

    assert core.entries_for(phone(0)) == SEED_ENTRIES
    assert core.stats()["rate_waits"] == 1
    assert core.stats()["dropped_entries"] == 0


# -- the per-recipient rate limit -------------------------------------------------------------


def test_the_third_reply_in_a_window_waits_exactly_until_the_first_entry_expires():
    transport = loopback()
    core = make_core(transport)
    core.submit([reply("m1")], now=0.0)
    core.submit([reply("m2")], now=1.0)

    assert core.submit([reply("m3", deadline=100.0)], now=2.0) == []
    assert len(core.poll(2.0)) == 2

    assert core.next_wakeup() == 10.0
    core.poll(9.999)
    assert sent_ids(transport) == ["m1", "m2"]
    reports = core.poll(10.0)
    assert by_id(reports)["m3"].ok
    assert transport.sent()[-1].at == 10.0
    assert core.stats()["rate_waits"] == 1


def test_a_reply_whose_deadline_is_exactly_the_retry_time_waits_and_is_sent():
    core = make_core()
    core.submit([reply("m1"), reply("m2")], now=0.0)
    assert core.submit([reply("m3", deadline=10.0)], now=0.0) == []
    assert by_id(core.poll(10.0))["m3"].ok


def test_a_reply_whose_deadline_is_an_instant_before_the_retry_time_fails_rate_limited():
    core = make_core()
    core.submit([reply("m1"), reply("m2")], now=0.0)

    [report] = core.submit([reply("m3", deadline=math.nextafter(10.0, 0.0))], now=0.0)

    assert (report.ok, report.reason) == (False, "rate_limited")
    assert "frees up in 10.000s" in report.detail
    assert core.pending == 2  # only the two sends in flight
    assert core.stats()["rate_limited"] == 1


def test_a_waiting_customer_does_not_hold_up_other_customers():
    transport = loopback()
    core = make_core(transport)
    core.submit([reply("a1", 0), reply("a2", 0), reply("a3", 0)], now=0.0)

    core.submit([reply("b1", 1)], now=1.0)
    core.poll(1.0)

    assert sent_ids(transport) == ["a1", "a2", "b1"]
    assert core.stats()["waiting"] == 1


def test_a_later_reply_queues_behind_a_waiting_one_even_when_the_log_would_allow_it():
    transport = loopback()
    core = make_core(transport)
    core.submit([reply("m1")], now=0.0)
    core.submit([reply("m2")], now=5.0)
    core.submit([reply("m3")], now=6.0)  # waits until 10.0, when m1's entry expires
    core.poll(6.0)

    # At 10.0 the log has room again, but m3 is still waiting: m4 must not overtake it.
    assert core.submit([reply("m4")], now=10.0) == []
    assert (transport.in_flight, core.stats()["waiting"]) == (0, 2)

    core.poll(10.0)
    assert sent_ids(transport) == ["m1", "m2", "m3"]
    assert core.next_wakeup() == 15.0  # m2's entry
    core.poll(15.0)
    assert sent_ids(transport) == ["m1", "m2", "m3", "m4"]


def test_a_waiting_reply_behind_another_times_out_just_after_its_deadline():
    core = make_core()
    core.submit([reply("m1"), reply("m2")], now=0.0)
    core.submit([reply("m3", deadline=50.0)], now=0.0)  # head: waits until 10.0
    core.submit([reply("m4", deadline=5.0)], now=0.0)  # behind it, due to expire first
    core.poll(0.0)

    assert core.next_wakeup() == math.nextafter(5.0, math.inf)
    assert core.poll(5.0) == []
    [report] = core.poll(math.nextafter(5.0, math.inf))

    assert (report.ok, report.reason) == (False, "timeout")
    assert core.stats()["timeouts"] == 1
    assert by_id(core.poll(10.0))["m3"].ok


def test_a_queued_reply_that_cannot_make_its_deadline_fails_rate_limited_when_it_becomes_head():
    core = make_core()
    core.submit([reply("m1")], now=0.0)
    core.submit([reply("m2")], now=5.0)
    core.submit([reply("m3", deadline=40.0), reply("m4", deadline=12.0)], now=5.0)

    reports = by_id(core.poll(10.0))  # m3 goes; m4 would wait until 15.0 > 12.0

    assert reports["m3"].ok
    assert (reports["m4"].ok, reports["m4"].reason) == (False, "rate_limited")
    assert core.pending == 0


# -- deadlines, idempotence and capacity ------------------------------------------------------


def test_a_reply_past_its_deadline_fails_timeout_and_one_due_exactly_now_is_sent():
    transport = loopback()
    core = make_core(transport)

    [late] = core.submit([reply("m1", deadline=math.nextafter(5.0, 0.0))], now=5.0)
    assert core.submit([reply("m2", deadline=5.0)], now=5.0) == []

    assert (late.ok, late.reason) == (False, "timeout")
    assert by_id(core.poll(5.0))["m2"].ok
    assert sent_ids(transport) == ["m2"]


def test_a_resend_of_a_sent_message_is_answered_ok_without_a_second_send():
    transport = loopback()
    core = make_core(transport)
    core.submit([reply("m1")], now=0.0)
    assert by_id(core.poll(0.0))["m1"].ok

    [again] = core.submit([reply("m1", deadline=0.0)], now=30.0)  # even past its deadline

    assert (again.ok, again.detail) == (True, "already sent")
    assert sent_ids(transport) == ["m1"]
    assert transport.sent_total == 1
    assert core.stats()["duplicate_sends"] == 1


def test_a_resend_of_a_pending_message_is_ignored_and_reported_once():
    core = make_core(loopback(latency_s=1.0))
    core.submit([reply("m1")], now=0.0)

    assert core.submit([reply("m1")], now=0.5) == []

    assert [r.message_id for r in core.poll(1.0)] == ["m1"]
    assert core.stats()["duplicate_pending"] == 1


def test_a_resend_of_a_failed_message_is_tried_again():
    core = make_core(loopback(failure_rate=1.0))
    core.submit([reply("m1")], now=0.0)
    assert not by_id(core.poll(0.0))["m1"].ok
    assert core.submit([reply("m1")], now=1.0) == []
    assert core.stats()["duplicate_sends"] == 0


def test_sent_memory_forgets_the_oldest_id_past_its_bound():
    transport = loopback()
    core = make_core(transport, sent_memory=2)
    core.submit([reply("m1", 1), reply("m2", 2)], now=0.0)
    core.poll(0.0)
    assert core.submit([reply("m1", 1)], now=0.0)[0].detail == "already sent"

    core.submit([reply("m3", 3)], now=1.0)
    core.poll(1.0)  # remembering m3 forgets m1, the first one remembered

    assert core.submit([reply("m1", 1)], now=2.0) == []  # sent again
    assert core.submit([reply("m2", 2)], now=2.0)[0].detail == "already sent"
    assert core.stats()["sent_memory_evictions"] == 1


def test_replies_up_to_capacity_are_taken_and_one_past_it_fails_capacity():
    core = make_core(loopback(latency_s=1.0), capacity=3)
    assert core.submit([reply(f"m{n}", n) for n in range(3)], now=0.0) == []
    assert core.pending == core.capacity == 3

    [report] = core.submit([reply("m3", 3)], now=0.0)

    assert (report.ok, report.reason) == (False, "capacity")
    assert core.stats()["capacity_rejects"] == 1
    core.poll(1.0)
    assert core.submit([reply("m4", 4)], now=1.0) == []


def test_waiting_replies_count_against_capacity():
    core = make_core(capacity=3)
    core.submit([reply("m1"), reply("m2"), reply("m3")], now=0.0)  # m3 waits
    core.poll(0.0)
    assert core.pending == 1
    core.submit([reply("m4"), reply("m5", 1)], now=0.0)
    assert core.submit([reply("m6", 2)], now=0.0)[0].reason == "capacity"


def test_a_reply_for_another_account_fails_invalid():
    core = make_core()
    other = OutboundReply(
        account_id="acct-2", customer_id=phone(0), message_id="m1", text="hi", deadline=FAR
    )
    [report] = core.submit([other], now=0.0)
    assert (report.reason, core.stats()["invalid"]) == ("invalid", 1)
    assert "'acct-2'" in report.detail


# -- the transport: many in flight, failures, crashes, records --------------------------------


def test_a_thousand_replies_in_flight_against_200_ms_all_complete_in_one_poll():
    transport = loopback(latency_s=0.2)
    core = make_core(transport, capacity=1000)
    now = 1_700_000_000.0
    assert core.submit([reply(f"m{n}", n) for n in range(1000)], now=now) == []
    assert transport.in_flight == core.stats()["in_transport"] == 1000
    due = now + 0.2
    assert core.next_wakeup() == due

    assert core.poll(math.nextafter(due, 0.0)) == []
    reports = core.poll(due)

    assert len(reports) == 1000
    assert all(report.ok for report in reports)
    assert {record.at for record in transport.sent()} == {due}
    assert core.pending == 0
    assert core.next_wakeup() is None


def test_a_failure_rate_of_one_turns_every_send_into_a_transport_error():
    core = make_core(loopback(failure_rate=1.0))
    core.submit([reply(f"m{n}", n) for n in range(5)], now=0.0)
    reports = core.poll(0.0)
    assert {(r.ok, r.reason) for r in reports} == {(False, "transport_error")}
    assert core.stats()["failed"] == 5


def test_crash_text_raises_transport_crash_from_submit_and_leaves_nothing_pending():
    transport = loopback(crash_text="BOOM")
    core = make_core(transport)
    with pytest.raises(TransportCrash, match=r"acct-1.*m1.*BOOM"):
        core.submit([reply("m1", text="say BOOM now")], now=0.0)
    assert core.pending == 0
    assert transport.in_flight == 0
    assert core.submit([reply("m2", text="fine")], now=0.0) == []


def test_the_loopback_record_keeps_only_the_last_record_limit_sends():
    transport = loopback(record_limit=3)
    core = make_core(transport)
    core.submit([reply(f"m{n}", n) for n in range(5)], now=0.0)
    core.poll(0.0)
    assert sent_ids(transport) == ["m2", "m3", "m4"]
    assert (transport.sent_total, transport.record_limit) == (5, 3)


def test_a_record_limit_of_zero_records_nothing_but_still_counts():
    transport = loopback(record_limit=0)
    transport.start(reply("m1"), 0.0)
    assert [r.ok for r in transport.poll(0.0)] == [True]
    assert (transport.sent(), transport.sent_total) == ((), 1)


def test_a_cancelled_loopback_send_never_completes():
    transport = loopback(latency_s=1.0)
    for n in range(200):
        transport.start(reply(f"m{n}"), 0.0)
    assert all(transport.cancel(f"m{n}") for n in range(200))
    assert not transport.cancel("m0")
    assert (transport.in_flight, transport.next_due(), transport.poll(5.0)) == (0, None, [])


def test_a_closed_loopback_refuses_new_sends():
    transport = loopback()
    transport.start(reply("m1"), 0.0)
    transport.close()
    assert transport.poll(1.0) == []
    with pytest.raises(RuntimeError, match="closed"):
        transport.start(reply("m2"), 1.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"latency": 1.0}, "account 'acct-1': unknown loopback option 'latency' (known: "),
        ({"latency_s": -1}, "latency_s must be a finite number >= 0, got -1"),
        ({"failure_rate": 1.5}, "failure_rate must be a finite number >= 0 and <= 1, got 1.5"),
        ({"record_limit": -1}, "record_limit must be an int >= 0, got -1"),
        ({"record_limit": True}, "record_limit must be an int >= 0, got True"),
        ({"crash_text": 5}, "crash_text must be a str, got 5"),
    ],
)
def test_bad_loopback_options_name_the_account_key_value_and_rule(
    options: Mapping[str, Scalar], message: str
) -> None:
    with pytest.raises(ValueError, match="account 'acct-1'") as info:
        LoopbackTransport(ACCOUNT, options, random.Random(0))
    assert message in str(info.value)


def test_make_transport_builds_loopback_and_names_the_known_kinds_for_an_unknown_one():
    assert isinstance(make_transport("loopback", ACCOUNT, {}, random.Random(0)), LoopbackTransport)
    assert "loopback" in TRANSPORTS
    with pytest.raises(ValueError, match=r"^unknown transport 'x' \(known: cloud_api, loopback\)$"):
        make_transport("x", ACCOUNT, {}, random.Random(0))


class ScriptedTransport:
    """A transport whose sends finish at once with results the test queues up."""

    def __init__(self, results: list[SendResult]) -> None:
        self.results = results
        self.started: list[tuple[str, float]] = []
        self._due: list[str] = []

    def start(self, reply: OutboundReply, now: float) -> None:
        self.started.append((reply.message_id, now))
        self._due.append(reply.message_id)

    def poll(self, now: float) -> list[SendResult]:
        done, self._due = self._due, []
        return [self.results.pop(0) for _ in done]

    def next_due(self) -> float | None:
        return None

    def cancel(self, message_id: str) -> bool:
        return False

    def close(self) -> None:
        self._due.clear()

    @property
    def in_flight(self) -> int:
        return len(self._due)


def test_a_transport_retry_after_within_the_deadline_sends_again_later():
    pair_rate = SendResult(message_id="m1", ok=False, reason="api_error:131056", retry_after=6.0)
    transport = ScriptedTransport([pair_rate, SendResult(message_id="m1", ok=True)])
    core = make_core(transport)
    core.submit([reply("m1", deadline=20.0)], now=0.0)

    assert core.poll(0.0) == []
    assert core.next_wakeup() == 6.0
    assert by_id(core.poll(6.0))["m1"].ok
    assert transport.started == [("m1", 0.0), ("m1", 6.0)]
    assert core.stats()["transport_retries"] == 1


def test_a_transport_retry_after_past_the_deadline_fails_with_the_transports_reason():
    pair_rate = SendResult(message_id="m1", ok=False, reason="api_error:131056", retry_after=6.0)
    core = make_core(ScriptedTransport([pair_rate]))
    core.submit([reply("m1", deadline=5.0)], now=0.0)
    [report] = core.poll(0.0)
    assert (report.ok, report.reason) == (False, "api_error:131056")


# -- sweep, cancel, close, arguments ----------------------------------------------------------


class RefusingTransport(ScriptedTransport):
    """Answers the first ``refusals`` sends as Graph's 130429 would, then accepts each."""

    def __init__(self, refusals: int, *, maybe_sent: bool = False) -> None:
        super().__init__([])
        self.refusals = refusals
        self.maybe_sent = maybe_sent

    def poll(self, now: float) -> list[SendResult]:
        done, self._due = self._due, []
        results = []
        for message_id in done:
            if self.refusals > 0:
                self.refusals -= 1
                results.append(
                    SendResult(
                        message_id=message_id,
                        ok=False,
                        reason="rate_limited",
                        detail="HTTP 400: Graph error 130429",
                        retry_after=0.5,
                        maybe_sent=self.maybe_sent,
                    )
                )
            else:
                results.append(SendResult(message_id=message_id, ok=True, wamid=f"wamid.{now}"))
        return results


def drive(core: AccountCore, until: float) -> dict[str, DeliveryReport]:
    """Poll at each wakeup up to ``until``; return the reports by message id."""
    reports = by_id(core.poll(0.0))
    while (due := core.next_wakeup()) is not None and due <= until:
        reports |= by_id(core.poll(due))
    return reports


def test_ten_refused_attempts_use_none_of_the_allowance_and_the_next_message_goes_at_once():
    # The bug: each refused attempt (130429, the number's throughput) took one of the
    # customer's 10 sends per 60 s, so the 11th attempt and the customer's next message
    # failed rate_limited with no HTTP call while Graph answered 200 again.
    transport = RefusingTransport(10)
    core = make_core(transport, rate_allowance=10, rate_window_s=60.0)
    core.submit([reply("m1", deadline=30.0)], now=0.0)

    first = drive(core, until=30.0)

    assert first["m1"].ok
    assert first["m1"].wamid
    assert len(transport.started) == 11
    assert core.stats()["allowance_returned"] == 10
    assert core.entries_for(phone(0)) == 1  # only the send that went out
    at = transport.started[-1][1]
    core.submit([reply("m2", deadline=at + 1.0)], now=at)
    second = by_id(core.poll(at))
    assert second["m2"].ok
    assert [m for m, _ in transport.started].count("m2") == 1


def test_a_failed_send_that_may_have_gone_out_keeps_the_allowance_it_took():
    transport = RefusingTransport(3, maybe_sent=True)  # e.g. timeouts: Graph may have sent
    core = make_core(transport, rate_allowance=2, rate_window_s=60.0)
    core.submit([reply("m1", deadline=30.0)], now=0.0)

    reports = drive(core, until=30.0)

    # Two attempts used the allowance of two; the third waits past the deadline.
    assert reports["m1"].reason == "rate_limited"
    assert len(transport.started) == 2
    assert core.stats()["allowance_returned"] == 0


def test_a_sent_reply_reports_the_wamid_the_transport_learned():
    core = make_core(RefusingTransport(0))
    core.submit([reply("m1")], now=5.0)

    assert core.poll(5.0) == [DeliveryReport(message_id="m1", ok=True, wamid="wamid.5.0")]


def test_sweep_removes_expired_recipients_at_most_sweep_budget_per_call():
    core = make_core(sweep_budget=4)
    core.submit([reply(f"m{n}", n) for n in range(10)], now=0.0)
    assert core.sweep(9.9) == 0
    assert [core.sweep(10.0) for _ in range(4)] == [4, 4, 2, 0]
    stats = core.stats()
    assert (stats["recipients"], stats["swept"], stats["sweeps"]) == (0, 10, 5)


def test_cancelled_replies_get_no_report_wherever_they_were():
    transport = loopback(latency_s=1.0)
    core = make_core(transport)
    core.submit([reply("m1"), reply("m2"), reply("m3")], now=0.0)  # m3 waits

    assert core.cancel(["m1", "m3", "unknown"]) == 2

    assert [r.message_id for r in core.poll(20.0)] == ["m2"]
    assert core.pending == 0
    assert core.next_wakeup() is None


def test_close_fails_every_pending_reply_and_later_submissions():
    core = make_core(loopback(latency_s=1.0))
    core.submit([reply("m1"), reply("m2"), reply("m3")], now=0.0)

    reports = core.close("account_failed")

    assert sorted(r.message_id for r in reports) == ["m1", "m2", "m3"]
    assert {(r.ok, r.reason) for r in reports} == {(False, "account_failed")}
    assert core.closed
    assert (core.pending, core.next_wakeup(), core.poll(5.0), core.close()) == (0, None, [], [])
    assert core.submit([reply("m4")], now=5.0)[0].reason == "account_failed"


def test_close_with_a_malformed_reason_raises_and_leaves_the_core_open():
    core = make_core()
    with pytest.raises(ValidationError):
        core.close("Not A Reason")
    assert not core.closed


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"capacity": 0}, "capacity must be an int >= 1, got 0"),
        ({"sweep_budget": 0}, "sweep_budget must be an int >= 1, got 0"),
        ({"sent_memory": 0}, "sent_memory must be an int >= 1, got 0"),
        ({"rate_allowance": 101}, "allowance must be <= max_entries_per_recipient (100)"),
        ({"max_recipients": True}, "max_recipients must be an int >= 1, got True"),
    ],
)
def test_bad_core_arguments_are_refused_by_name(overrides: dict[str, object], message: str):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_core(**overrides)


def test_a_non_finite_now_is_refused():
    with pytest.raises(ValueError, match="now must be a finite number, got nan"):
        make_core().poll(math.nan)


# -- property: one report per reply, never over the allowance, FIFO per customer --------------

WINDOW, ALLOWANCE, CAPACITY = 10.0, 2, 6


class RecordingTransport(LoopbackTransport):
    """A loopback that also logs each start and each refusal, in the order they happen.

    ``starts`` holds ``(customer, message_id, now, seq)``; ``refused`` maps a refused
    start's ``seq`` to the ``seq`` at which the core learned of the refusal (the core
    handles a polled result before it starts anything else).
    """

    __slots__ = ("_live", "_seq", "refused", "starts")

    def __init__(self, options: Mapping[str, Scalar], seed: int) -> None:
        super().__init__(ACCOUNT, options, random.Random(seed))
        self.starts: list[tuple[str, str, float, int]] = []
        self.refused: dict[int, int] = {}
        self._live: dict[str, int] = {}  # message id -> seq of its start in flight
        self._seq = 0

    def start(self, reply: OutboundReply, now: float) -> None:
        super().start(reply, now)
        self._seq += 1
        self.starts.append((reply.customer_id, reply.message_id, now, self._seq))
        self._live[reply.message_id] = self._seq

    def poll(self, now: float) -> list[SendResult]:
        results = super().poll(now)
        for result in results:
            start = self._live.pop(result.message_id)
            if not result.ok:
                self._seq += 1
                self.refused[start] = self._seq
        return results


class AccountMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ids = count()
        self.now = 0.0
        self.order: dict[str, list[str]] = {}  # submission order per customer
        self.reports: dict[str, DeliveryReport] = {}
        self.open: set[str] = set()  # submitted, not yet reported or cancelled

    @initialize(
        latency=st.sampled_from([0.0, 0.5, 3.0]),
        failure_rate=st.sampled_from([0.0, 0.3]),
        seed=st.integers(0, 1000),
    )
    def setup(self, latency: float, failure_rate: float, seed: int) -> None:
        options: dict[str, Scalar] = {"latency_s": latency, "failure_rate": failure_rate}
        self.transport = RecordingTransport(options, seed)
        self.core = make_core(
            self.transport,
            rate_window_s=WINDOW,
            rate_allowance=ALLOWANCE,
            capacity=CAPACITY,
            max_recipients=10,
        )

    def take(self, reports: list[DeliveryReport]) -> None:
        for report in reports:
            assert report.message_id not in self.reports, "two reports for one reply"
            assert report.message_id in self.open
            self.reports[report.message_id] = report
            self.open.discard(report.message_id)

    @rule(
        customers=st.lists(st.integers(0, 2), min_size=1, max_size=4),
        slack=st.sampled_from([0.0, 3.0, 10.0, 25.0, 100.0]),
    )
    def submit(self, customers: list[int], slack: float) -> None:
        batch = [reply(f"m{next(self.ids)}", c, deadline=self.now + slack) for c in customers]
        for item in batch:
            self.order.setdefault(item.customer_id, []).append(item.message_id)
            self.open.add(item.message_id)
        self.take(self.core.submit(batch, self.now))

    @rule(dt=st.sampled_from([0.0, 0.5, 2.5, 7.0, 12.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.take(self.core.poll(self.now))

    @rule()
    def wake(self) -> None:
        due = self.core.next_wakeup()
        if due is not None:
            self.now = max(self.now, due)
        self.take(self.core.poll(self.now))

    @rule(pick=st.integers(0, 100))
    def cancel(self, pick: int) -> None:
        if self.open:
            victim = sorted(self.open)[pick % len(self.open)]
            assert self.core.cancel([victim]) == 1
            self.open.discard(victim)

    @invariant()
    def bounded_and_accounted(self) -> None:
        assert self.core.pending == len(self.open) <= CAPACITY

    @invariant()
    def never_over_the_allowance_and_in_submission_order(self) -> None:
        # A start uses one of its customer's allowance for WINDOW seconds, unless it was
        # refused (the core gives it back): at each start, fewer than ALLOWANCE of the
        # customer's earlier starts may still be using theirs.
        refused = self.transport.refused
        per_customer: dict[str, list[tuple[str, float, int]]] = {}
        for customer, message_id, at, seq in self.transport.starts:
            per_customer.setdefault(customer, []).append((message_id, at, seq))
        for customer, starts in per_customer.items():
            for i, (_, at, seq) in enumerate(starts):
                using = [
                    t
                    for _, t, s in starts[:i]
                    if t + WINDOW > at and not (s in refused and refused[s] < seq)
                ]
                assert len(using) < ALLOWANCE, (customer, at, using)
            started = [message_id for message_id, _, _ in starts]
            submitted = [m for m in self.order[customer] if m in set(started)]
            assert started == submitted

    def teardown(self) -> None:
        core = getattr(self, "core", None)
        if core is None:
            return
        for _ in range(1000):
            due = core.next_wakeup()
            if due is None:
                break
            self.now = max(self.now, due)
            self.take(core.poll(self.now))
        assert self.open == set(), "replies left without a report"
        assert core.pending == 0


AccountMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_every_reply_gets_one_report_within_the_allowance = AccountMachine.TestCase


def test_a_retry_scheduled_while_the_timer_heap_is_rebuilt_is_not_lost() -> None:
    # Regression: scheduling a customer's retry pushed its timer before marking it live,
    # so a heap rebuild triggered by that very push dropped it and the reply timed out.
    def reply(mid: str, customer: int) -> OutboundReply:
        return OutboundReply(
            account_id="a",
            customer_id=f"+1555{customer:07d}",
            message_id=mid,
            text="hi",
            deadline=100.0,
        )

    for stale in range(60, 75):  # one of these sizes makes the retry's push rebuild the heap
        core = AccountCore(
            account_id="a",
            transport=LoopbackTransport("a", {}, random.Random(1)),
            max_recipients=10_000,
            max_entries_per_recipient=100,
            rate_window_s=1.0,
            rate_allowance=1,
            sweep_budget=10,
            capacity=1000,
        )
        reports = core.submit([reply(f"m{c}-{i}", c) for c in range(stale) for i in range(2)], 0.0)
        reports += core.poll(1.0) + core.poll(1.0)
        assert len(reports) == 2 * stale
        core.submit([reply("x-0", 9999), reply("x-1", 9999)], 1.5)
        done = {r.message_id: r for r in core.poll(3.0)}
        assert done["x-1"].ok, (stale, done["x-1"])

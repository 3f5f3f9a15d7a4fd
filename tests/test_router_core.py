"""Tests for the router's pure core (actors.router.core), driven by a hand-moved clock."""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from actors.config import EngineConfig
from actors.router.core import MAX_SEND_ATTEMPTS, RouterCore
from protocols import (
    Accepted,
    AIFailure,
    AIReply,
    AIRequest,
    DeliveryReport,
    InboundMessage,
    OutboundReply,
    Outcome,
    Rejected,
)

T0 = 1_700_000_000.0
TIMEOUT_S = 10.0
ACCT = "acct-1"
OTHER = "acct-2"
C1, C2, C3, C4, C5 = "+15550001", "+15550002", "+15550003", "+15550004", "+15550005"


def config(**overrides: Any) -> EngineConfig:
    args: dict[str, Any] = {
        "max_concurrent_processing": 3,
        "max_pending_per_customer": 2,
        "processing_timeout_s": TIMEOUT_S,
    }
    args.update(overrides)
    return EngineConfig(**args)


def router(*accounts: str, **overrides: Any) -> RouterCore:
    """A core with ``accounts`` (default: ACCT) up and an empty outbox."""
    core = RouterCore(config(**overrides))
    for account_id in accounts or (ACCT,):
        core.account_up(account_id, restarted=False, now=T0)
    return core


def msg(mid: str, customer: str = C1, account: str = ACCT, text: str = "hi") -> InboundMessage:
    return InboundMessage(account_id=account, customer_id=customer, message_id=mid, text=text)


def submit_one(core: RouterCore, message: InboundMessage, now: float = T0) -> Accepted | Rejected:
    [result] = core.submit([message], now)
    return result


def accept(core: RouterCore, message: InboundMessage, now: float = T0) -> Accepted:
    result = submit_one(core, message, now)
    assert isinstance(result, Accepted), result
    return result


def reject(core: RouterCore, message: InboundMessage, now: float = T0) -> Rejected:
    result = submit_one(core, message, now)
    assert isinstance(result, Rejected), result
    return result


def ai_ok(mid: str, text: str | None = None) -> AIReply:
    return AIReply(message_id=mid, provider="echo", text=text or f"re {mid}")


def delivered(mid: str) -> DeliveryReport:
    return DeliveryReport(message_id=mid, ok=True)


def pool_ids(core: RouterCore) -> list[str]:
    to_pool, _, _ = core.take_outbox()
    return [r.message_id for r in to_pool]


def sent_ids(core: RouterCore) -> dict[str, list[str]]:
    _, to_accounts, _ = core.take_outbox()
    return {a: [r.message_id for r in replies] for a, replies in to_accounts.items()}


def outcomes(core: RouterCore) -> dict[str, Outcome]:
    return {o.message_id: o for o in core.collect(core.outcomes_ready)}


def status_of(o: Outcome) -> tuple[str, str]:
    return o.status, o.reason


def to_send_stage(core: RouterCore, *mids: str, now: float = T0) -> None:
    core.on_ai_results([ai_ok(m) for m in mids], now)


# -- admission ------------------------------------------------------------------------------


def test_a_message_for_an_account_never_added_is_rejected_unknown_account() -> None:
    core = router()

    rejected = reject(core, msg("m1", account="nobody"))

    assert rejected.reason == "unknown_account"
    assert rejected.detail == "no account 'nobody'"
    assert core.in_flight == 0
    assert core.counters()["reject.unknown_account"] == 1


def test_a_message_for_a_failed_account_is_rejected_account_failed() -> None:
    core = router()
    core.account_gone(ACCT, failed=True, now=T0)

    rejected = reject(core, msg("m1"))

    assert rejected.reason == "account_failed"
    assert rejected.detail == "account 'acct-1' has failed"


def test_an_account_silent_for_account_silence_s_gets_no_new_message_until_it_reads() -> None:
    silent = {ACCT: 0.0}
    core = RouterCore(config(account_silence_s=1.0), silence=lambda a, now: silent[a])
    core.account_up(ACCT, restarted=False, now=T0)
    silent[ACCT] = 0.999  # just under the bound: still taken
    assert isinstance(core.submit([msg("m1")], T0)[0], Accepted)
    silent[ACCT] = 1.0  # at the bound: refused, and not remembered (a redelivery may pass)
    rejected = reject(core, msg("m2", C2))
    assert rejected.reason == "account_unresponsive"
    assert rejected.detail == "account 'acct-1' has not read for 1.0 s (account_silence_s=1)"
    assert core.counters()["reject.account_unresponsive"] == 1
    # What it was accepted before stays accepted; a re-admission is never refused.
    (readmitted,) = core.submit([msg("m3", C3)], T0, readmit=True)
    assert isinstance(readmitted, Accepted)
    silent[ACCT] = 0.0  # it read again (or was replaced): the redelivery is taken
    assert isinstance(core.submit([msg("m2", C2)], T0)[0], Accepted)


def test_account_silence_s_zero_never_refuses_a_silent_account() -> None:
    core = RouterCore(config(account_silence_s=0.0), silence=lambda a, now: 3600.0)
    core.account_up(ACCT, restarted=False, now=T0)
    assert isinstance(core.submit([msg("m1")], T0)[0], Accepted)


def test_an_accepted_message_gets_a_deadline_from_its_acceptance_and_goes_to_the_pool() -> None:
    core = router()

    accepted = accept(core, msg("m1", text="hello"), now=T0 + 3)

    assert accepted.deadline == T0 + 3 + TIMEOUT_S
    to_pool, to_accounts, cancel = core.take_outbox()
    assert to_pool == [
        AIRequest(
            message_id="m1",
            account_id=ACCT,
            customer_id=C1,
            text="hello",
            deadline=T0 + 3 + TIMEOUT_S,
        )
    ]
    assert (to_accounts, cancel) == ({}, [])
    assert core.in_flight == 1
    assert core.counters()["accepted"] == 1


def test_a_redelivered_id_is_rejected_duplicate_while_live_and_after_its_outcome() -> None:
    core = router()
    accept(core, msg("m1"))

    assert reject(core, msg("m1")).reason == "duplicate"
    core.on_ai_results([AIFailure(message_id="m1", reason="provider_error")], T0)
    outcomes(core)
    rejected = reject(core, msg("m1"))

    assert rejected.reason == "duplicate"
    assert rejected.detail == "message id seen before"
    assert core.counters()["reject.duplicate"] == 2
    assert core.counters()["accepted"] == 1


def test_a_live_id_the_dedupe_set_forgot_is_still_rejected_duplicate_by_the_gate() -> None:
    core = router(dedupe_capacity=1)
    accept(core, msg("m1", C1))
    accept(core, msg("m2", C2))  # evicts m1 from the dedupe set

    rejected = reject(core, msg("m1", C1))

    assert rejected.reason == "duplicate"
    assert rejected.detail == "message id already in processing"
    assert core.counters()["dedupe.evictions"] == 1


def test_a_new_customer_past_max_concurrent_processing_is_rejected_capacity() -> None:
    core = router(max_concurrent_processing=2)
    accept(core, msg("m1", C1))
    accept(core, msg("m2", C2))

    rejected = reject(core, msg("m3", C3))

    assert rejected.reason == "capacity"
    assert "2 customers already in processing (max_concurrent_processing)" in rejected.detail
    assert core.counters()["reject.capacity"] == 1
    assert pool_ids(core) == ["m1", "m2"]


def test_a_message_rejected_for_capacity_is_not_remembered_and_its_redelivery_is_accepted() -> None:
    core = router(max_concurrent_processing=1)
    accept(core, msg("m1", C1))
    assert reject(core, msg("m2", C2)).reason == "capacity"
    # Redelivered while still full: capacity again, not duplicate.
    assert reject(core, msg("m2", C2)).reason == "capacity"

    to_send_stage(core, "m1")
    core.on_deliveries([delivered("m1")], T0 + 1)
    accepted = accept(core, msg("m2", C2), now=T0 + 2)

    assert accepted.deadline == T0 + 2 + TIMEOUT_S
    assert core.counters()["reject.capacity"] == 2
    assert "reject.duplicate" not in core.counters()


def test_a_customer_with_a_full_queue_is_rejected_customer_backlog_and_not_remembered() -> None:
    core = router(max_pending_per_customer=1)
    accept(core, msg("m1"))
    accept(core, msg("m2"))  # queued behind m1

    rejected = reject(core, msg("m3"))

    assert rejected.reason == "customer_backlog"
    assert "1 messages already wait for this customer" in rejected.detail
    assert pool_ids(core) == ["m1"]  # the queued one waits
    core.on_ai_results([AIFailure(message_id="m1", reason="provider_error")], T0)
    accept(core, msg("m3"))


def test_a_customer_with_no_queue_allowed_is_rejected_customer_backlog_at_once() -> None:
    core = router(max_pending_per_customer=0)
    accept(core, msg("m1"))

    assert reject(core, msg("m2")).reason == "customer_backlog"


def test_after_start_drain_every_submission_is_rejected_shutting_down() -> None:
    core = router()
    accept(core, msg("m1"))
    core.start_drain()

    assert reject(core, msg("m2")).reason == "shutting_down"
    assert reject(core, msg("m3", account="nobody")).reason == "shutting_down"
    assert reject(core, msg("m1")).reason == "shutting_down"
    assert not core.drained
    # In-flight messages carry on to their outcome.
    to_send_stage(core, "m1")
    core.on_deliveries([delivered("m1")], T0 + 1)
    assert status_of(outcomes(core)["m1"]) == ("replied", "")
    assert core.drained


def test_at_max_uncollected_outcomes_new_messages_are_rejected_capacity_until_collected() -> None:
    core = router(max_uncollected_outcomes=2)
    for mid, customer in (("m1", C1), ("m2", C2)):
        accept(core, msg(mid, customer))
        core.on_ai_results([AIFailure(message_id=mid, reason="provider_error")], T0)
    assert core.outcomes_ready == 2

    rejected = reject(core, msg("m3", C3))

    assert rejected.reason == "capacity"
    assert rejected.detail == "2 outcomes wait to be collected (max_uncollected_outcomes=2)"
    assert core.collect(1)[0].message_id == "m1"
    accept(core, msg("m3", C3))  # not remembered: accepted once there is room


def test_a_readmitted_message_skips_the_dedupe_set_and_the_outcome_backlog() -> None:
    core = router(max_uncollected_outcomes=1)
    accept(core, msg("m1", C1))
    accept(core, msg("m0", C2))
    core.on_ai_results([AIFailure(message_id="m0", reason="provider_error")], T0)
    core.abandon_all()  # e.g. a router whose messages went back to the ledger

    [result] = core.submit([msg("m1", C1)], T0 + 1, readmit=True)

    assert isinstance(result, Accepted)
    assert core.counters()["readmitted"] == 1
    assert core.counters()["accepted"] == 3


def test_a_readmitted_message_keeps_the_deadline_it_was_first_accepted_with() -> None:
    core = router()
    accept(core, msg("new", C2))  # deadline T0 + 10
    [kept, fresh] = core.submit(
        [msg("old", C1), msg("other", C3)], T0 + 1, readmit=True, deadlines=(T0 + 5, T0 + 30)
    )
    assert (kept, fresh) == (
        Accepted(message_id="old", deadline=T0 + 5),
        Accepted(message_id="other", deadline=T0 + 30),
    )
    assert core.next_wakeup() == T0 + 5  # the earliest, though offered last
    assert core.expire(T0 + 5) == 1
    assert status_of(outcomes(core)["old"]) == ("timeout", "timeout")
    assert core.expire(T0 + 10) == 1  # then "new", at its own deadline; "other" lives on
    assert core.in_flight == 1


def test_a_message_readmitted_past_its_deadline_times_out_at_once_without_a_send() -> None:
    core = router()
    [result] = core.submit([msg("late", C1)], T0, readmit=True, deadlines=(T0 - 1,))
    assert result == Accepted(message_id="late", deadline=T0 - 1)
    outcome = outcomes(core)["late"]
    assert status_of(outcome) == ("timeout", "timeout")
    assert "nothing was sent" in outcome.detail
    assert core.take_outbox() == ([], {}, [])  # no AI request, nothing to cancel
    assert core.in_flight == 0
    assert core.counters()["readmitted_late"] == 1
    assert isinstance(submit_one(core, msg("late", C1)), Rejected)  # remembered: duplicate


def test_the_occupancy_warning_fires_once_when_processing_reaches_the_ratio() -> None:
    core = router(max_concurrent_processing=2, occupancy_warn_ratio=0.5)

    accept(core, msg("m1", C1))
    accept(core, msg("m2", C2))

    assert core.alerts == ["1 of 2 customers in processing (occupancy warning)"]


# -- AI results -----------------------------------------------------------------------------


def test_ai_replies_become_one_send_batch_per_account() -> None:
    core = router(ACCT, OTHER)
    core.submit([msg("m1", C1), msg("m2", C2, account=OTHER), msg("m3", C3)], T0)
    assert pool_ids(core) == ["m1", "m2", "m3"]

    core.on_ai_results([ai_ok("m1", "one"), ai_ok("m2", "two"), ai_ok("m3", "three")], T0 + 1)

    to_pool, to_accounts, cancel = core.take_outbox()
    assert (to_pool, cancel) == ([], [])
    assert to_accounts == {
        ACCT: [
            OutboundReply(
                account_id=ACCT, customer_id=C1, message_id="m1", text="one", deadline=T0 + 10
            ),
            OutboundReply(
                account_id=ACCT, customer_id=C3, message_id="m3", text="three", deadline=T0 + 10
            ),
        ],
        OTHER: [
            OutboundReply(
                account_id=OTHER, customer_id=C2, message_id="m2", text="two", deadline=T0 + 10
            )
        ],
    }
    assert core.outstanding() == (0, {ACCT: 2, OTHER: 1})
    assert core.take_outbox() == ([], {}, [])


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("timeout", ("timeout", "timeout")),
        ("no_provider", ("failed", "no_provider")),
        ("provider_error", ("failed", "provider_error")),
    ],
)
def test_an_ai_failure_ends_the_message_and_starts_the_customers_next_one(
    reason: str, expected: tuple[str, str]
) -> None:
    core = router()
    accept(core, msg("m1"))
    accept(core, msg("m2"), now=T0 + 1)
    assert pool_ids(core) == ["m1"]

    core.on_ai_results([AIFailure(message_id="m1", reason=reason, detail="boom")], T0 + 2)

    outcome = outcomes(core)["m1"]
    assert status_of(outcome) == expected
    assert (outcome.reply, outcome.detail) == (None, "boom")
    to_pool, _, _ = core.take_outbox()
    assert [(r.message_id, r.deadline) for r in to_pool] == [("m2", T0 + 1 + TIMEOUT_S)]
    assert core.counters()[f"outcome.{expected[0]}.{expected[1]}"] == 1


def test_a_delivery_report_ok_ends_the_message_replied_with_the_reply_text() -> None:
    core = router()
    accept(core, msg("m1"))
    core.on_ai_results([ai_ok("m1", "Hello from the bot")], T0 + 1)
    assert sent_ids(core) == {ACCT: ["m1"]}

    core.on_deliveries([delivered("m1")], T0 + 2)

    assert outcomes(core) == {
        "m1": Outcome(message_id="m1", status="replied", reply="Hello from the bot")
    }
    assert core.counters()["outcome.replied"] == 1
    assert core.in_flight == 0


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("transport_error", ("failed", "transport_error")), ("timeout", ("timeout", "timeout"))],
)
def test_a_failed_delivery_ends_the_message_with_its_reason(
    reason: str, expected: tuple[str, str]
) -> None:
    core = router()
    accept(core, msg("m1"))
    to_send_stage(core, "m1")

    core.on_deliveries([DeliveryReport(message_id="m1", ok=False, reason=reason)], T0 + 1)

    assert status_of(outcomes(core)["m1"]) == expected


def test_late_ai_results_and_late_deliveries_are_counted_and_change_nothing() -> None:
    core = router()
    accept(core, msg("m1"))
    # A delivery report while the message is still at the pool is late too.
    core.on_deliveries([delivered("m1")], T0)
    to_send_stage(core, "m1")
    core.on_ai_results([ai_ok("m1"), ai_ok("unknown")], T0)  # a second reply, an unknown id
    core.on_deliveries([delivered("m1")], T0)
    core.on_deliveries([delivered("m1")], T0)
    core.on_ai_results([AIFailure(message_id="m1", reason="timeout")], T0)

    assert [o.message_id for o in core.collect(10)] == ["m1"]
    counters = core.counters()
    assert counters["late_replies"] == 3
    assert counters["late_deliveries"] == 2


# -- time -----------------------------------------------------------------------------------


def test_expire_times_out_late_messages_and_starts_the_customers_next_one() -> None:
    core = router()
    accept(core, msg("m1", C1))
    accept(core, msg("m3", C2), now=T0 + 1)
    accept(core, msg("m2", C1), now=T0 + 4)  # queued behind m1
    to_send_stage(core, "m3", now=T0 + 2)  # m3 waits at its account
    core.take_outbox()
    assert core.next_wakeup() == T0 + TIMEOUT_S

    assert core.expire(T0 + TIMEOUT_S - 0.001) == 0
    assert core.expire(T0 + TIMEOUT_S + 1) == 2

    ended = outcomes(core)
    assert sorted(ended) == ["m1", "m3"]
    for outcome in ended.values():
        assert status_of(outcome) == ("timeout", "timeout")
        assert outcome.detail == "no outcome within processing_timeout_s=10"
    to_pool, to_accounts, cancel = core.take_outbox()
    assert [(r.message_id, r.deadline) for r in to_pool] == [("m2", T0 + 4 + TIMEOUT_S)]
    assert to_accounts == {}
    assert cancel == ["m1"]  # m3 was no longer at the pool
    assert core.next_wakeup() == T0 + 4 + TIMEOUT_S
    # A reply or report for an expired message is late.
    core.on_deliveries([delivered("m3")], T0 + 12)
    assert core.counters()["late_deliveries"] == 1


def test_queued_messages_expire_too_in_acceptance_order() -> None:
    core = router()
    accept(core, msg("m1"))
    accept(core, msg("m2"))
    accept(core, msg("m3"), now=T0 + 5)

    assert core.expire(T0 + TIMEOUT_S) == 2

    assert list(outcomes(core)) == ["m1", "m2"]
    assert pool_ids(core) == ["m1", "m3"]  # m2 expired before it could start


# -- accounts -------------------------------------------------------------------------------


def test_replies_for_a_crashed_account_are_held_and_resent_when_it_restarts() -> None:
    core = router()
    accept(core, msg("m1", C1))
    accept(core, msg("m2", C2))
    to_send_stage(core, "m1")
    assert sent_ids(core) == {ACCT: ["m1"]}

    core.account_down(ACCT)
    to_send_stage(core, "m2")
    assert sent_ids(core) == {}  # held while the account is down
    assert core.outstanding() == (0, {ACCT: 2})

    assert core.account_up(ACCT, restarted=True, now=T0 + 1) == 2

    assert sent_ids(core) == {ACCT: ["m1", "m2"]}
    assert core.counters()["resent_after_restart"] == 2
    core.on_deliveries([delivered("m1"), delivered("m2")], T0 + 2)
    assert {status_of(o) for o in outcomes(core).values()} == {("replied", "")}


def test_account_down_for_an_unknown_account_adds_nothing() -> None:
    core = router()
    core.account_down("nobody")

    assert reject(core, msg("m1", account="nobody")).reason == "unknown_account"


def test_a_reply_whose_account_crashed_max_send_attempts_times_fails_account_failed() -> None:
    core = router()
    accept(core, msg("m1"))
    accept(core, msg("m2"))
    to_send_stage(core, "m1")
    assert sent_ids(core) == {ACCT: ["m1"]}
    for _ in range(MAX_SEND_ATTEMPTS - 1):
        core.account_down(ACCT)
        core.account_up(ACCT, restarted=True, now=T0 + 1)
        assert sent_ids(core) == {ACCT: ["m1"]}

    core.account_down(ACCT)
    core.account_up(ACCT, restarted=True, now=T0 + 2)

    outcome = outcomes(core)["m1"]
    assert status_of(outcome) == ("failed", "account_failed")
    assert outcome.detail == "account crashed 3 times while sending this reply"
    to_pool, to_accounts, _ = core.take_outbox()
    assert to_accounts == {}
    assert [r.message_id for r in to_pool] == ["m2"]


@pytest.mark.parametrize(
    ("failed", "expected", "detail", "then"),
    [
        (True, ("failed", "account_failed"), "failed past its restart policy", "account_failed"),
        (False, ("rejected", "unknown_account"), "was removed", "unknown_account"),
    ],
)
def test_an_account_gone_ends_all_its_live_messages_queued_ones_too(
    failed: bool, expected: tuple[str, str], detail: str, then: str
) -> None:
    core = router(ACCT, OTHER, max_concurrent_processing=5, max_pending_per_customer=2)
    theirs = []
    for customer in (C1, C2, C3):  # one message at the pool, two queued behind it
        for n in range(3):
            theirs.append(accept(core, msg(f"a{customer[-1]}{n}", customer)).message_id)
    accept(core, msg("a4", C4))  # at the account
    accept(core, msg("b1", C1, account=OTHER))  # same customer, other account
    accept(core, msg("b2", C1, account=OTHER))  # queued behind b1
    to_send_stage(core, "a4")
    core.take_outbox()

    assert core.account_gone(ACCT, failed=failed, now=T0 + 1) == 10

    ended = outcomes(core)
    assert sorted(ended) == sorted([*theirs, "a4"])
    for outcome in ended.values():
        assert status_of(outcome) == expected
        assert outcome.detail == f"account 'acct-1' {detail}"
    to_pool, to_accounts, cancel = core.take_outbox()
    # No AI request for a message that ended in the same call (queued ones were started
    # when the one ahead of them was cancelled first); the pool is told to drop its three.
    assert (to_pool, to_accounts) == ([], {})
    assert sorted(cancel) == ["a10", "a20", "a30"]
    assert core.in_flight == 2
    assert core.outstanding() == (1, {})
    assert reject(core, msg("a5", C5)).reason == then
    # Late answers for the ended messages are counted, not turned into outcomes.
    core.on_ai_results([ai_ok("a10")], T0 + 2)
    core.on_deliveries([delivered("a4")], T0 + 2)
    assert core.collect(10) == []
    assert core.counters()["late_replies"] == 1
    assert core.counters()["late_deliveries"] == 1
    # The other account's customer keeps its order.
    core.on_ai_results([AIFailure(message_id="b1", reason="provider_error")], T0 + 3)
    assert pool_ids(core) == ["b2"]


def test_an_account_gone_frees_its_processing_slots_for_other_customers() -> None:
    core = router(ACCT, OTHER, max_concurrent_processing=2)
    accept(core, msg("a1", C1))
    accept(core, msg("a2", C1))
    accept(core, msg("b1", C2, account=OTHER))
    assert reject(core, msg("b2", C3, account=OTHER)).reason == "capacity"

    core.account_gone(ACCT, failed=True, now=T0 + 1)

    accept(core, msg("b2", C3, account=OTHER), now=T0 + 1)
    assert pool_ids(core) == ["a1", "b1", "b2"]


def test_a_removed_account_can_be_added_again() -> None:
    core = router()
    core.account_gone(ACCT, failed=False, now=T0)
    core.account_up(ACCT, restarted=False, now=T0)

    accept(core, msg("m1"))


# -- the AI pool ----------------------------------------------------------------------------


def test_a_restarted_pool_is_asked_again_for_every_message_it_held() -> None:
    core = router()
    accept(core, msg("m1", C1))
    accept(core, msg("m2", C2), now=T0 + 1)
    accept(core, msg("m3", C3))
    accept(core, msg("m4", C3))  # queued: never was at the pool
    to_send_stage(core, "m3")
    core.take_outbox()

    assert core.pool_restarted() == 2

    to_pool, to_accounts, _ = core.take_outbox()
    assert [(r.message_id, r.deadline) for r in to_pool] == [
        ("m1", T0 + TIMEOUT_S),
        ("m2", T0 + 1 + TIMEOUT_S),
    ]
    assert to_accounts == {}
    assert core.counters()["resent_after_restart"] == 2


def test_a_failed_pool_fails_every_message_waiting_for_it_no_provider() -> None:
    core = router()
    accept(core, msg("m1", C1))
    accept(core, msg("m2", C1))  # queued: starts, and fails at once
    accept(core, msg("m3", C2))
    to_send_stage(core, "m3")
    core.take_outbox()

    assert core.pool_failed(T0 + 1) == 1

    ended = outcomes(core)
    assert {mid: status_of(o) for mid, o in ended.items()} == {
        "m1": ("failed", "no_provider"),
        "m2": ("failed", "no_provider"),
    }
    assert core.take_outbox() == ([], {}, [])
    # m3 is past the pool and still ends normally.
    core.on_deliveries([delivered("m3")], T0 + 2)
    assert status_of(outcomes(core)["m3"]) == ("replied", "")
    # New messages are accepted but fail no_provider until the pool comes back.
    accept(core, msg("m4", C3), now=T0 + 3)
    assert status_of(outcomes(core)["m4"]) == ("failed", "no_provider")
    core.pool_restarted()
    accept(core, msg("m5", C3), now=T0 + 4)
    assert pool_ids(core) == ["m5"]


# -- shutdown -------------------------------------------------------------------------------


def test_abandon_all_after_drain_ends_every_live_message_abandoned() -> None:
    core = router()
    accept(core, msg("m1", C1))
    accept(core, msg("m2", C1))
    accept(core, msg("m3", C2))
    to_send_stage(core, "m3")
    core.start_drain()
    core.take_outbox()

    assert core.abandon_all() == ["m1", "m2", "m3"]

    ended = outcomes(core)
    assert list(ended) == ["m1", "m2", "m3"]
    for outcome in ended.values():
        assert status_of(outcome) == ("abandoned", "shutdown")
    assert core.drained
    assert core.in_flight == 0
    assert core.outstanding() == (0, {})
    assert core.next_wakeup() is None
    core.on_ai_results([ai_ok("m1")], T0 + 1)
    assert core.counters()["late_replies"] == 1


# -- stats ----------------------------------------------------------------------------------


def test_counters_and_sizes_add_up() -> None:
    core = router(max_concurrent_processing=2, max_pending_per_customer=1)
    core.submit(
        [msg("m1", C1), msg("m2", C1), msg("m3", C1), msg("m4", C2), msg("m5", C3), msg("m1")],
        T0,
    )
    to_send_stage(core, "m1")
    core.on_deliveries([delivered("m1")], T0 + 1)

    assert core.capacity == 2 * (1 + 1)
    assert core.in_flight == 2
    assert core.outcomes_ready == 1
    assert core.counters() == {
        "accepted": 3,
        "reject.customer_backlog": 1,
        "reject.capacity": 1,
        "reject.duplicate": 1,
        "outcome.replied": 1,
        "dedupe.evictions": 0,
        "gate.peak_processing": 2,
        "gate.late_completions": 0,
        "gate.processing": 2,
        "gate.queued": 0,
        "outcomes_ready": 1,
    }


# -- a state machine against a model of the pipeline ------------------------------------------

ACCOUNTS = ("acct-a", "acct-b")
CUSTOMERS = (C1, C2, C3)
AI_FAILURES = ("timeout", "no_provider", "provider_error")
SEND_FAILURES = ("timeout", "transport_error", "rate_limited")


def _expected_failure(reason: str) -> tuple[str, str]:
    return ("timeout" if reason == "timeout" else "failed"), reason


class RouterMachine(RuleBasedStateMachine):
    """Drives a RouterCore like its actor would, and plays the pool and the accounts.

    After every step the outbox is taken and applied to the model pool and accounts, and
    every outcome is collected, so the model knows exactly which messages are live.
    """

    def __init__(self) -> None:
        super().__init__()
        self.core: RouterCore | None = None
        self.max_processing = 0
        self.max_pending = 0
        self.now = T0
        self.ids = count(1)
        self.draining = False
        self.submitted: dict[str, InboundMessage] = {}  # every id ever submitted
        self.accepted: dict[str, int] = {}  # id -> acceptance sequence number
        self.deadline: dict[str, float] = {}
        self.live: dict[str, None] = {}  # accepted ids without an outcome, in order
        self.outcomes: dict[str, Outcome] = {}
        self.stage: dict[str, str] = {}  # live id -> "ai" | "send", from what was sent
        self.sends: dict[str, int] = {}  # times a reply was handed to an account
        self.pool: set[str] = set()  # requests the model pool holds
        self.held: dict[str, set[str]] = {a: set() for a in ACCOUNTS}  # replies at accounts
        self.account: dict[str, str] = dict.fromkeys(ACCOUNTS, "up")
        self.last_replied: dict[tuple[str, str], int] = {}
        self.late_replies = 0
        self.late_deliveries = 0
        self.new: dict[str, Outcome] = {}  # outcomes of the last step

    @property
    def c(self) -> RouterCore:
        assert self.core is not None
        return self.core

    @initialize(
        max_processing=st.integers(1, 3),
        max_pending=st.integers(0, 2),
    )
    def setup(self, max_processing: int, max_pending: int) -> None:
        self.max_processing, self.max_pending = max_processing, max_pending
        self.core = RouterCore(
            config(
                max_concurrent_processing=max_processing,
                max_pending_per_customer=max_pending,
                dedupe_capacity=1000,
            )
        )
        for account_id in ACCOUNTS:
            self.c.account_up(account_id, restarted=False, now=self.now)
        self.flush()

    # -- the model's view ----------------------------------------------------------------

    def key(self, mid: str) -> tuple[str, str]:
        m = self.submitted[mid]
        return m.account_id, m.customer_id

    def live_of(self, key: tuple[str, str]) -> list[str]:
        return [mid for mid in self.live if self.key(mid) == key]

    def flush(self) -> None:
        """Perform the core's effects the way the router actor does, then collect."""
        to_pool, to_accounts, cancel = self.c.take_outbox()
        self.new = {}
        for outcome in self.c.collect(self.c.outcomes_ready):
            mid = outcome.message_id
            assert mid in self.accepted, f"outcome for {mid!r}, never accepted"
            assert mid not in self.outcomes, f"second outcome for {mid}"
            assert mid not in self.new, f"second outcome for {mid}"
            self.new[mid] = outcome
            if outcome.status == "replied":
                assert outcome.reply == f"re {mid}"
                key, seq = self.key(mid), self.accepted[mid]
                assert seq > self.last_replied.get(key, 0), f"{mid} replied out of order"
                self.last_replied[key] = seq
            del self.live[mid]
            self.stage.pop(mid, None)
        self.outcomes.update(self.new)
        # AIBatch first, then the SendBatches, then the CancelBatch (as RouterActor.after_turn).
        for request in to_pool:
            mid = request.message_id
            assert mid in self.live, f"AI request for {mid!r}, which is not live"
            assert self.live_of(self.key(mid))[0] == mid, f"{mid} started out of order"
            assert request.deadline == self.deadline[mid]
            self.pool.add(mid)
            self.stage[mid] = "ai"
        assert len(self.pool) <= self.max_processing
        for account_id, replies in to_accounts.items():
            assert self.account[account_id] == "up", f"reply sent to {account_id} while down"
            for reply in replies:
                mid = reply.message_id
                assert mid in self.live, f"reply for {mid!r}, which is not live"
                assert reply.account_id == account_id
                assert reply.text == f"re {mid}"
                self.held[account_id].add(mid)
                self.sends[mid] = self.sends.get(mid, 0) + 1
            assert len(self.held[account_id]) <= self.max_processing
        for mid in cancel:
            assert mid not in self.live, f"{mid} cancelled but still live"
            self.pool.discard(mid)

    # -- rules ---------------------------------------------------------------------------

    @rule(
        account=st.sampled_from(ACCOUNTS),
        customer=st.sampled_from(CUSTOMERS),
        repeat=st.none() | st.none() | st.integers(0, 10**6),
    )
    def submit(self, account: str, customer: str, repeat: int | None) -> None:
        if repeat is not None and self.submitted:
            message = list(self.submitted.values())[repeat % len(self.submitted)]
        else:
            message = msg(f"m{next(self.ids)}", customer, account, text="hi")
        mid = message.message_id
        self.submitted.setdefault(mid, message)
        key = (message.account_id, message.customer_id)
        state = self.account[message.account_id]
        busy = self.live_of(key)
        customers_busy = {self.key(m) for m in self.live}

        result = submit_one(self.c, message, self.now)

        if self.draining:
            expected = "shutting_down"
        elif state == "removed":
            expected = "unknown_account"
        elif state == "failed":
            expected = "account_failed"
        elif mid in self.accepted:
            expected = "duplicate"
        elif busy:
            expected = "customer_backlog" if len(busy) - 1 >= self.max_pending else "accepted"
        else:
            expected = "capacity" if len(customers_busy) >= self.max_processing else "accepted"
        if expected == "accepted":
            assert isinstance(result, Accepted), result
            assert result.deadline == self.now + TIMEOUT_S
            self.accepted[mid] = len(self.accepted) + 1
            self.deadline[mid] = result.deadline
            self.live[mid] = None
        else:
            assert isinstance(result, Rejected), result
            assert result.reason == expected
        self.flush()
        assert not self.new, "admission ended a message"

    @precondition(lambda self: self.pool)
    @rule(data=st.data())
    def ai_results(self, data: st.DataObject) -> None:
        mids = data.draw(st.lists(st.sampled_from(sorted(self.pool)), min_size=1, unique=True))
        answers = {m: data.draw(st.sampled_from(("ok", "ok", *AI_FAILURES))) for m in mids}
        late = None
        if self.outcomes and data.draw(st.booleans()):
            late = data.draw(st.sampled_from(sorted(self.outcomes)))
        self.answer_from_pool(answers, late)

    @precondition(lambda self: self.pool)
    @rule()
    def pool_answers_everything(self) -> None:
        self.answer_from_pool(dict.fromkeys(sorted(self.pool), "ok"), None)

    def answer_from_pool(self, answers: dict[str, str], late: str | None) -> None:
        results: list[AIReply | AIFailure] = []
        expected: dict[str, tuple[str, str]] = {}
        for mid, reason in answers.items():
            assert self.stage[mid] == "ai"
            if reason == "ok":
                results.append(ai_ok(mid))
                self.stage[mid] = "send"
            else:
                results.append(AIFailure(message_id=mid, reason=reason))
                expected[mid] = _expected_failure(reason)
            self.pool.discard(mid)
        if late is not None:
            # E.g. from a pool generation since restarted: counted, never an outcome.
            results.append(ai_ok(late))
            self.late_replies += 1

        self.c.on_ai_results(results, self.now)
        self.flush()

        assert {mid: status_of(o) for mid, o in self.new.items()} == expected
        assert self.c.counters().get("late_replies", 0) == self.late_replies

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data())
    def deliveries(self, data: st.DataObject) -> None:
        account_id = data.draw(st.sampled_from([a for a in ACCOUNTS if self.held[a]]))
        held = sorted(self.held[account_id])
        mids = data.draw(st.lists(st.sampled_from(held), min_size=1, unique=True))
        reports = {m: data.draw(st.sampled_from(("ok", "ok", *SEND_FAILURES))) for m in mids}
        if self.outcomes and data.draw(st.booleans()):
            reports.setdefault(data.draw(st.sampled_from(sorted(self.outcomes))), "ok")
        self.deliver(account_id, reports)

    @precondition(lambda self: any(self.held.values()))
    @rule()
    def accounts_send_everything(self) -> None:
        for account_id in ACCOUNTS:
            if self.held[account_id]:
                self.deliver(account_id, dict.fromkeys(sorted(self.held[account_id]), "ok"))

    def deliver(self, account_id: str, reports: dict[str, str]) -> None:
        batch = []
        expected: dict[str, tuple[str, str]] = {}
        for mid, reason in reports.items():
            if reason == "ok":
                batch.append(delivered(mid))
            else:
                batch.append(DeliveryReport(message_id=mid, ok=False, reason=reason))
            if mid in self.live:
                assert self.stage[mid] == "send"
                expected[mid] = ("replied", "") if reason == "ok" else _expected_failure(reason)
            else:
                self.late_deliveries += 1
            self.held[account_id].discard(mid)

        self.c.on_deliveries(batch, self.now)
        self.flush()

        assert {mid: status_of(o) for mid, o in self.new.items()} == expected
        assert self.c.counters().get("late_deliveries", 0) == self.late_deliveries

    @rule(dt=st.sampled_from((0.5, 2.0, 5.0, TIMEOUT_S)))
    def advance_and_expire(self, dt: float) -> None:
        self.now += dt
        due = {mid for mid in self.live if self.deadline[mid] <= self.now}

        assert self.c.expire(self.now) == len(due)
        # The pool and the accounts enforce the same deadlines on what they hold.
        self.pool = {mid for mid in self.pool if self.deadline[mid] > self.now}
        for held in self.held.values():
            held.difference_update({mid for mid in held if self.deadline[mid] <= self.now})
        self.flush()

        assert set(self.new) == due
        assert all(status_of(o) == ("timeout", "timeout") for o in self.new.values())
        assert all(self.deadline[mid] > self.now for mid in self.live)
        wakeup = self.c.next_wakeup()
        assert wakeup == min((self.deadline[m] for m in self.live), default=None)

    def accounts_in(self, *states: str) -> list[str]:
        return [a for a in ACCOUNTS if self.account[a] in states]

    @precondition(lambda self: self.accounts_in("up"))
    @rule(data=st.data())
    def account_down(self, data: st.DataObject) -> None:
        account = data.draw(st.sampled_from(self.accounts_in("up")))
        self.crash(account)

    @precondition(lambda self: self.accounts_in("down", "removed"))
    @rule(data=st.data())
    def account_up(self, data: st.DataObject) -> None:
        account = data.draw(st.sampled_from(self.accounts_in("down", "removed")))
        self.restart(account)

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data())
    def account_crashes_while_sending(self, data: st.DataObject) -> None:
        account = data.draw(st.sampled_from([a for a in ACCOUNTS if self.held[a]]))
        self.crash(account)
        self.restart(account)

    def crash(self, account: str) -> None:
        self.c.account_down(account)
        self.account[account] = "down"
        self.held[account].clear()  # the process died with what it held
        self.flush()
        assert not self.new

    def restart(self, account: str) -> None:
        state = self.account[account]
        theirs = [m for m in self.live if self.key(m)[0] == account]
        waiting = [m for m in theirs if self.stage.get(m) == "send"]
        give_up = {m for m in waiting if self.sends.get(m, 0) >= MAX_SEND_ATTEMPTS}

        resent = self.c.account_up(account, restarted=state == "down", now=self.now)
        self.account[account] = "up"
        self.flush()

        assert resent == len(waiting)
        assert set(self.new) == give_up
        assert all(status_of(o) == ("failed", "account_failed") for o in self.new.values())
        assert {m for m in waiting if m not in give_up} <= self.held[account]

    @precondition(lambda self: self.live and self.accounts_in("up", "down", "failed"))
    @rule(data=st.data(), failed=st.booleans())
    def account_gone(self, data: st.DataObject, failed: bool) -> None:
        account = data.draw(st.sampled_from(self.accounts_in("up", "down", "failed")))
        theirs = {m for m in self.live if self.key(m)[0] == account}

        assert self.c.account_gone(account, failed=failed, now=self.now) == len(theirs)
        self.account[account] = "failed" if failed else "removed"
        self.held[account].clear()
        self.flush()

        assert set(self.new) == theirs
        expected = ("failed", "account_failed") if failed else ("rejected", "unknown_account")
        assert all(status_of(o) == expected for o in self.new.values())

    @precondition(lambda self: self.pool)
    @rule()
    def pool_restarted(self) -> None:
        self.pool.clear()  # the new generation holds nothing
        at_pool = {m for m in self.live if self.stage.get(m) == "ai"}

        assert self.c.pool_restarted() == len(at_pool)
        self.flush()

        assert self.pool == at_pool
        assert not self.new

    @precondition(lambda self: not self.draining and len(self.outcomes) >= 5)
    @rule()
    def start_drain(self) -> None:
        self.c.start_drain()
        self.draining = True
        self.flush()
        assert not self.new

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def in_flight_is_accepted_minus_outcomes(self) -> None:
        if self.core is None:
            return
        assert self.c.in_flight == len(self.accepted) - len(self.outcomes) == len(self.live)
        assert self.c.drained == (not self.live)

    @invariant()
    def outstanding_items_stay_within_max_concurrent_processing(self) -> None:
        if self.core is None:
            return
        pool, accounts = self.c.outstanding()
        assert pool == len(self.pool)
        assert pool + sum(accounts.values()) <= self.max_processing
        assert self.c.counters()["gate.processing"] <= self.max_processing
        assert all(len(held) <= self.max_processing for held in self.held.values())

    def teardown(self) -> None:
        if self.core is None:
            return
        self.c.start_drain()
        abandoned = self.c.abandon_all()
        self.flush()
        assert abandoned == list(self.new)
        assert all(status_of(o) == ("abandoned", "shutdown") for o in self.new.values())
        assert set(self.outcomes) == set(self.accepted)
        assert self.c.in_flight == 0


RouterMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestRouterAgainstAModelPipeline = RouterMachine.TestCase

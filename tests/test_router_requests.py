"""Tests for the router's pure request desk, its effects and its flights, with no actor system.

``RequestDesk`` (actors.router.requests) answers the gateway and the supervisor; the clock
is a number the tests move by hand, and the "addresses" are plain strings.
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.config import EngineConfig
from actors.cores.lifecycle import LifecycleError
from actors.router.core import RouterCore
from actors.router.effects import Effect, Send, Warn
from actors.router.flight import Flight, Stage
from actors.router.requests import MAX_EVENTS, RequestDesk
from actors.runtime.wiring import DrainDone
from protocols import (
    Accepted,
    AccountEvent,
    AIFailure,
    AIReply,
    AIRequest,
    AIResults,
    CollectOutcomes,
    DeliveryBatch,
    DeliveryReport,
    InboundMessage,
    OutboundReply,
    OutcomeBatch,
    Rejected,
    SubmitBatch,
    SubmitResults,
)

T0 = 1_700_000_000.0
GEN = 3
ACCT = "acct-1"
GATEWAY, OTHER_GATEWAY, SUPERVISOR = "gateway", "gateway-2", "supervisor"


def desk(**overrides: Any) -> RequestDesk:
    """A desk of router generation GEN whose core has ACCT up."""
    args: dict[str, Any] = {"max_concurrent_processing": 4, "processing_timeout_s": 60.0}
    args.update(overrides)
    core = RouterCore(EngineConfig(**args))
    core.account_up(ACCT, restarted=False, now=T0)
    return RequestDesk(core, GEN)


def msg(mid: str, customer: str = "+15550001") -> InboundMessage:
    return InboundMessage(account_id=ACCT, customer_id=customer, message_id=mid, text="hi")


def submit(*mids: str, request_id: int = 0, generation: int = GEN) -> SubmitBatch:
    messages = tuple(msg(m, customer=f"+1555000{i}") for i, m in enumerate(mids))
    return SubmitBatch(messages=messages, generation=generation, request_id=request_id)


def collect(request_id: int, wait_s: float = 5.0, generation: int = GEN) -> CollectOutcomes:
    return CollectOutcomes(
        max_items=100, wait_s=wait_s, generation=generation, request_id=request_id
    )


def event(n: int) -> AccountEvent:
    return AccountEvent(account_id=ACCT, kind="connected", at=T0 + n)


def sends(effects: list[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def only_send(effects: list[Effect]) -> Send:
    [send] = sends(effects)
    return send


def fail_at_pool(d: RequestDesk, mid: str, now: float = T0) -> None:
    """End ``mid`` with an AI failure: one outcome becomes ready."""
    d.ai_results(
        AIResults(
            results=(AIFailure(message_id=mid, reason="provider_error", detail="x"),),
            generation=GEN,
        ),
        now,
    )


# -- submissions ------------------------------------------------------------------------------


def test_a_submission_is_answered_to_its_sender_with_one_result_per_message() -> None:
    d = desk()

    answer = only_send(d.submit(submit("m1", "m2", request_id=7), GATEWAY, T0))

    assert answer.to == GATEWAY
    assert isinstance(answer.msg, SubmitResults)
    assert (answer.msg.generation, answer.msg.request_id) == (GEN, 7)
    assert [type(r) for r in answer.msg.results] == [Accepted, Accepted]
    assert d.core.in_flight == 2


def test_a_repeated_request_id_is_answered_from_the_cache_and_not_admitted_again() -> None:
    d = desk()
    first = only_send(d.submit(submit("m1", request_id=7), GATEWAY, T0))

    again = only_send(d.submit(submit("m1", request_id=7), GATEWAY, T0 + 1))

    # Applied again, m1 would come back rejected as a duplicate.
    assert again.msg == first.msg
    assert isinstance(again.msg.results[0], Accepted)
    assert d.core.counters()["accepted"] == 1
    assert "reject.duplicate" not in d.core.counters()


def test_a_new_request_id_is_applied_even_for_the_same_messages() -> None:
    d = desk()
    d.submit(submit("m1", request_id=7), GATEWAY, T0)

    answer = only_send(d.submit(submit("m1", request_id=8), GATEWAY, T0))

    [result] = answer.msg.results
    assert isinstance(result, Rejected)
    assert result.reason == "duplicate"
    assert answer.msg.request_id == 8


def test_request_id_zero_is_never_answered_from_the_cache() -> None:
    d = desk()
    d.submit(submit("m1", request_id=0), GATEWAY, T0)

    answer = only_send(d.submit(submit("m1", request_id=0), GATEWAY, T0))

    assert answer.msg.results[0].reason == "duplicate"


def test_a_submission_for_another_generation_is_answered_empty_without_admitting() -> None:
    d = desk()
    first = only_send(d.submit(submit("m0", request_id=7), GATEWAY, T0))

    effects = d.submit(submit("m1", request_id=8, generation=GEN + 1), GATEWAY, T0)

    assert only_send(effects).msg == SubmitResults(results=(), generation=GEN, request_id=8)
    assert Warn(text=f"request for router generation {GEN + 1} ignored") in effects
    assert d.core.in_flight == 1  # m0 only
    # The ignored request did not replace the cached answer.
    assert only_send(d.submit(submit("m0", request_id=7), GATEWAY, T0)).msg == first.msg


def test_a_submission_without_a_generation_is_meant_for_any_router() -> None:
    d = desk()

    answer = only_send(d.submit(submit("m1", generation=0), GATEWAY, T0))

    assert isinstance(answer.msg.results[0], Accepted)


def test_an_occupancy_alert_becomes_a_warning_sampled_under_occupancy_once() -> None:
    d = desk(max_concurrent_processing=2, occupancy_warn_ratio=0.5)

    effects = d.submit(submit("m1", "m2"), GATEWAY, T0)

    warnings = [e for e in effects if isinstance(e, Warn)]
    assert [w.sample for w in warnings] == ["occupancy"]
    assert "occupancy warning" in warnings[0].text
    assert d.core.alerts == []
    assert [e for e in d.submit(submit("m3"), GATEWAY, T0) if isinstance(e, Warn)] == []


# -- collections ------------------------------------------------------------------------------


def test_a_collection_with_an_outcome_ready_is_answered_at_once() -> None:
    d = desk()
    d.submit(submit("m1"), GATEWAY, T0)
    fail_at_pool(d, "m1")

    answer = only_send(d.collect(collect(1), GATEWAY, T0))

    assert answer.to == GATEWAY
    assert [o.message_id for o in answer.msg.outcomes] == ["m1"]
    assert (answer.msg.generation, answer.msg.request_id) == (GEN, 1)
    assert d.next_wakeup() is None


def test_an_empty_collection_waits_and_is_answered_at_the_first_outcome() -> None:
    d = desk()
    d.submit(submit("m1"), GATEWAY, T0)

    assert d.collect(collect(1, wait_s=5.0), GATEWAY, T0) == []
    assert d.next_wakeup() == T0 + 5.0
    assert d.settle(T0 + 1) == []
    fail_at_pool(d, "m1", now=T0 + 2)
    answer = only_send(d.settle(T0 + 2))

    assert answer.to == GATEWAY
    assert [o.message_id for o in answer.msg.outcomes] == ["m1"]
    assert answer.msg.request_id == 1
    assert d.next_wakeup() is None
    assert d.settle(T0 + 10) == []


def test_an_empty_collection_is_answered_empty_at_its_deadline() -> None:
    d = desk()
    d.collect(collect(1, wait_s=5.0), GATEWAY, T0)

    assert d.settle(T0 + 4.999) == []
    answer = only_send(d.settle(T0 + 5.0))

    assert answer.msg == OutcomeBatch(generation=GEN, request_id=1)
    assert answer.to == GATEWAY


def test_a_waiting_collection_is_answered_at_the_first_account_event() -> None:
    d = desk()
    d.collect(collect(1), GATEWAY, T0)

    d.event(event(1))
    answer = only_send(d.settle(T0 + 1))

    assert answer.msg.events == (event(1),)
    assert answer.msg.outcomes == ()


def test_a_collection_that_does_not_wait_is_answered_at_once_even_empty() -> None:
    d = desk()

    answer = only_send(d.collect(collect(1, wait_s=0), GATEWAY, T0))

    assert answer.msg == OutcomeBatch(generation=GEN, request_id=1)
    assert d.next_wakeup() is None


def test_a_newer_collection_ends_the_waiting_one_empty() -> None:
    d = desk()
    d.submit(submit("m1"), GATEWAY, T0)
    d.collect(collect(1), GATEWAY, T0)

    effects = d.collect(collect(2), OTHER_GATEWAY, T0 + 1)

    ended = only_send(effects)
    assert ended.to == GATEWAY
    assert ended.msg == OutcomeBatch(generation=GEN, request_id=1)
    assert d.next_wakeup() == T0 + 1 + 5.0
    fail_at_pool(d, "m1", now=T0 + 2)
    answer = only_send(d.settle(T0 + 2))
    assert answer.to == OTHER_GATEWAY
    assert answer.msg.request_id == 2
    assert [o.message_id for o in answer.msg.outcomes] == ["m1"]


def test_a_repeated_collection_id_gets_the_same_outcomes_and_takes_no_new_ones() -> None:
    d = desk()
    d.submit(submit("m1", "m2"), GATEWAY, T0)
    fail_at_pool(d, "m1")
    first = only_send(d.collect(collect(1), GATEWAY, T0))
    fail_at_pool(d, "m2")

    again = only_send(d.collect(collect(1), GATEWAY, T0 + 1))

    assert again.msg == first.msg
    assert d.core.outcomes_ready == 1  # m2 waits for the next collection
    assert [o.message_id for o in only_send(d.collect(collect(2), GATEWAY, T0)).msg.outcomes] == [
        "m2"
    ]


def test_a_collection_for_another_generation_is_answered_empty_and_takes_nothing() -> None:
    d = desk()
    d.submit(submit("m1"), GATEWAY, T0)
    fail_at_pool(d, "m1")
    d.event(event(1))

    effects = d.collect(collect(1, generation=GEN + 1), GATEWAY, T0)

    assert only_send(effects).msg == OutcomeBatch(generation=GEN, request_id=1)
    assert Warn(text=f"request for router generation {GEN + 1} ignored") in effects
    assert d.core.outcomes_ready == 1
    assert d.next_wakeup() is None  # nothing left waiting
    assert only_send(d.collect(collect(2), GATEWAY, T0)).msg.events == (event(1),)


# -- results from the pool and the accounts --------------------------------------------------


@pytest.mark.parametrize("generation", [0, GEN - 1, GEN + 1])
def test_ai_results_from_another_generation_are_dropped(generation: int) -> None:
    d = desk()
    d.submit(submit("m1"), GATEWAY, T0)
    d.core.take_outbox()
    reply = AIReply(message_id="m1", provider="echo", text="re m1")

    d.ai_results(AIResults(results=(reply,), generation=generation), T0)

    assert d.core.outstanding() == (1, {})  # still at the pool
    d.ai_results(AIResults(results=(reply,), generation=GEN), T0)
    assert d.core.outstanding() == (0, {ACCT: 1})


@pytest.mark.parametrize("generation", [0, GEN + 1])
def test_delivery_reports_from_another_generation_are_dropped(generation: int) -> None:
    d = desk()
    d.submit(submit("m1"), GATEWAY, T0)
    reply = AIReply(message_id="m1", provider="echo", text="re m1")
    d.ai_results(AIResults(results=(reply,), generation=GEN), T0)
    report = DeliveryReport(message_id="m1", ok=True)

    d.deliveries(DeliveryBatch(reports=(report,), generation=generation), T0)

    assert d.core.outcomes_ready == 0
    d.deliveries(DeliveryBatch(reports=(report,), generation=GEN), T0)
    assert d.core.outcomes_ready == 1


# -- account events ---------------------------------------------------------------------------


def test_the_router_keeps_exactly_a_thousand_account_events_without_dropping() -> None:
    d = desk()
    for n in range(MAX_EVENTS):
        d.event(event(n))

    answer = only_send(d.collect(collect(1), GATEWAY, T0))

    assert MAX_EVENTS == 1000
    assert d.events_dropped == 0
    assert answer.msg.events == tuple(event(n) for n in range(1000))


def test_the_event_past_the_bound_drops_the_oldest_and_counts_it() -> None:
    d = desk()
    for n in range(MAX_EVENTS + 1):
        d.event(event(n))

    answer = only_send(d.collect(collect(1), GATEWAY, T0))

    assert d.events_dropped == 1
    assert answer.msg.events == tuple(event(n) for n in range(1, 1001))


def test_collected_events_are_handed_over_once() -> None:
    d = desk()
    d.event(event(1))
    only_send(d.collect(collect(1), GATEWAY, T0))

    answer = only_send(d.collect(collect(2, wait_s=0), GATEWAY, T0))

    assert answer.msg.events == ()


# -- the drain --------------------------------------------------------------------------------


def test_a_drain_finishes_when_the_router_holds_nothing_more() -> None:
    d = desk()
    d.submit(submit("m1"), GATEWAY, T0)
    d.drain(SUPERVISOR, T0 + 10)

    assert d.settle(T0 + 1) == []
    assert d.next_wakeup() == T0 + 10
    refused = only_send(d.submit(submit("m2"), GATEWAY, T0 + 1)).msg.results[0]
    assert refused.reason == "shutting_down"
    fail_at_pool(d, "m1", now=T0 + 2)
    done = only_send(d.settle(T0 + 2))

    assert done.to == SUPERVISOR
    assert isinstance(done.msg, DrainDone)
    assert (done.msg.drained, done.msg.abandoned) == (1, ())
    assert [o.message_id for o in done.msg.outcomes] == ["m1"]
    assert d.next_wakeup() is None
    assert d.settle(T0 + 20) == []


def test_a_drain_at_its_deadline_abandons_what_is_left_and_says_so() -> None:
    d = desk()
    d.submit(submit("m1", "m2"), GATEWAY, T0)
    d.drain(SUPERVISOR, T0 + 10)
    fail_at_pool(d, "m1", now=T0 + 1)

    assert d.settle(T0 + 9.999) == []
    effects = d.settle(T0 + 10)

    assert Warn(text="drain deadline passed: 1 messages abandoned") in effects
    done = only_send(effects).msg
    assert done.drained == 1  # two in flight when the drain began, one abandoned
    assert done.abandoned == ("m2",)
    assert {(o.message_id, o.status) for o in done.outcomes} == {
        ("m1", "failed"),
        ("m2", "abandoned"),
    }


def test_a_drain_with_nothing_in_flight_finishes_at_the_end_of_its_turn() -> None:
    d = desk()
    d.drain(SUPERVISOR, T0 + 10)

    done = only_send(d.settle(T0))

    assert done.msg == DrainDone(drained=0, abandoned=(), outcomes=())


def test_the_desk_wakes_at_the_earliest_of_its_collection_and_its_drain() -> None:
    d = desk()
    d.submit(submit("m1"), GATEWAY, T0)
    d.drain(SUPERVISOR, T0 + 10)

    d.collect(collect(1, wait_s=3.0), GATEWAY, T0)

    assert d.next_wakeup() == T0 + 3.0


# -- effects: one batch per receiver ----------------------------------------------------------


def _request(mid: str) -> AIRequest:
    return AIRequest(
        message_id=mid, account_id=ACCT, customer_id="+15550001", text="hi", deadline=T0
    )


def _reply(mid: str, account: str = ACCT) -> OutboundReply:
    return OutboundReply(
        account_id=account, customer_id="+15550001", message_id=mid, text="re", deadline=T0
    )


# -- a flight's stages ------------------------------------------------------------------------


def test_a_flight_moves_from_the_pool_to_its_account_and_ends_at_its_delivery() -> None:
    flight = Flight(msg=msg("m1"), deadline=T0)

    stages = [flight.stage]
    for event_name in ("ai_reply", "delivery"):
        flight.move(event_name)
        stages.append(flight.stage)

    assert stages == [Stage.AI, Stage.SEND, Stage.ENDED]


def test_an_illegal_stage_move_raises_an_error_naming_the_event_and_the_stage() -> None:
    flight = Flight(msg=msg("m1"), deadline=T0, stage=Stage.SEND)

    assert not flight.expects("ai_reply")
    with pytest.raises(LifecycleError, match=r"flight: can't handle 'ai_reply' when state=send"):
        flight.move("ai_reply")
    assert flight.stage is Stage.SEND


def test_a_late_ai_reply_is_counted_by_the_core_not_raised() -> None:
    d = desk()
    d.submit(submit("m1"), GATEWAY, T0)
    reply = AIReply(message_id="m1", provider="echo", text="re m1")
    d.ai_results(AIResults(results=(reply,), generation=GEN), T0)

    d.ai_results(AIResults(results=(reply,), generation=GEN), T0)

    assert d.core.counters()["late_replies"] == 1
    assert d.core.outstanding() == (0, {ACCT: 1})

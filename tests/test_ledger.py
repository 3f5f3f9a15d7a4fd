"""Tests for the facade's ledger of accepted, unresolved messages (actors.engine.ledger)."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.engine.ledger import (
    COMPACT_SLACK,
    MAX_OUTCOME_KEYS,
    TIMEOUT_DETAIL,
    Ledger,
    LedgerError,
)
from actors.errors import EngineError
from protocols import InboundMessage, Outcome, ValidationError

T0 = 1_700_000_000.0


def msg(n: int | str) -> InboundMessage:
    return InboundMessage(
        account_id="acct-1", customer_id="+15550001", message_id=f"wamid.{n}", text="hi"
    )


def replied(n: int | str) -> Outcome:
    return Outcome(message_id=f"wamid.{n}", status="replied", reply="echo: hi")


def failed(n: int | str, reason: str = "no_provider") -> Outcome:
    return Outcome(message_id=f"wamid.{n}", status="failed", reason=reason)


def heap_bound(ledger: Ledger) -> int:
    return 2 * ledger.in_flight + COMPACT_SLACK + 1


# -- accept ---------------------------------------------------------------------------


def test_an_accepted_message_is_in_flight_with_its_deadline() -> None:
    ledger = Ledger(capacity=4)
    ledger.accept(msg(1), T0 + 120, T0)
    assert "wamid.1" in ledger
    assert ledger.in_flight == len(ledger) == 1
    assert ledger.deadline_of("wamid.1") == T0 + 120
    assert ledger.deadline_of("wamid.2") is None
    assert ledger.accepted_total == 1


def test_exactly_at_capacity_every_message_is_accepted() -> None:
    ledger = Ledger(capacity=3)
    for i in range(3):
        ledger.accept(msg(i), T0 + 120, T0)
    assert ledger.in_flight == 3


def test_one_past_capacity_is_a_bug_reported_with_the_id_and_the_capacity() -> None:
    ledger = Ledger(capacity=3)
    for i in range(3):
        ledger.accept(msg(i), T0 + 120, T0)
    with pytest.raises(LedgerError, match=r"'wamid\.3': ledger capacity \(3\) reached"):
        ledger.accept(msg(3), T0 + 120, T0)
    assert ledger.in_flight == 3
    assert ledger.accepted_total == 3


def test_a_resolution_frees_a_slot_at_capacity() -> None:
    ledger = Ledger(capacity=1)
    ledger.accept(msg(1), T0 + 120, T0)
    ledger.resolve(replied(1))
    ledger.accept(msg(2), T0 + 120, T0)
    assert ledger.unresolved() == [msg(2)]


def test_accepting_an_unresolved_id_again_is_a_bug() -> None:
    ledger = Ledger(capacity=4)
    ledger.accept(msg(1), T0 + 120, T0)
    with pytest.raises(LedgerError, match=r"'wamid\.1': it is already accepted and unresolved"):
        ledger.accept(msg(1), T0 + 130, T0 + 10)
    assert ledger.deadline_of("wamid.1") == T0 + 120


def test_the_ledger_error_is_an_engine_error() -> None:
    assert issubclass(LedgerError, EngineError)


def test_a_resolved_id_may_be_accepted_again_and_its_old_deadline_is_forgotten() -> None:
    # The router's dedupe memory is bounded, so a very old id can legitimately come back.
    ledger = Ledger(capacity=4, grace_s=0)
    ledger.accept(msg(1), T0 + 10, T0)
    assert ledger.resolve(replied(1))
    ledger.accept(msg(1), T0 + 200, T0 + 100)
    assert ledger.expire(T0 + 150) == []
    assert ledger.next_wakeup() == T0 + 200
    assert ledger.in_flight == 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "soon"])
def test_a_deadline_or_now_that_is_not_a_finite_number_is_refused(bad: object) -> None:
    ledger = Ledger(capacity=4)
    with pytest.raises(ValueError, match="deadline must be a finite number"):
        ledger.accept(msg(1), bad, T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="now must be a finite number"):
        ledger.accept(msg(1), T0, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="now must be a finite number"):
        ledger.expire(bad)  # type: ignore[arg-type]
    assert ledger.in_flight == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 0}, "capacity must be an int >= 1, got 0"),
        ({"capacity": True}, "capacity must be an int >= 1, got True"),
        ({"capacity": 5, "grace_s": -1}, "grace_s must be a finite number >= 0, got -1"),
        ({"capacity": 5, "grace_s": float("nan")}, "grace_s must be a finite number >= 0"),
    ],
)
def test_the_constructor_names_the_bad_argument(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ledger(**kwargs)  # type: ignore[arg-type]


# -- resolve --------------------------------------------------------------------------


def test_the_first_outcome_is_passed_on_and_a_second_is_dropped_as_late() -> None:
    ledger = Ledger(capacity=4)
    ledger.accept(msg(1), T0 + 120, T0)
    assert ledger.resolve(replied(1)) is True
    assert ledger.resolve(failed(1)) is False
    assert ledger.in_flight == 0
    assert ledger.resolved_total == 1
    assert ledger.late_outcomes == 1
    assert ledger.counters() == {"outcome.replied": 1}


def test_an_outcome_for_an_unknown_message_is_dropped_as_late() -> None:
    ledger = Ledger(capacity=4)
    assert ledger.resolve(replied("never")) is False
    assert ledger.late_outcomes == 1
    assert ledger.resolved_total == 0
    assert ledger.counters() == {}


def test_outcomes_are_counted_by_status_and_reason_with_dotted_keys() -> None:
    ledger = Ledger(capacity=8)
    for i in range(5):
        ledger.accept(msg(i), T0 + 120, T0)
    ledger.resolve(replied(0))
    ledger.resolve(replied(1))
    ledger.resolve(failed(2))
    ledger.resolve(failed(3, "api_error:131047"))
    ledger.resolve(Outcome(message_id="wamid.4", status="rejected", reason="unknown_account"))
    assert ledger.counters() == {
        "outcome.replied": 2,
        "outcome.failed.no_provider": 1,
        "outcome.failed.api_error:131047": 1,
        "outcome.rejected.unknown_account": 1,
    }


def test_outcome_counter_keys_are_bounded_and_new_reasons_past_the_bound_count_as_other() -> None:
    n = MAX_OUTCOME_KEYS + 10
    ledger = Ledger(capacity=n)
    for i in range(n):
        ledger.accept(msg(i), T0 + 120, T0)
        ledger.resolve(failed(i, f"api_error:{i}"))
    counters = ledger.counters()
    assert len(counters) == MAX_OUTCOME_KEYS + 1
    assert counters["outcome.failed.other"] == 10
    assert sum(counters.values()) == ledger.resolved_total == n


# -- expire ---------------------------------------------------------------------------


def test_the_backstop_times_out_a_message_exactly_at_deadline_plus_grace() -> None:
    ledger = Ledger(capacity=4, grace_s=1.0)
    ledger.accept(msg(1), T0 + 120, T0)
    assert ledger.expire(T0 + 120.5) == []
    assert ledger.expire(T0 + 121) == [
        Outcome(message_id="wamid.1", status="timeout", reason="timeout", detail=TIMEOUT_DETAIL)
    ]
    assert ledger.in_flight == 0
    assert ledger.expired_total == 1
    assert ledger.counters() == {"outcome.timeout.timeout": 1}


def test_the_routers_own_outcome_after_the_backstop_is_late() -> None:
    ledger = Ledger(capacity=4, grace_s=0)
    ledger.accept(msg(1), T0 + 1, T0)
    ledger.expire(T0 + 1)
    own = Outcome(message_id="wamid.1", status="timeout", reason="timeout")
    assert ledger.resolve(own) is False
    assert ledger.late_outcomes == 1


def test_a_message_resolved_before_its_deadline_never_expires() -> None:
    ledger = Ledger(capacity=4, grace_s=0)
    ledger.accept(msg(1), T0 + 1, T0)
    ledger.resolve(replied(1))
    assert ledger.expire(T0 + 1000) == []
    assert ledger.expired_total == 0


def test_out_of_order_deadlines_all_expire_earliest_first() -> None:
    # Two router generations: the re-admitted message keeps an older deadline.
    ledger = Ledger(capacity=8, grace_s=0)
    ledger.accept(msg("late"), T0 + 50, T0)
    ledger.accept(msg("early"), T0 + 10, T0 + 1)
    ledger.accept(msg("mid"), T0 + 30, T0 + 2)
    assert ledger.next_wakeup() == T0 + 10
    assert [o.message_id for o in ledger.expire(T0 + 30)] == ["wamid.early", "wamid.mid"]
    assert ledger.unresolved() == [msg("late")]


def test_next_wakeup_is_the_earliest_live_deadline_plus_grace_or_none() -> None:
    ledger = Ledger(capacity=4, grace_s=2.0)
    assert ledger.next_wakeup() is None
    ledger.accept(msg(1), T0 + 10, T0)
    ledger.accept(msg(2), T0 + 20, T0)
    assert ledger.next_wakeup() == T0 + 12
    ledger.resolve(replied(1))
    assert ledger.next_wakeup() == T0 + 22
    ledger.resolve(replied(2))
    assert ledger.next_wakeup() is None


# -- unresolved and abandon_all -------------------------------------------------------


def test_unresolved_lists_messages_in_acceptance_order_not_deadline_order() -> None:
    ledger = Ledger(capacity=8)
    ledger.accept(msg(1), T0 + 30, T0)
    ledger.accept(msg(2), T0 + 10, T0)
    ledger.accept(msg(3), T0 + 20, T0)
    ledger.resolve(replied(2))
    assert ledger.unresolved() == [msg(1), msg(3)]


def test_abandon_all_ends_every_unresolved_message_once_in_acceptance_order() -> None:
    ledger = Ledger(capacity=8)
    for i in range(3):
        ledger.accept(msg(i), T0 + 120 - i, T0)
    ledger.resolve(replied(1))
    abandoned = ledger.abandon_all()
    assert abandoned == [
        (msg(0), Outcome(message_id="wamid.0", status="abandoned", reason="shutdown")),
        (msg(2), Outcome(message_id="wamid.2", status="abandoned", reason="shutdown")),
    ]
    assert ledger.in_flight == 0
    assert ledger.heap_size == 0
    assert ledger.next_wakeup() is None
    assert ledger.abandoned_total == 2
    assert ledger.abandon_all() == []
    assert ledger.resolve(failed(0)) is False
    assert ledger.counters() == {"outcome.replied": 1, "outcome.abandoned.shutdown": 2}


def test_abandon_all_takes_the_reason_it_is_given() -> None:
    ledger = Ledger(capacity=2)
    ledger.accept(msg(1), T0 + 120, T0)
    [(_, outcome)] = ledger.abandon_all(reason="account_failed")
    assert outcome.reason == "account_failed"


def test_abandon_all_with_a_bad_reason_leaves_the_ledger_untouched() -> None:
    ledger = Ledger(capacity=2)
    ledger.accept(msg(1), T0 + 120, T0)
    with pytest.raises(ValidationError):
        ledger.abandon_all(reason="Not A Slug")
    assert ledger.unresolved() == [msg(1)]
    assert ledger.resolved_total == 0


# -- queries --------------------------------------------------------------------------


def test_oldest_age_is_measured_from_the_first_unresolved_acceptance() -> None:
    ledger = Ledger(capacity=4)
    assert ledger.oldest_age(T0) is None
    ledger.accept(msg(1), T0 + 120, T0)
    ledger.accept(msg(2), T0 + 125, T0 + 5)
    assert ledger.oldest_age(T0 + 7) == 7
    ledger.resolve(replied(1))
    assert ledger.oldest_age(T0 + 7) == 2


def test_peak_in_flight_and_stats_report_the_high_water_mark() -> None:
    ledger = Ledger(capacity=4, grace_s=0.5)
    for i in range(3):
        ledger.accept(msg(i), T0 + 1, T0)
    ledger.resolve(replied(0))
    ledger.resolve(replied(0))
    ledger.expire(T0 + 2)
    assert ledger.peak_in_flight == 3
    assert ledger.stats() == {
        "in_flight": 0,
        "capacity": 4,
        "peak_in_flight": 3,
        "accepted_total": 3,
        "resolved_total": 3,
        "late_outcomes": 1,
        "expired_total": 2,
        "abandoned_total": 0,
        "kept_total": 0,
        "heap_size": ledger.heap_size,
    }
    assert ledger.capacity == 4
    assert ledger.grace_s == 0.5


# -- recovery and shutdown with a store ------------------------------------------------


def test_a_parked_message_waits_for_its_account_but_its_deadline_runs() -> None:
    ledger = Ledger(capacity=4, grace_s=0.5)
    ledger.accept(msg(1), T0 + 10, T0, parked=True)
    ledger.accept(msg(2), T0 + 1, T0, parked=True)
    ledger.accept(msg(3), T0 + 10, T0)
    assert ledger.pending() == [(msg(3), T0 + 10)]  # a restarted router gets only this
    assert ledger.unresolved() == [msg(3)]
    assert ledger.unresolved(include_parked=True) == [msg(1), msg(2), msg(3)]
    assert ledger.parked == 2
    assert [o.message_id for o in ledger.expire(T0 + 2)] == ["wamid.2"]
    assert ledger.unpark("acct-1") == [(msg(1), T0 + 10)]  # with its deadline; 2 is over
    assert ledger.unpark("acct-1") == []
    assert (ledger.parked, ledger.pending()) == (0, [(msg(1), T0 + 10), (msg(3), T0 + 10)])


def test_keep_all_lets_go_of_every_message_without_an_outcome() -> None:
    ledger = Ledger(capacity=4)
    ledger.accept(msg(1), T0 + 10, T0)
    ledger.accept(msg(2), T0 + 10, T0, parked=True)
    assert ledger.keep_all() == [msg(1), msg(2)]
    assert (ledger.in_flight, ledger.kept_total, ledger.resolved_total) == (0, 2, 0)
    assert ledger.counters() == {}  # no outcome was counted
    assert ledger.expire(T0 + 100) == []
    assert ledger.unpark("acct-1") == []


# -- memory ---------------------------------------------------------------------------


def test_resolved_entries_do_not_pile_up_in_the_deadline_heap() -> None:
    ledger = Ledger(capacity=10_000)
    for i in range(10_000):
        ledger.accept(msg(i), T0 + 120, T0)
    for i in range(9_999):
        ledger.resolve(replied(i))
        assert ledger.heap_size <= heap_bound(ledger)
    assert ledger.heap_size <= 2 + COMPACT_SLACK + 1


def test_a_long_random_run_keeps_the_heap_within_twice_the_live_entries() -> None:
    rng = random.Random(20240603)
    ledger = Ledger(capacity=500, grace_s=1.0)
    now = T0
    next_id = 0
    live: list[str] = []
    passed: set[str] = set()
    for _ in range(50_000):
        now += rng.random()
        op = rng.random()
        if op < 0.45 and len(live) < ledger.capacity:
            # Deadlines mostly rise, sometimes step back (an older router generation).
            ledger.accept(msg(next_id), now + rng.uniform(-5, 120), now)
            live.append(f"wamid.{next_id}")
            next_id += 1
        elif op < 0.9 and live:
            message_id = live.pop(rng.randrange(len(live)))
            first = ledger.resolve(replied(message_id.removeprefix("wamid.")))
            assert first is (message_id not in passed)
            passed.add(message_id)
        else:
            for outcome in ledger.expire(now):
                assert outcome.message_id not in passed
                passed.add(outcome.message_id)
        assert ledger.heap_size <= heap_bound(ledger)
    assert ledger.accepted_total == ledger.resolved_total + ledger.in_flight


# -- model-based state machine --------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    """Drives the ledger with arbitrary interleavings and checks the outcome contract."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(capacity=6, grace_s=1.0)
        self.now = T0
        self.next_id = 0
        self.accepted: list[str] = []
        self.deadlines: dict[str, float] = {}
        self.passed: dict[str, int] = {}

    def live(self) -> list[str]:
        return [i for i in self.accepted if i not in self.passed]

    def pass_on(self, message_id: str) -> None:
        self.passed[message_id] = self.passed.get(message_id, 0) + 1

    @precondition(lambda self: self.ledger.in_flight < self.ledger.capacity)
    @rule(timeout=st.floats(min_value=-3, max_value=20))
    def accept(self, timeout: float) -> None:
        message = msg(self.next_id)
        self.next_id += 1
        self.ledger.accept(message, self.now + timeout, self.now)
        self.accepted.append(message.message_id)
        self.deadlines[message.message_id] = self.now + timeout

    @precondition(lambda self: self.ledger.in_flight == self.ledger.capacity)
    @rule()
    def accept_past_capacity_raises(self) -> None:
        with pytest.raises(LedgerError):
            self.ledger.accept(msg("overflow"), self.now, self.now)

    @rule(data=st.data(), ok=st.booleans())
    def outcome(self, data: st.DataObject, ok: bool) -> None:
        # Any id ever accepted (live, resolved or expired) or one never seen.
        candidates = [*self.accepted, "wamid.unknown"]
        message_id = data.draw(st.sampled_from(candidates))
        outcome = (
            Outcome(message_id=message_id, status="replied", reply="r")
            if ok
            else Outcome(message_id=message_id, status="failed", reason="provider_error")
        )
        expected = message_id in self.live()
        assert self.ledger.resolve(outcome) is expected
        if expected:
            self.pass_on(message_id)

    @rule(step=st.floats(min_value=0, max_value=10))
    def expire(self, step: float) -> None:
        self.now += step
        for outcome in self.ledger.expire(self.now):
            assert outcome.status == "timeout"
            assert outcome.message_id in self.live()
            assert self.deadlines[outcome.message_id] + 1.0 <= self.now
            assert self.ledger.deadline_of(outcome.message_id) is None
            self.pass_on(outcome.message_id)
        assert all(self.deadlines[i] + 1.0 > self.now for i in self.live())

    @invariant()
    def each_message_is_passed_on_at_most_once_and_memory_is_bounded(self) -> None:
        ledger = self.ledger
        assert all(count == 1 for count in self.passed.values())
        assert ledger.unresolved() == [msg(i.removeprefix("wamid.")) for i in self.live()]
        assert ledger.accepted_total == ledger.resolved_total + ledger.in_flight
        assert sum(ledger.counters().values()) == ledger.resolved_total
        assert ledger.heap_size <= heap_bound(ledger)
        live = self.live()
        assert [ledger.deadline_of(i) for i in live] == [self.deadlines[i] for i in live]
        expected_wakeup = min((self.deadlines[i] + 1.0 for i in live), default=None)
        assert ledger.next_wakeup() == expected_wakeup

    def teardown(self) -> None:
        for message, outcome in self.ledger.abandon_all():
            assert message.message_id == outcome.message_id
            self.pass_on(outcome.message_id)
        # Every accepted message ended in exactly one outcome.
        assert self.passed == dict.fromkeys(self.accepted, 1)


TestLedgerKeepsTheOutcomeContract = LedgerMachine.TestCase
TestLedgerKeepsTheOutcomeContract.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)

"""Tests for the per-recipient sliding-window send log (actors.cores.ratelog)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from actors.cores.ratelog import RateDecision, RecipientRateLog, sweep_budget_for

# The seed's limits (whatsapp.service.ts) and the engine's defaults.
MAX_QUEUE_RECIPIENTS = 10_000
MAX_QUEUE_SIZE_PER_RECIPIENT = 100
QUEUE_CLEANUP_INTERVAL_S = 300.0
WINDOW_S = 60.0
ALLOWANCE = 10


def seed_log(**overrides: float) -> RecipientRateLog:
    kwargs: dict[str, float] = {
        "max_recipients": MAX_QUEUE_RECIPIENTS,
        "max_entries_per_recipient": MAX_QUEUE_SIZE_PER_RECIPIENT,
        "window_s": WINDOW_S,
        "allowance": ALLOWANCE,
    }
    kwargs.update(overrides)
    return RecipientRateLog(**kwargs)  # type: ignore[arg-type]


def fill_seed_recipients(log: RecipientRateLog) -> None:
    for i in range(MAX_QUEUE_RECIPIENTS):
        log.record(f"r{i}", 0.0)


# -- bounds at the seed's numbers ---------------------------------------------------


def test_exactly_10_000_recipients_fit_without_eviction() -> None:
    log = seed_log()
    fill_seed_recipients(log)
    assert log.recipients == len(log) == MAX_QUEUE_RECIPIENTS
    assert log.peak_recipients == MAX_QUEUE_RECIPIENTS
    assert log.evictions == 0


def test_the_10_001st_recipient_evicts_the_least_recently_recorded_one() -> None:
    log = seed_log()
    fill_seed_recipients(log)
    log.record("newcomer", 1.0)
    assert log.evictions == 1
    assert log.expired == 0
    assert len(log) == MAX_QUEUE_RECIPIENTS
    assert log.peak_recipients == MAX_QUEUE_RECIPIENTS
    assert log.entries_for("r0") == 0
    assert log.entries_for("r1") == 1
    assert log.entries_for("newcomer") == 1


def test_a_newcomer_at_the_bound_replaces_a_fully_expired_recipient_without_an_eviction() -> None:
    log = seed_log()
    fill_seed_recipients(log)
    log.record("newcomer", WINDOW_S)  # r0's only entry, at 0.0, expires exactly now
    assert log.evictions == 0
    assert log.expired == 1
    assert log.swept == 0
    assert len(log) == MAX_QUEUE_RECIPIENTS
    assert log.entries_for("r0") == 0
    assert log.entries_for("r1") == 1  # only the one recipient needed is removed
    assert log.entries_for("newcomer") == 1


def test_a_newcomer_an_instant_before_the_window_ends_evicts_a_live_recipient() -> None:
    log = seed_log()
    fill_seed_recipients(log)
    log.record("newcomer", math.nextafter(WINDOW_S, 0.0))
    assert log.evictions == 1
    assert log.expired == 0
    assert log.entries_for("r0") == 0


def test_a_recipient_with_any_live_entry_counts_as_an_eviction() -> None:
    log = seed_log(max_recipients=1)
    log.record("a", 0.0)
    log.record("a", 30.0)
    log.record("b", 70.0)  # a's entry at 0.0 has expired, the one at 30.0 has not
    assert (log.evictions, log.expired) == (1, 0)


def test_try_acquire_for_a_newcomer_also_replaces_an_expired_recipient() -> None:
    log = seed_log(max_recipients=1)
    assert log.try_acquire("a", 0.0).allowed
    assert log.try_acquire("b", WINDOW_S).allowed
    assert (log.evictions, log.expired) == (0, 1)
    assert log.entries_for("a") == 0


def test_recording_a_recipient_again_saves_it_from_eviction() -> None:
    log = seed_log()
    fill_seed_recipients(log)
    log.record("r0", 1.0)
    log.record("newcomer", 1.0)
    assert log.entries_for("r0") == 2
    assert log.entries_for("r1") == 0


def test_checking_a_recipient_does_not_save_it_from_eviction() -> None:
    log = seed_log()
    fill_seed_recipients(log)
    assert log.check("r0", 1.0).allowed
    log.record("newcomer", 1.0)
    assert log.entries_for("r0") == 0


def test_an_evicted_recipient_starts_with_a_fresh_window() -> None:
    log = seed_log(max_recipients=1, allowance=1)
    assert log.try_acquire("a", 0.0).allowed
    log.record("b", 0.0)
    assert log.try_acquire("a", 0.0).allowed
    assert log.evictions == 2


def test_a_recipient_holds_100_entries_and_the_101st_drops_the_oldest() -> None:
    log = seed_log(allowance=MAX_QUEUE_SIZE_PER_RECIPIENT)
    for i in range(MAX_QUEUE_SIZE_PER_RECIPIENT):
        log.record("r", i * 0.5)
    assert log.entries_for("r") == MAX_QUEUE_SIZE_PER_RECIPIENT
    assert log.dropped_entries == 0

    log.record("r", 50.0)
    assert log.entries_for("r") == MAX_QUEUE_SIZE_PER_RECIPIENT
    assert log.dropped_entries == 1
    # The entry at 0.0 is gone, so the oldest now blocking the window is the one at 0.5.
    assert log.check("r", 50.0) == RateDecision(allowed=False, retry_at=0.5 + WINDOW_S)


def test_expired_entries_are_pruned_before_the_cap_drops_anything() -> None:
    log = seed_log(max_entries_per_recipient=2, allowance=2)
    log.record("r", 0.0)
    log.record("r", 1.0)
    log.record("r", 60.0)  # the entry at 0.0 expired: pruned, not dropped
    assert log.dropped_entries == 0
    assert log.entries_for("r") == 2


# -- allowance and retry_at -----------------------------------------------------------


def test_ten_sends_a_minute_are_allowed_and_the_eleventh_waits_for_the_first_to_expire() -> None:
    log = seed_log()
    for t in range(ALLOWANCE):
        assert log.try_acquire("r", float(t)) == RateDecision(allowed=True, retry_at=None)
    denied = log.try_acquire("r", 10.0)
    assert denied == RateDecision(allowed=False, retry_at=60.0)
    assert log.entries_for("r") == ALLOWANCE  # a denied try_acquire records nothing


def test_the_window_boundary_is_exclusive_of_the_entry_that_opened_it() -> None:
    log = seed_log()
    for t in range(ALLOWANCE):
        log.record("r", float(t))
    assert log.check("r", math.nextafter(60.0, 0.0)) == RateDecision(allowed=False, retry_at=60.0)
    # An entry recorded at t is expired once now >= t + window_s.
    assert log.check("r", 60.0).allowed
    assert log.entries_for("r") == ALLOWANCE - 1


def test_retry_at_counts_back_allowance_entries_when_more_were_recorded() -> None:
    log = seed_log()
    for t in range(12):
        log.record("r", float(t))
    # 12 live entries, 10 allowed: three must expire, the third is the one at t=2.
    assert log.check("r", 12.0) == RateDecision(allowed=False, retry_at=62.0)


def test_sends_at_the_same_instant_are_counted_one_by_one() -> None:
    log = seed_log()
    decisions = [log.try_acquire("r", 5.0) for _ in range(ALLOWANCE + 1)]
    assert all(d.allowed for d in decisions[:ALLOWANCE])
    assert decisions[-1] == RateDecision(allowed=False, retry_at=65.0)
    assert log.try_acquire("r", 65.0).allowed


def test_a_released_send_frees_its_place_in_the_window_at_once() -> None:
    log = seed_log()
    for t in range(ALLOWANCE):
        log.record("r", float(t))
    assert not log.check("r", 20.0).allowed

    assert log.release("r", 7.0)  # the send recorded at t=7 was refused

    assert log.try_acquire("r", 20.0).allowed
    assert log.released == 1
    assert log.entries_for("r") == ALLOWANCE


def test_release_removes_the_entry_recorded_then_not_a_later_one() -> None:
    log = seed_log()
    for t in (1.0, 2.0, 3.0):
        log.record("r", t)
    log.release("r", 2.5)  # between entries: the newest one at or before it goes
    assert log.entries_for("r") == 2
    log.check("r", 62.5)  # prunes what expired by then: t=1 and t=2, not t=3
    assert log.entries_for("r") == 1


def test_releasing_the_last_entry_forgets_the_recipient_and_an_unknown_one_is_a_no_op() -> None:
    log = seed_log()
    log.record("r", 1.0)
    assert log.release("r", 1.0)
    assert len(log) == 0
    assert not log.release("r", 1.0)
    assert not log.release("nobody", 1.0)
    log.record("s", 5.0)
    assert not log.release("s", 4.0)  # nothing recorded at or before 4.0
    assert log.released == 1


def test_check_records_nothing() -> None:
    log = seed_log(allowance=1)
    for _ in range(5):
        assert log.check("r", 0.0).allowed
    assert log.entries_for("r") == 0
    assert len(log) == 0


def test_a_recipient_whose_entries_all_expired_is_forgotten_on_check() -> None:
    log = seed_log()
    log.record("r", 0.0)
    assert log.check("r", 60.0).allowed
    assert len(log) == 0
    assert log.peak_recipients == 1


def test_a_clock_stepping_back_is_treated_as_the_latest_time_seen() -> None:
    log = seed_log(allowance=1)
    assert log.try_acquire("r", 100.0).allowed
    assert log.try_acquire("r", 50.0) == RateDecision(allowed=False, retry_at=160.0)
    log.record("s", 10.0)  # stored as 100.0, so the LRU order stays newest-entry order
    assert log.sweep(159.0, budget=10) == 0
    assert log.sweep(160.0, budget=10) == 2


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.sampled_from([0.0, 0.25, 1.0, 3.0, 7.5]), min_size=1, max_size=15),
    allowance=st.integers(1, 5),
    window_s=st.sampled_from([1.0, 6.0, 10.0]),
)
def test_retry_at_is_the_earliest_time_a_send_is_allowed(
    gaps: list[float], allowance: int, window_s: float
) -> None:
    log = RecipientRateLog(
        max_recipients=1, max_entries_per_recipient=5, window_s=window_s, allowance=allowance
    )
    now = 0.0
    for gap in gaps:
        now += gap
        log.record("r", now)
    decision = log.check("r", now)
    if decision.allowed:
        return
    assert decision.retry_at is not None
    assert decision.retry_at > now
    assert not log.check("r", math.nextafter(decision.retry_at, -math.inf)).allowed
    assert log.check("r", decision.retry_at).allowed


def test_a_decision_carries_retry_at_exactly_when_denied() -> None:
    with pytest.raises(ValueError, match="retry_at must be None exactly when allowed"):
        RateDecision(allowed=True, retry_at=1.0)
    with pytest.raises(ValueError, match="retry_at must be None exactly when allowed"):
        RateDecision(allowed=False)


# -- sweep ------------------------------------------------------------------------------


def test_sweep_removes_fully_expired_recipients_within_budget_until_all_are_reached() -> None:
    log = seed_log()
    for t in range(100):
        log.record(f"r{t}", float(t))
    # At now=100 the recipients recorded at t <= 40 are fully expired: 41 of them.
    budget = sweep_budget_for(MAX_QUEUE_RECIPIENTS, QUEUE_CLEANUP_INTERVAL_S, 1.0)
    assert [log.sweep(100.0, budget) for _ in range(3)] == [34, 7, 0]
    assert log.swept == 41
    assert len(log) == 59
    assert log.entries_for("r40") == 0
    assert log.entries_for("r41") == 1
    assert log.peak_recipients == 100


def test_sweep_never_removes_more_than_its_budget() -> None:
    log = seed_log()
    for i in range(10):
        log.record(f"r{i}", 0.0)
    assert log.sweep(1_000.0, budget=3) == 3
    assert log.sweep(1_000.0, budget=0) == 0
    assert len(log) == 7


def test_sweep_keeps_a_recipient_with_any_live_entry() -> None:
    log = seed_log()
    log.record("old", 0.0)
    log.record("mixed", 0.0)
    log.record("mixed", 50.0)
    assert log.sweep(70.0, budget=10) == 1
    assert log.entries_for("old") == 0
    assert log.entries_for("mixed") == 2  # its stale entry waits for the next access


def test_sweep_order_follows_the_last_record_not_the_first() -> None:
    log = seed_log()
    log.record("a", 0.0)
    log.record("b", 30.0)
    log.record("a", 31.0)  # a moves behind b: the order follows the newest entry
    assert log.sweep(90.5, budget=10) == 1
    assert log.entries_for("b") == 0
    assert log.entries_for("a") == 2


@pytest.mark.parametrize("budget", [-1, True, 2.0])
def test_sweep_rejects_a_budget_that_is_not_a_non_negative_int(budget: object) -> None:
    with pytest.raises(ValueError, match=r"budget must be an int >= 0, got"):
        seed_log().sweep(0.0, budget)  # type: ignore[arg-type]


def test_the_sweep_budget_for_the_seed_covers_10_000_recipients_in_300_seconds() -> None:
    budget = sweep_budget_for(MAX_QUEUE_RECIPIENTS, QUEUE_CLEANUP_INTERVAL_S, 1.0)
    assert budget == 34
    assert budget * QUEUE_CLEANUP_INTERVAL_S >= MAX_QUEUE_RECIPIENTS


def test_the_sweep_budget_is_at_least_one() -> None:
    assert sweep_budget_for(1, 300.0, 1.0) == 1
    assert sweep_budget_for(10, 300.0, 0.001) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 300.0, 1.0), "max_recipients must be an int >= 1, got 0"),
        ((10, 0.0, 1.0), "cleanup_interval_s must be a finite number > 0, got 0.0"),
        ((10, 300.0, math.inf), "tick_s must be a finite number > 0, got inf"),
    ],
)
def test_sweep_budget_for_rejects_bad_arguments(
    args: tuple[int, float, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sweep_budget_for(*args)


# -- constructor validation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"max_recipients": 0}, "max_recipients must be an int >= 1, got 0"),
        ({"max_recipients": True}, "max_recipients must be an int >= 1, got True"),
        ({"max_recipients": 10.0}, r"max_recipients must be an int >= 1, got 10\.0"),
        (
            {"max_entries_per_recipient": 0},
            "max_entries_per_recipient must be an int >= 1, got 0",
        ),
        ({"window_s": 0}, "window_s must be a finite number > 0, got 0"),
        ({"window_s": -1.0}, "window_s must be a finite number > 0, got -1.0"),
        ({"window_s": math.nan}, "window_s must be a finite number > 0, got nan"),
        ({"window_s": False}, "window_s must be a finite number > 0, got False"),
        ({"allowance": 0}, "allowance must be an int >= 1, got 0"),
        (
            {"allowance": 101},
            r"allowance must be <= max_entries_per_recipient \(100\), got 101",
        ),
    ],
)
def test_the_constructor_names_the_bad_argument_and_the_rule(
    override: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        seed_log(**override)


def test_the_configuration_is_readable() -> None:
    log = seed_log()
    assert (
        log.max_recipients,
        log.max_entries_per_recipient,
        log.window_s,
        log.allowance,
    ) == (MAX_QUEUE_RECIPIENTS, MAX_QUEUE_SIZE_PER_RECIPIENT, WINDOW_S, ALLOWANCE)


# -- model-based state machine --------------------------------------------------------

NAMES = ["a", "b", "c", "d"]  # one more than the largest max_recipients drawn


class NaiveRateLog:
    """The reference: plain lists and a record counter, scanned in full on every call."""

    def __init__(self, max_recipients: int, max_entries: int, window_s: float, allowance: int):
        self.max_recipients = max_recipients
        self.max_entries = max_entries
        self.window_s = window_s
        self.allowance = allowance
        self.entries: dict[str, list[float]] = {}
        self.last_recorded: dict[str, int] = {}  # recipient -> sequence number of last record
        self.sequence = 0
        self.evictions = 0
        self.expired_recipients = 0
        self.dropped = 0
        self.swept = 0
        self.peak = 0

    def expired(self, t: float, now: float) -> bool:
        return now >= t + self.window_s

    def forget(self, recipient: str) -> None:
        del self.entries[recipient]
        del self.last_recorded[recipient]

    def live(self, recipient: str, now: float) -> list[float]:
        kept = [t for t in self.entries.get(recipient, []) if not self.expired(t, now)]
        if recipient in self.entries:
            if kept:
                self.entries[recipient] = kept
            else:
                self.forget(recipient)
        return kept

    def decide(self, live: list[float]) -> RateDecision:
        if len(live) < self.allowance:
            return RateDecision(allowed=True)
        ordered = sorted(live)
        return RateDecision(
            allowed=False, retry_at=ordered[len(ordered) - self.allowance] + self.window_s
        )

    def least_recently_recorded(self) -> str:
        return min(self.last_recorded, key=self.last_recorded.__getitem__)

    def append(self, recipient: str, now: float) -> str | None:
        victim = None
        if recipient not in self.entries and len(self.entries) >= self.max_recipients:
            victim = self.least_recently_recorded()
            # Only a victim with a live entry takes rate state with it.
            if all(self.expired(t, now) for t in self.entries[victim]):
                self.expired_recipients += 1
            else:
                self.evictions += 1
            self.forget(victim)
        entries = self.entries.setdefault(recipient, [])
        if len(entries) >= self.max_entries:
            entries.pop(0)
            self.dropped += 1
        entries.append(now)
        self.sequence += 1
        self.last_recorded[recipient] = self.sequence
        self.peak = max(self.peak, len(self.entries))
        return victim

    def sweep(self, now: float, budget: int) -> int:
        by_age = sorted(self.last_recorded, key=self.last_recorded.__getitem__)
        removed = 0
        for recipient in by_age[:budget]:
            if not all(self.expired(t, now) for t in self.entries[recipient]):
                break
            self.forget(recipient)
            removed += 1
        self.swept += removed
        return removed


@st.composite
def configs(draw: st.DrawFn) -> tuple[int, int, float, int]:
    max_entries = draw(st.integers(1, 4))
    return (
        draw(st.integers(1, 3)),
        max_entries,
        draw(st.sampled_from([1.0, 2.5, 6.0])),
        draw(st.integers(1, max_entries)),
    )


class RateLogMachine(RuleBasedStateMachine):
    """Drives the log and the naive model with the same calls on a non-decreasing clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.log: RecipientRateLog | None = None
        self.model: NaiveRateLog | None = None

    @initialize(config=configs())
    def build(self, config: tuple[int, int, float, int]) -> None:
        max_recipients, max_entries, window_s, allowance = config
        self.log = RecipientRateLog(
            max_recipients=max_recipients,
            max_entries_per_recipient=max_entries,
            window_s=window_s,
            allowance=allowance,
        )
        self.model = NaiveRateLog(max_recipients, max_entries, window_s, allowance)

    def pair(self) -> tuple[RecipientRateLog, NaiveRateLog]:
        assert self.log is not None
        assert self.model is not None
        return self.log, self.model

    # Multiples of 0.25 are exact in binary, so times land exactly on window boundaries.
    @rule(dt=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5, 6.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(recipient=st.sampled_from(NAMES))
    def check(self, recipient: str) -> None:
        log, model = self.pair()
        assert log.check(recipient, self.now) == model.decide(model.live(recipient, self.now))

    @rule(recipient=st.sampled_from(NAMES))
    def record(self, recipient: str) -> None:
        log, model = self.pair()
        model.live(recipient, self.now)
        victim = model.append(recipient, self.now)
        log.record(recipient, self.now)
        if victim is not None:
            assert log.entries_for(victim) == 0

    @rule(recipient=st.sampled_from(NAMES))
    def try_acquire(self, recipient: str) -> None:
        log, model = self.pair()
        expected = model.decide(model.live(recipient, self.now))
        if expected.allowed:
            model.append(recipient, self.now)
        assert log.try_acquire(recipient, self.now) == expected

    @rule(budget=st.integers(0, 5))
    def sweep(self, budget: int) -> None:
        log, model = self.pair()
        assert log.sweep(self.now, budget) == model.sweep(self.now, budget)

    @precondition(lambda self: self.log is not None)
    @rule()
    def a_full_sweep_leaves_no_fully_expired_recipient(self) -> None:
        log, model = self.pair()
        everyone = len(log)
        assert log.sweep(self.now, everyone) == model.sweep(self.now, everyone)
        for entries in model.entries.values():
            assert not all(model.expired(t, self.now) for t in entries)

    @invariant()
    def matches_the_model_and_stays_bounded(self) -> None:
        if self.log is None:
            return
        log, model = self.pair()
        assert len(log) == log.recipients == len(model.entries) <= log.max_recipients
        for name in NAMES:
            stored = log.entries_for(name)
            assert stored == len(model.entries.get(name, []))
            assert stored <= log.max_entries_per_recipient
        assert log.peak_recipients == model.peak <= log.max_recipients
        assert log.evictions == model.evictions
        assert log.expired == model.expired_recipients
        assert log.dropped_entries == model.dropped
        assert log.swept == model.swept


TestRateLogAgainstANaiveModel = RateLogMachine.TestCase
TestRateLogAgainstANaiveModel.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None
)

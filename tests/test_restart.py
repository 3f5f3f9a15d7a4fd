"""Tests for the supervision policy (backoff + restart intensity), driven by a fake clock."""

from __future__ import annotations

import random
import re
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.cores.restart import GiveUp, Restart, RestartPolicy

T0 = 1_700_000_000.0


def policy(**kwargs: object) -> RestartPolicy:
    defaults: dict[str, object] = {"jitter": 0.0, "rng": random.Random(0)}
    defaults.update(kwargs)
    return RestartPolicy(**defaults)  # type: ignore[arg-type]


def restart(decision: Restart | GiveUp) -> Restart:
    assert isinstance(decision, Restart), decision
    return decision


# -- backoff -------------------------------------------------------------------------------


def test_the_backoff_doubles_from_the_minimum_and_is_capped_at_the_maximum() -> None:
    p = policy(max_restarts=100, period_s=1.0)
    delays = []
    for i in range(14):
        now = T0 + 10.0 * i  # wider than the period, never stable: pure backoff
        delays.append(restart(p.failed(now)).delay_s)
        p.started(now + 0.01)
    expected = [min(30.0, 0.1 * 2**k) for k in range(14)]
    assert delays == pytest.approx(expected)
    assert delays[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert delays[-1] == 30.0


def test_the_attempt_counts_the_consecutive_failures() -> None:
    p = policy(max_restarts=100, period_s=1.0)
    attempts = [restart(p.failed(T0 + 5.0 * i)).attempt for i in range(4)]
    assert attempts == [1, 2, 3, 4]
    assert p.attempt == 4
    assert p.restarts == 4


def test_a_very_long_streak_stays_at_the_cap_without_overflowing() -> None:
    p = policy(max_restarts=10, period_s=1.0)
    assert p.delay_for(5_000) == 30.0
    assert p.delay_for(10**9, 0.999) == 30.0


def test_jitter_stays_within_the_random_factor_with_a_seeded_rng() -> None:
    p = RestartPolicy(jitter=0.2, max_restarts=1000, period_s=1.0, rng=random.Random(42))
    for i in range(200):
        d = restart(p.failed(T0 + 2.0 * i))
        base = min(30.0, 0.1 * 2.0 ** (d.attempt - 1))
        assert base <= d.delay_s < base * 1.2


def test_the_same_seed_gives_the_same_delays() -> None:
    def run(seed: int) -> list[float]:
        p = RestartPolicy(max_restarts=100, period_s=1.0, rng=random.Random(seed))
        return [restart(p.failed(T0 + 2.0 * i)).delay_s for i in range(10)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_jitter_multiplies_the_delay_by_one_plus_jitter_times_the_draw() -> None:
    p = RestartPolicy(min_backoff_s=1.0, jitter=0.5, rng=random.Random(3))
    expected_u = random.Random(3).random()
    assert restart(p.failed(T0)).delay_s == pytest.approx(1.0 * (1 + 0.5 * expected_u))


# -- stability -----------------------------------------------------------------------------


def test_a_child_that_ran_for_reset_after_s_starts_a_new_streak() -> None:
    p = policy(max_restarts=100, period_s=1.0, reset_after_s=30.0)
    p.started(T0)
    for i in range(3):
        restart(p.failed(T0 + 1 + i))
        p.started(T0 + 1.5 + i)
    assert p.attempt == 3
    p.started(T0 + 10.0)
    d = restart(p.failed(T0 + 10.0 + 30.0))  # exactly reset_after_s: stable
    assert d == Restart(0.1, 1)


def test_a_child_that_failed_just_before_reset_after_s_keeps_its_streak() -> None:
    p = policy(max_restarts=100, period_s=1.0, reset_after_s=30.0)
    p.started(T0)
    restart(p.failed(T0 + 1.0))
    p.started(T0 + 2.0)
    assert restart(p.failed(T0 + 2.0 + 29.999)) == Restart(0.2, 2)


def test_a_failure_without_a_restart_in_between_is_never_stable() -> None:
    p = policy(max_restarts=100, period_s=1.0, reset_after_s=30.0)
    p.started(T0)
    restart(p.failed(T0 + 1.0))
    # The child was never started again, so it cannot have been running stably.
    assert restart(p.failed(T0 + 100.0)).attempt == 2


# -- intensity -----------------------------------------------------------------------------


def test_the_sixth_failure_within_sixty_seconds_gives_up_with_the_seed_defaults() -> None:
    p = RestartPolicy(rng=random.Random(0))
    for i in range(5):
        restart(p.failed(T0 + 10.0 * i))  # 5 restarts in 40 s: exactly at the limit
        p.started(T0 + 10.0 * i + 1)
    decision = p.failed(T0 + 59.0)  # one past it
    assert isinstance(decision, GiveUp)
    assert "5 restarts within 60 s" in decision.reason
    assert p.given_up
    assert p.restarts == 5


def test_failures_spread_wider_than_the_period_never_give_up() -> None:
    p = RestartPolicy(rng=random.Random(0))
    for i in range(500):
        now = T0 + 12.0 * i  # 5 per 60 s window at most: the oldest leaves at exactly P
        restart(p.failed(now))
        p.started(now + 1.0)
    assert not p.given_up
    assert p.restarts == 500
    assert p.recent_restarts <= 6


def test_once_given_up_every_later_failure_gives_up_too() -> None:
    p = policy(max_restarts=1, period_s=60.0)
    restart(p.failed(T0))
    first = p.failed(T0 + 1.0)
    assert isinstance(first, GiveUp)
    assert p.failed(T0 + 10_000.0) == first
    with pytest.raises(RuntimeError, match="given up"):
        p.started(T0 + 10_001.0)


def test_zero_max_restarts_gives_up_on_the_first_failure() -> None:
    p = policy(max_restarts=0)
    assert isinstance(p.failed(T0), GiveUp)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_backoff_s": -0.1}, "min_backoff_s must be a finite number >= 0, got -0.1"),
        ({"min_backoff_s": float("nan")}, "min_backoff_s must be a finite number >= 0, got nan"),
        ({"max_backoff_s": 0.05}, "max_backoff_s must be a finite number >= 0.1, got 0.05"),
        ({"factor": 0.5}, "factor must be a finite number >= 1, got 0.5"),
        ({"jitter": 1.5}, "jitter must be a finite number >= 0 and <= 1, got 1.5"),
        ({"jitter": -0.1}, "jitter must be a finite number >= 0 and <= 1, got -0.1"),
        ({"max_restarts": -1}, "max_restarts must be an int >= 0, got -1"),
        ({"max_restarts": True}, "max_restarts must be an int >= 0, got True"),
        ({"max_restarts": 2.0}, "max_restarts must be an int >= 0, got 2.0"),
        ({"period_s": 0.0}, "period_s must be a finite number > 0, got 0.0"),
        ({"period_s": float("inf")}, "period_s must be a finite number > 0, got inf"),
        ({"reset_after_s": -1.0}, "reset_after_s must be a finite number >= 0, got -1.0"),
        ({"rng": 42}, "rng must be a random.Random or None, got 42"),
    ],
)
def test_bad_constructor_arguments_are_rejected_by_name_rule_and_value(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


# -- properties ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    min_b=st.floats(0.0, 10.0),
    span=st.floats(0.0, 100.0),
    factor=st.floats(1.0, 10.0),
    jitter=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32),
    gaps=st.lists(st.floats(0.0, 100.0), min_size=1, max_size=60),
)
def test_every_delay_lies_between_min_and_max_times_one_plus_jitter(
    min_b: float,
    span: float,
    factor: float,
    jitter: float,
    seed: int,
    gaps: list[float],
) -> None:
    p = RestartPolicy(
        min_backoff_s=min_b,
        max_backoff_s=min_b + span,
        factor=factor,
        jitter=jitter,
        max_restarts=1000,
        period_s=1.0,
        rng=random.Random(seed),
    )
    now = T0
    for gap in gaps:
        now += gap
        d = restart(p.failed(now))
        assert min_b <= d.delay_s <= (min_b + span) * (1 + jitter)


class RestartMachine(RuleBasedStateMachine):
    """Random failures and restarts against a reference model of backoff and intensity."""

    R = 3
    P = 10.0
    STABLE = 4.0

    def __init__(self) -> None:
        super().__init__()
        self.policy = RestartPolicy(
            jitter=0.2,
            max_restarts=self.R,
            period_s=self.P,
            reset_after_s=self.STABLE,
            rng=random.Random(1),
        )
        self.now = T0
        self.times: list[float] = []  # every restart decided, never trimmed
        self.gave_up = False
        self.down = False
        self.last_start: float | None = None
        self.attempt = 0

    # The exact period and stability lengths are in the mix so the bounds get hit exactly.
    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.5, 4.0, 10.0]) | st.floats(0.0, 15.0))
    def advance(self, dt: float) -> None:
        self.now += dt

    @precondition(lambda self: self.down and not self.gave_up)
    @rule()
    def restart_child(self) -> None:
        self.policy.started(self.now)
        self.last_start = self.now
        self.down = False

    @rule()
    def fail(self) -> None:
        recent = [t for t in self.times if self.now - t < self.P]
        decision = self.policy.failed(self.now)
        if self.gave_up or len(recent) + 1 > self.R:
            assert isinstance(decision, GiveUp)
            assert f"{self.R} restarts within 10 s" in decision.reason
            self.gave_up = True
            return
        if self.last_start is not None and self.now - self.last_start >= self.STABLE:
            self.attempt = 0
        self.attempt += 1
        base = min(30.0, 0.1 * 2.0 ** (self.attempt - 1))
        assert isinstance(decision, Restart)
        assert decision.attempt == self.attempt
        assert base <= decision.delay_s <= base * 1.2
        self.times.append(self.now)
        self.last_start = None
        self.down = True

    @invariant()
    def counters_match_the_model(self) -> None:
        assert self.policy.restarts == len(self.times)
        assert self.policy.given_up == self.gave_up
        assert self.policy.attempt == self.attempt
        assert self.policy.recent_restarts <= self.R + 1


RestartMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestRestartMachine = RestartMachine.TestCase


def test_the_history_deque_is_bounded_by_max_restarts_plus_one() -> None:
    p = RestartPolicy(max_restarts=5, period_s=60.0)
    history = p._history
    assert isinstance(history, deque)
    assert history.maxlen == 6


def test_a_zero_minimum_backoff_restarts_at_once() -> None:
    p = RestartPolicy(min_backoff_s=0.0, max_restarts=10, period_s=1.0, rng=random.Random(0))
    assert [restart(p.failed(T0 + 2.0 * i)).delay_s for i in range(3)] == [0.0, 0.0, 0.0]

"""Tests for the AI provider pool policy, driven by a fake epoch clock."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors.cores.selector import (
    Chosen,
    LoadResult,
    ProviderSelector,
    ProviderState,
    Unavailable,
)

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
MIDNIGHT = 1_700_006_400.0  # the next UTC midnight after T0
DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    priority: int = 0
    daily_limit: int | None = None
    active: bool = True


def selector(max_providers: int = 50, **kwargs: int | float) -> ProviderSelector[Spec]:
    return ProviderSelector(max_providers=max_providers, cooldown_s=5.0, **kwargs)  # type: ignore[arg-type]


def chosen(choice: Chosen[Spec] | Unavailable) -> str:
    assert isinstance(choice, Chosen), choice
    return choice.name


def test_the_fixture_midnight_is_the_next_utc_day_boundary() -> None:
    assert MIDNIGHT % DAY == 0
    assert T0 < MIDNIGHT < T0 + DAY


# -- loading -------------------------------------------------------------------------------


def test_sixty_active_providers_load_the_fifty_best_and_leave_out_the_ten_lowest() -> None:
    s = selector()
    specs = [Spec(f"p{i:02d}", priority=i) for i in range(60)]
    result = s.load(specs)
    assert len(result.loaded) == 50
    assert len(s) == 50
    assert set(result.left_out) == {f"p{i:02d}" for i in range(10)}
    assert result.loaded[0] == "p59"
    assert result.loaded[-1] == "p10"


def test_inactive_providers_are_never_loaded_nor_reported_as_left_out() -> None:
    s = selector()
    specs = [Spec("off", priority=100, active=False)] + [Spec(f"p{i}", i) for i in range(3)]
    result = s.load(specs)
    assert result == LoadResult(loaded=("p2", "p1", "p0"), left_out=())
    assert "off" not in s
    assert s.add(Spec("off2", priority=100, active=False)) == LoadResult((), ("off2",))


def test_exactly_max_providers_all_load_and_one_more_is_left_out() -> None:
    s = selector(max_providers=50)
    assert s.load([Spec(f"p{i:02d}", i) for i in range(50)]).left_out == ()
    result = s.load([Spec(f"p{i:02d}", i) for i in range(51)])
    assert result.left_out == ("p00",)
    assert len(s) == 50


def test_equal_priorities_are_ranked_by_name() -> None:
    s = selector(max_providers=2)
    assert s.load([Spec("c"), Spec("a"), Spec("b")]) == LoadResult(("a", "b"), ("c",))


def test_a_duplicate_name_is_rejected_by_name_and_the_pool_is_unchanged() -> None:
    s = selector()
    s.load([Spec("a", 1)])
    with pytest.raises(ValueError, match="'dup'"):
        s.load([Spec("dup", 1), Spec("b", 2), Spec("dup", 3, active=False)])
    assert s.names == ("a",)


def test_a_reload_keeps_usage_and_cooldown_of_providers_that_stay() -> None:
    s = selector()
    s.load([Spec("a", 2, daily_limit=10), Spec("b", 1)])
    s.record_call("a", T0)
    s.record_failure("a", T0)
    s.load([Spec("a", 5, daily_limit=10), Spec("c", 3)])
    (a, c) = s.snapshot()
    assert (a.name, a.priority, a.usage_today, a.cooldown_until) == ("a", 5, 1, T0 + 5.0)
    assert (c.name, c.calls) == ("c", 0)
    assert "b" not in s


def test_adding_at_capacity_displaces_the_lowest_only_when_the_new_one_ranks_higher() -> None:
    s = selector(max_providers=2)
    s.load([Spec("a", 5), Spec("b", 3)])
    assert s.add(Spec("low", 1)) == LoadResult((), ("low",))
    assert s.add(Spec("b2", 3)) == LoadResult((), ("b2",))  # ties lose to the name order
    assert s.add(Spec("high", 9)) == LoadResult(("high",), ("b",))
    assert s.names == ("high", "a")


def test_adding_below_capacity_inserts_in_rank_order() -> None:
    s = selector(max_providers=3)
    s.load([Spec("a", 5)])
    assert s.add(Spec("b", 7)) == LoadResult(("b",), ())
    assert s.names == ("b", "a")
    with pytest.raises(ValueError, match="'a'"):
        s.add(Spec("a", 1))


def test_removing_forgets_the_provider() -> None:
    s = selector()
    s.load([Spec("a", 2), Spec("b", 1)])
    assert s.remove("a") is True
    assert s.remove("a") is False
    assert chosen(s.choose(T0)) == "b"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (Spec(""), "provider name must be a non-empty str, got ''"),
        (Spec("x", True), "provider 'x': priority must be an int, got True"),
        (Spec("x", 1, daily_limit=-1), "provider 'x': daily_limit must be an int >= 0, got -1"),
        (
            Spec("x", 1, daily_limit=True),
            "provider 'x': daily_limit must be an int >= 0, got True",
        ),
    ],
)
def test_malformed_specs_are_rejected_naming_the_provider_and_field(
    spec: Spec, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        selector().load([spec])


# -- choosing ------------------------------------------------------------------------------


def test_failover_follows_priority_and_skips_excluded_providers() -> None:
    s = selector()
    s.load([Spec("b", 2), Spec("a", 3), Spec("c", 1)])
    assert chosen(s.choose(T0)) == "a"
    assert chosen(s.choose(T0, exclude={"a"})) == "b"
    assert chosen(s.choose(T0, exclude=["a", "b"])) == "c"
    assert s.choose(T0, exclude=("a", "b", "c")) == Unavailable(None, "all 3 providers excluded")


def test_an_empty_pool_can_never_serve() -> None:
    assert selector().choose(T0) == Unavailable(None, "no providers loaded")


def test_choose_does_not_count_usage() -> None:
    s = selector()
    s.load([Spec("a", daily_limit=1)])
    for _ in range(5):
        assert chosen(s.choose(T0)) == "a"
    assert s.snapshot()[0].calls == 0


def test_a_quota_is_used_up_at_exactly_daily_limit_calls_and_resets_at_utc_midnight() -> None:
    s = selector()
    s.load([Spec("a", daily_limit=3)])
    for i in range(2):
        s.record_call("a", T0 + i)
    assert chosen(s.choose(T0 + 2)) == "a"  # 2 of 3 used
    s.record_call("a", T0 + 2)  # exactly at the limit
    choice = s.choose(T0 + 3)
    assert isinstance(choice, Unavailable)
    assert choice.retry_at == MIDNIGHT
    assert "1 over daily limit" in choice.reason
    assert isinstance(s.choose(MIDNIGHT - 0.001), Unavailable)
    assert chosen(s.choose(MIDNIGHT)) == "a"
    assert s.snapshot(now=MIDNIGHT)[0].usage_today == 0
    assert s.snapshot()[0].usage_today == 3  # without now: the last recorded day
    s.record_call("a", MIDNIGHT)
    assert s.snapshot(now=MIDNIGHT)[0].usage_today == 1


def test_a_used_up_quota_fails_over_to_the_next_provider() -> None:
    s = selector()
    s.load([Spec("a", 2, daily_limit=1), Spec("b", 1)])
    s.record_call("a", T0)
    assert chosen(s.choose(T0)) == "b"


def test_a_zero_daily_limit_never_serves_and_gives_no_retry_time() -> None:
    s = selector()
    s.load([Spec("a", daily_limit=0)])
    choice = s.choose(T0)
    assert isinstance(choice, Unavailable)
    assert choice.retry_at is None


# -- cooldowns -----------------------------------------------------------------------------


def test_a_failure_cools_the_provider_down_for_cooldown_s() -> None:
    s = selector()
    s.load([Spec("a", 2), Spec("b", 1)])
    s.record_failure("a", T0)
    assert chosen(s.choose(T0 + 4.999)) == "b"
    assert chosen(s.choose(T0 + 5.0)) == "a"


def test_the_retry_time_is_the_earliest_cooldown_end() -> None:
    s = selector()
    s.load([Spec("a", 2), Spec("b", 1)])
    s.record_failure("a", T0, retry_after=30.0)
    s.record_failure("b", T0 + 1)
    choice = s.choose(T0 + 2)
    assert choice == Unavailable(T0 + 6.0, "no provider available: 2 cooling down")


def test_a_retry_after_longer_than_the_cooldown_is_honoured() -> None:
    s = selector()
    s.load([Spec("a")])
    s.record_failure("a", T0, retry_after=60.0)
    assert s.snapshot()[0].cooldown_until == T0 + 60.0
    assert isinstance(s.choose(T0 + 59.9), Unavailable)


def test_a_retry_after_shorter_than_the_cooldown_still_cools_for_cooldown_s() -> None:
    s = selector()
    s.load([Spec("a")])
    s.record_failure("a", T0, retry_after=1.0)
    assert s.snapshot()[0].cooldown_until == T0 + 5.0


def test_a_second_shorter_cooldown_never_shortens_the_first() -> None:
    s = selector()
    s.load([Spec("a")])
    s.record_failure("a", T0, retry_after=60.0)
    s.record_failure("a", T0 + 1.0)
    s.record_failure("a", T0 + 2.0, retry_after=3.0)
    assert s.snapshot()[0].cooldown_until == T0 + 60.0
    s.record_failure("a", T0 + 58.0, retry_after=10.0)  # a longer one does extend
    assert s.snapshot()[0].cooldown_until == T0 + 68.0


def test_with_allowed_fails_three_the_third_consecutive_failure_starts_the_cooldown() -> None:
    s = selector(allowed_fails=3)
    s.load([Spec("a")])
    s.record_failure("a", T0)
    s.record_failure("a", T0)
    assert chosen(s.choose(T0)) == "a"
    s.record_failure("a", T0)
    assert isinstance(s.choose(T0), Unavailable)
    # Half-open: the streak survives the cooldown, so one more failure cools again.
    s.record_failure("a", T0 + 10)
    assert isinstance(s.choose(T0 + 10), Unavailable)


def test_a_success_ends_the_failure_streak_and_adds_tokens() -> None:
    s = selector(allowed_fails=2)
    s.load([Spec("a")])
    s.record_failure("a", T0)
    s.record_success("a", T0, tokens=120)
    s.record_failure("a", T0)
    assert chosen(s.choose(T0)) == "a"
    state = s.snapshot()[0]
    assert (state.failures, state.consecutive_failures, state.successes, state.tokens) == (
        2,
        1,
        1,
        120,
    )


def test_a_retry_after_cools_down_at_once_whatever_allowed_fails_is() -> None:
    s = selector(allowed_fails=3)
    s.load([Spec("a")])
    s.record_failure("a", T0, retry_after=0.0)
    assert isinstance(s.choose(T0 + 1), Unavailable)
    assert s.cooldowns_started == 1


def test_a_quota_and_a_cooldown_past_midnight_retry_at_the_cooldown_end() -> None:
    s = selector()
    s.load([Spec("a", daily_limit=1)])
    s.record_call("a", MIDNIGHT - 10)
    s.record_failure("a", MIDNIGHT - 10, retry_after=100.0)
    choice = s.choose(MIDNIGHT - 5)
    assert isinstance(choice, Unavailable)
    assert choice.retry_at == MIDNIGHT + 90.0
    assert chosen(s.choose(MIDNIGHT + 90.0)) == "a"


def test_outcomes_for_an_unloaded_provider_are_ignored() -> None:
    s = selector()
    assert s.record_call("ghost", T0) is False
    assert s.record_success("ghost", T0) is False
    assert s.record_failure("ghost", T0) is False


def test_snapshot_lists_every_stat_in_rank_order() -> None:
    s = selector()
    s.load([Spec("a", 1, daily_limit=9)])
    s.record_call("a", T0)
    s.record_success("a", T0, tokens=7)
    assert s.snapshot() == (
        ProviderState(
            name="a",
            priority=1,
            usage_today=1,
            daily_limit=9,
            cooldown_until=-math.inf,
            failures=0,
            consecutive_failures=0,
            calls=1,
            successes=1,
            tokens=7,
        ),
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_providers": 0}, "max_providers must be an int >= 1, got 0"),
        ({"max_providers": True}, "max_providers must be an int >= 1, got True"),
        ({"cooldown_s": -1.0}, "cooldown_s must be a finite number >= 0, got -1.0"),
        ({"cooldown_s": math.nan}, "cooldown_s must be a finite number >= 0, got nan"),
        ({"allowed_fails": 0}, "allowed_fails must be an int >= 1, got 0"),
    ],
)
def test_bad_constructor_arguments_are_rejected_by_name_rule_and_value(
    kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"max_providers": 50, "cooldown_s": 5.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ProviderSelector(**args)  # type: ignore[arg-type]


def test_bad_outcome_arguments_are_rejected_by_name_rule_and_value() -> None:
    s = selector()
    s.load([Spec("a")])
    with pytest.raises(ValueError, match=r"^retry_after must be a finite number >= 0, got -1\.0$"):
        s.record_failure("a", T0, retry_after=-1.0)
    with pytest.raises(ValueError, match=r"^tokens must be an int >= 0, got -1$"):
        s.record_success("a", T0, tokens=-1)


# -- properties ----------------------------------------------------------------------------

NAMES = [f"p{i}" for i in range(8)]
specs_st = st.builds(
    Spec,
    name=st.sampled_from(NAMES),
    priority=st.integers(0, 5),
    daily_limit=st.none() | st.integers(0, 3),
    active=st.booleans(),
)
# Mostly active and mostly non-zero quotas, so the machine exercises the selection itself.
machine_specs_st = st.builds(
    Spec,
    name=st.sampled_from(NAMES),
    priority=st.integers(0, 5),
    daily_limit=st.sampled_from([None, None, 1, 2, 3, 0]),
    active=st.sampled_from([True, True, True, False]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(specs_st, unique_by=lambda s: s.name), st.integers(1, 8))
def test_load_keeps_at_most_max_providers_and_exactly_the_best_active_ones(
    specs: list[Spec], cap: int
) -> None:
    s = selector(max_providers=cap)
    result = s.load(specs)
    ranked = sorted((x for x in specs if x.active), key=lambda x: (-x.priority, x.name))
    assert result.loaded == s.names == tuple(x.name for x in ranked[:cap])
    assert result.left_out == tuple(x.name for x in ranked[cap:])
    assert len(s) <= cap


class SelectorMachine(RuleBasedStateMachine):
    """Random pool operations against a plain reference model of the selection rule."""

    CAP = 4

    def __init__(self) -> None:
        super().__init__()
        self.s = ProviderSelector[Spec](max_providers=self.CAP, cooldown_s=5.0, allowed_fails=2)
        self.now = T0
        self.specs: dict[str, Spec] = {}
        self.usage: dict[str, tuple[int, int]] = {}  # name -> (day, count)
        self.until: dict[str, float] = {}
        self.streak: dict[str, int] = {}

    def _forget_unloaded(self) -> None:
        for table in (self.usage, self.until, self.streak):
            for name in [n for n in table if n not in self.specs]:
                del table[name]

    def _used(self, name: str) -> int:
        day, count = self.usage.get(name, (-1, 0))
        return count if day == math.floor(self.now / DAY) else 0

    def _name(self, data: st.DataObject) -> str:
        # Mostly a loaded provider; sometimes any name, to cover unloaded ones.
        loaded = sorted(self.specs)
        if loaded and data.draw(st.integers(0, 4)) > 0:
            return data.draw(st.sampled_from(loaded))
        return data.draw(st.sampled_from(NAMES))

    @initialize(specs=st.lists(machine_specs_st, min_size=3, unique_by=lambda s: s.name))
    def first_load(self, specs: list[Spec]) -> None:
        self.load(specs)

    @rule(specs=st.lists(machine_specs_st, unique_by=lambda s: s.name))
    def load(self, specs: list[Spec]) -> None:
        self.s.load(specs)
        ranked = sorted((x for x in specs if x.active), key=lambda x: (-x.priority, x.name))
        self.specs = {x.name: x for x in ranked[: self.CAP]}
        self._forget_unloaded()

    @rule(spec=machine_specs_st)
    def add(self, spec: Spec) -> None:
        if spec.name in self.specs:
            with pytest.raises(ValueError, match="already loaded"):
                self.s.add(spec)
            return

        def rank(x: Spec) -> tuple[int, str]:
            return (-x.priority, x.name)

        result = self.s.add(spec)
        worst = max(self.specs.values(), key=rank, default=None)
        if not spec.active:
            assert result == LoadResult((), (spec.name,))
        elif len(self.specs) < self.CAP:
            assert result == LoadResult((spec.name,), ())
            self.specs[spec.name] = spec
        elif worst is not None and rank(spec) < rank(worst):
            assert result == LoadResult((spec.name,), (worst.name,))
            del self.specs[worst.name]
            self.specs[spec.name] = spec
        else:
            assert result == LoadResult((), (spec.name,))
        self._forget_unloaded()

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        name = self._name(data)
        assert self.s.remove(name) == (self.specs.pop(name, None) is not None)
        self._forget_unloaded()

    @rule(dt=st.sampled_from([0.0, 0.5, 3.0, 5.0, 60.0, 3_000.0, 40_000.0, DAY]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(data=st.data(), times=st.integers(1, 3))
    def call(self, data: st.DataObject, times: int) -> None:
        name = self._name(data)
        for _ in range(times):
            self._call(name)

    def _call(self, name: str) -> None:
        if self.s.record_call(name, self.now):
            self.usage[name] = (math.floor(self.now / DAY), self._used(name) + 1)

    @rule(data=st.data(), retry_after=st.none() | st.sampled_from([0.0, 2.0, 30.0, 50_000.0]))
    def fail(self, data: st.DataObject, retry_after: float | None) -> None:
        name = self._name(data)
        if self.s.record_failure(name, self.now, retry_after=retry_after):
            self.streak[name] = self.streak.get(name, 0) + 1
            if retry_after is not None or self.streak[name] >= 2:
                until = self.now + max(5.0, retry_after or 0.0)
                self.until[name] = max(self.until.get(name, -math.inf), until)

    @rule(data=st.data())
    def succeed(self, data: st.DataObject) -> None:
        name = self._name(data)
        if self.s.record_success(name, self.now, tokens=1):
            self.streak[name] = 0

    @rule(exclude=st.sets(st.sampled_from(NAMES), max_size=3))
    def choose(self, exclude: set[str]) -> None:
        def exhausted(x: Spec) -> bool:
            return x.daily_limit is not None and self._used(x.name) >= x.daily_limit

        candidates = [x for x in self.specs.values() if x.name not in exclude]
        eligible = [
            x
            for x in candidates
            if self.until.get(x.name, -math.inf) <= self.now and not exhausted(x)
        ]
        choice = self.s.choose(self.now, exclude)
        if eligible:
            best = min(eligible, key=lambda x: (-x.priority, x.name))
            assert choice == Chosen(best.name, best)
            return
        assert isinstance(choice, Unavailable)
        midnight = (math.floor(self.now / DAY) + 1) * DAY
        ready = [
            max(self.until.get(x.name, -math.inf), midnight if exhausted(x) else -math.inf)
            for x in candidates
            if x.daily_limit != 0
        ]
        assert choice.retry_at == (min(ready) if ready else None)
        if choice.retry_at is not None:
            assert choice.retry_at > self.now

    @invariant()
    def pool_matches_the_model(self) -> None:
        assert len(self.s) <= self.CAP
        assert set(self.s.names) == set(self.specs)
        ranks = [(-self.specs[n].priority, n) for n in self.s.names]
        assert ranks == sorted(ranks)
        for state in self.s.snapshot(now=self.now):
            assert state.usage_today == self._used(state.name)
            assert state.cooldown_until == self.until.get(state.name, -math.inf)
            assert state.consecutive_failures == self.streak.get(state.name, 0)


SelectorMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None
)
TestSelectorMachine = SelectorMachine.TestCase

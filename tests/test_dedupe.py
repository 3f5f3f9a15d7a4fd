"""Tests for the bounded memory of seen message ids (actors.cores.dedupe)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors.cores.dedupe import DedupeSet

ENGINE_CAPACITY = 100_000


def test_the_first_delivery_is_new_and_a_redelivery_is_a_duplicate() -> None:
    seen = DedupeSet(capacity=10)
    assert seen.seen_before("wamid.1") is False
    assert seen.seen_before("wamid.1") is True
    assert "wamid.1" in seen
    assert len(seen) == 1


def test_exactly_at_capacity_nothing_is_evicted() -> None:
    seen = DedupeSet(capacity=ENGINE_CAPACITY)
    for i in range(ENGINE_CAPACITY):
        assert not seen.seen_before(f"wamid.{i}")
    assert len(seen) == ENGINE_CAPACITY
    assert seen.evictions == 0
    assert "wamid.0" in seen


def test_one_past_capacity_evicts_the_oldest_id() -> None:
    seen = DedupeSet(capacity=ENGINE_CAPACITY)
    for i in range(ENGINE_CAPACITY + 1):
        seen.seen_before(f"wamid.{i}")
    assert len(seen) == ENGINE_CAPACITY
    assert seen.evictions == 1
    assert "wamid.0" not in seen
    assert "wamid.1" in seen
    assert f"wamid.{ENGINE_CAPACITY}" in seen


def test_a_hit_refreshes_the_id_so_the_next_oldest_is_evicted_instead() -> None:
    seen = DedupeSet(capacity=3)
    for message_id in ("a", "b", "c"):
        seen.seen_before(message_id)
    assert seen.seen_before("a") is True
    seen.seen_before("d")
    assert "a" in seen
    assert "b" not in seen


def test_a_membership_query_does_not_refresh_the_id() -> None:
    seen = DedupeSet(capacity=3)
    for message_id in ("a", "b", "c"):
        seen.seen_before(message_id)
    assert "a" in seen
    seen.seen_before("d")
    assert "a" not in seen
    assert seen.evictions == 1


def test_an_evicted_id_is_accepted_again_as_new() -> None:
    seen = DedupeSet(capacity=1)
    seen.seen_before("a")
    seen.seen_before("b")
    assert seen.seen_before("a") is False
    assert seen.evictions == 2


def test_a_forgotten_id_is_accepted_again_without_counting_an_eviction() -> None:
    seen = DedupeSet(capacity=2)
    seen.seen_before("a")
    assert seen.forget("a") is True
    assert "a" not in seen
    assert len(seen) == 0
    assert seen.seen_before("a") is False
    assert seen.evictions == 0


def test_forgetting_an_unknown_id_reports_false() -> None:
    seen = DedupeSet(capacity=2)
    assert seen.forget("never-seen") is False


def test_the_capacity_is_readable() -> None:
    assert DedupeSet(capacity=ENGINE_CAPACITY).capacity == ENGINE_CAPACITY


@pytest.mark.parametrize(
    ("capacity", "message"),
    [
        (0, "capacity must be an int >= 1, got 0"),
        (-5, "capacity must be an int >= 1, got -5"),
        (True, "capacity must be an int >= 1, got True"),
        (1.5, r"capacity must be an int >= 1, got 1\.5"),
        ("10", "capacity must be an int >= 1, got '10'"),
    ],
)
def test_the_constructor_names_the_bad_capacity(capacity: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DedupeSet(capacity=capacity)  # type: ignore[arg-type]


# -- model-based state machine --------------------------------------------------------

IDS = [f"wamid.{i}" for i in range(6)]


class DedupeMachine(RuleBasedStateMachine):
    """Drives the set and a plain recency list (least recently seen first) side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = DedupeSet(capacity=1)
        self.model: list[str] = []
        self.evictions = 0

    @initialize(capacity=st.integers(1, 5))
    def build(self, capacity: int) -> None:
        self.seen = DedupeSet(capacity=capacity)

    @rule(message_id=st.sampled_from(IDS))
    def seen_before(self, message_id: str) -> None:
        expected = message_id in self.model
        if expected:
            self.model.remove(message_id)
        elif len(self.model) == self.seen.capacity:
            self.model.pop(0)
            self.evictions += 1
        self.model.append(message_id)
        assert self.seen.seen_before(message_id) is expected

    @rule(message_id=st.sampled_from(IDS))
    def contains(self, message_id: str) -> None:
        assert (message_id in self.seen) is (message_id in self.model)

    @rule(message_id=st.sampled_from(IDS))
    def forget(self, message_id: str) -> None:
        expected = message_id in self.model
        if expected:
            self.model.remove(message_id)
        assert self.seen.forget(message_id) is expected

    @invariant()
    def matches_the_model_and_stays_bounded(self) -> None:
        assert len(self.seen) == len(self.model) <= self.seen.capacity
        assert [i for i in IDS if i in self.seen] == [i for i in IDS if i in self.model]
        assert self.seen.evictions == self.evictions


TestDedupeAgainstARecencyList = DedupeMachine.TestCase
TestDedupeAgainstARecencyList.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None
)

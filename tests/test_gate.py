"""Tests for the ConversationGate pure core (seed ConversationService.processingQueue)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors.cores.gate import ConversationGate, Item, Step

SEED_MAX_PROCESSING = 1000
SEED_TIMEOUT_S = 120.0
ENGINE_QUEUE = 20


def seed_gate(**overrides: object) -> ConversationGate[str]:
    args: dict[str, object] = {
        "max_processing": SEED_MAX_PROCESSING,
        "max_queue_per_customer": ENGINE_QUEUE,
        "timeout_s": SEED_TIMEOUT_S,
    }
    args.update(overrides)
    return ConversationGate(**args)  # type: ignore[arg-type]


def ids(items: tuple[Item[Any], ...]) -> list[str]:
    return [item.item_id for item in items]


# -- seed numbers and bounds ----------------------------------------------------------------


def test_a_thousand_customers_are_admitted_and_the_next_new_customer_is_refused_for_capacity():
    gate = seed_gate()
    for n in range(SEED_MAX_PROCESSING):
        assert gate.offer(f"acct/c{n}", f"m{n}", "hi", now=0.0).decision == "admit"
    assert gate.processing == SEED_MAX_PROCESSING

    offer = gate.offer("acct/c1000", "m1000", "hi", now=0.0)

    assert offer.decision == "reject"
    assert offer.reason == "capacity"
    assert offer.item is None
    assert not offer.accepted
    assert gate.rejected == {"capacity": 1, "customer_backlog": 0, "duplicate": 0}
    assert len(gate) == SEED_MAX_PROCESSING
    assert gate.customers == SEED_MAX_PROCESSING


def test_a_customer_already_processing_still_queues_when_capacity_is_full():
    gate = seed_gate()
    for n in range(SEED_MAX_PROCESSING):
        gate.offer(f"acct/c{n}", f"m{n}", "hi", now=0.0)

    assert gate.offer("acct/c7", "m7b", "again", now=0.0).decision == "queue"


def test_completing_one_frees_a_slot_for_a_new_customer():
    gate = seed_gate()
    for n in range(SEED_MAX_PROCESSING):
        gate.offer(f"acct/c{n}", f"m{n}", "hi", now=0.0)

    gate.complete("m3", now=1.0)

    assert gate.offer("acct/new", "m-new", "hi", now=1.0).decision == "admit"
    assert gate.offer("acct/newer", "m-newer", "hi", now=1.0).reason == "capacity"


def test_a_customer_queues_up_to_its_cap_and_then_is_refused_for_backlog():
    gate = seed_gate()
    assert gate.offer("acct/c", "m0", "p", now=0.0).decision == "admit"
    for n in range(1, ENGINE_QUEUE + 1):
        offer = gate.offer("acct/c", f"m{n}", "p", now=0.0)
        assert offer.decision == "queue", n
    assert gate.queued == ENGINE_QUEUE

    offer = gate.offer("acct/c", "m21", "p", now=0.0)

    assert (offer.decision, offer.reason) == ("reject", "customer_backlog")
    assert gate.rejected["customer_backlog"] == 1
    assert len(gate) == 1 + ENGINE_QUEUE


def test_with_no_queue_a_second_item_of_a_busy_customer_is_refused_for_backlog():
    gate = seed_gate(max_queue_per_customer=0)
    gate.offer("acct/c", "m0", "p", now=0.0)

    assert gate.offer("acct/c", "m1", "p", now=0.0).reason == "customer_backlog"
    assert gate.offer("acct/d", "m2", "p", now=0.0).decision == "admit"


def test_an_item_offered_at_zero_expires_at_exactly_120_seconds_and_not_before():
    gate = seed_gate()
    offer = gate.offer("acct/c", "m0", "p", now=0.0)
    assert offer.item is not None
    assert offer.item.deadline == SEED_TIMEOUT_S
    assert gate.next_deadline() == SEED_TIMEOUT_S

    assert gate.expire(now=119.999) == Step()
    assert gate.is_processing("m0")

    step = gate.expire(now=120.0)

    assert ids(step.expired) == ["m0"]
    assert step.started == ()
    assert len(gate) == 0
    assert gate.expired_total == 1
    assert gate.next_deadline() is None


def test_a_live_id_is_refused_as_duplicate_and_may_be_reused_once_it_left():
    gate = seed_gate()
    gate.offer("acct/c", "m0", "p", now=0.0)
    gate.offer("acct/c", "m1", "p", now=0.0)

    assert gate.offer("acct/other", "m0", "p", now=0.0).reason == "duplicate"
    assert gate.offer("acct/c", "m1", "p", now=0.0).reason == "duplicate"
    gate.complete("m0", now=1.0)
    assert gate.offer("acct/c", "m0", "p", now=1.0).decision == "queue"
    assert gate.rejected["duplicate"] == 2


# -- release order -------------------------------------------------------------------------


def test_completing_releases_the_customers_queued_items_in_fifo_order():
    gate = seed_gate()
    for n in range(4):
        gate.offer("acct/c", f"m{n}", f"payload{n}", now=float(n))

    released = []
    current = "m0"
    for n in range(4):
        step = gate.complete(current, now=10.0 + n)
        assert not step.late
        assert step.completed is not None
        assert step.completed.item_id == current
        if step.started:
            current = step.started[0].item_id
            released.append((current, step.started[0].payload))
            assert gate.is_processing(current)
    assert released == [("m1", "payload1"), ("m2", "payload2"), ("m3", "payload3")]
    assert len(gate) == 0
    assert gate.customers == 0
    assert gate.completed_total == 4


def test_a_queued_item_keeps_the_deadline_it_got_when_offered():
    gate = seed_gate()
    gate.offer("acct/c", "m0", "p", now=0.0)
    gate.offer("acct/c", "m1", "p", now=5.0)

    step = gate.complete("m0", now=100.0)

    assert step.started[0].deadline == 125.0
    assert gate.next_deadline() == 125.0


def test_expiry_of_the_item_in_processing_starts_the_next_one():
    gate = seed_gate()
    gate.offer("acct/c", "m0", "p", now=0.0)
    gate.offer("acct/c", "m1", "p", now=10.0)
    gate.offer("acct/d", "d0", "p", now=20.0)

    step = gate.expire(now=120.0)

    assert ids(step.expired) == ["m0"]
    assert ids(step.started) == ["m1"]
    assert gate.is_processing("m1")
    assert gate.processing == 2
    assert gate.queued == 0


def test_items_expire_in_deadline_order_and_one_that_expires_while_queued_never_starts():
    gate = seed_gate()
    gate.offer("acct/c", "c0", "p", now=0.0)
    gate.offer("acct/d", "d0", "p", now=1.0)
    gate.offer("acct/c", "c1", "p", now=2.0)
    gate.offer("acct/c", "c2", "p", now=50.0)

    step = gate.expire(now=122.0)

    assert ids(step.expired) == ["c0", "d0", "c1"]
    assert ids(step.started) == ["c2"]
    assert gate.customers == 1


def test_an_expired_slot_goes_back_to_its_customer_not_to_a_new_one():
    gate = seed_gate(max_processing=1)
    gate.offer("acct/c", "c0", "p", now=0.0)
    gate.offer("acct/c", "c1", "p", now=1.0)

    gate.expire(now=120.0)

    assert gate.offer("acct/d", "d0", "p", now=120.0).reason == "capacity"


def test_a_late_completion_after_expiry_is_counted_and_changes_nothing():
    gate = seed_gate()
    gate.offer("acct/c", "m0", "p", now=0.0)
    gate.offer("acct/c", "m1", "p", now=1.0)
    gate.expire(now=120.0)
    before = (len(gate), gate.processing, gate.queued, gate.next_deadline())

    step = gate.complete("m0", now=130.0)

    assert step == Step(late=True)
    assert gate.late_completions == 1
    assert gate.completed_total == 0
    assert (len(gate), gate.processing, gate.queued, gate.next_deadline()) == before
    assert gate.is_processing("m1")


def test_completing_an_unknown_or_merely_queued_item_is_late():
    gate = seed_gate()
    gate.offer("acct/c", "m0", "p", now=0.0)
    gate.offer("acct/c", "m1", "p", now=0.0)

    assert gate.complete("m1", now=1.0).late
    assert gate.complete("nope", now=1.0).late
    assert gate.late_completions == 2
    assert len(gate) == 2


def test_a_completion_before_expire_ran_still_counts_even_past_the_deadline():
    gate = seed_gate()
    gate.offer("acct/c", "m0", "p", now=0.0)

    step = gate.complete("m0", now=500.0)

    assert not step.late
    assert gate.late_completions == 0


# -- cancel, drain, clock ------------------------------------------------------------------


def test_cancelling_the_item_in_processing_starts_the_next_one():
    gate = seed_gate()
    gate.offer("acct/c", "m0", "p", now=0.0)
    gate.offer("acct/c", "m1", "p", now=0.0)

    step = gate.cancel("m0")

    assert step.cancelled is not None
    assert step.cancelled.item_id == "m0"
    assert ids(step.started) == ["m1"]
    assert gate.cancelled_total == 1


def test_cancelling_a_queued_item_keeps_the_others_in_order():
    gate = seed_gate()
    for n in range(4):
        gate.offer("acct/c", f"m{n}", "p", now=0.0)

    step = gate.cancel("m2")

    assert step.started == ()
    assert gate.is_processing("m0")
    assert ids(gate.complete("m0", now=1.0).started) == ["m1"]
    assert ids(gate.complete("m1", now=1.0).started) == ["m3"]


def test_cancelling_an_id_that_is_not_live_changes_nothing():
    gate = seed_gate()
    gate.offer("acct/c", "m0", "p", now=0.0)

    assert gate.cancel("ghost") == Step()
    assert len(gate) == 1
    assert gate.cancelled_total == 0


def test_drain_returns_every_item_and_leaves_the_gate_empty():
    gate = seed_gate()
    gate.offer("acct/c", "c0", "p", now=0.0)
    gate.offer("acct/d", "d0", "p", now=1.0)
    gate.offer("acct/c", "c1", "p", now=2.0)

    assert ids(gate.drain()) == ["c0", "d0", "c1"]
    assert (len(gate), gate.processing, gate.queued, gate.customers) == (0, 0, 0, 0)
    assert gate.next_deadline() is None
    assert gate.drain() == ()
    assert gate.offer("acct/c", "c0", "p", now=3.0).decision == "admit"


def test_a_now_earlier_than_one_already_seen_is_clamped_to_the_latest():
    gate = seed_gate()
    gate.offer("acct/c", "m0", "p", now=50.0)

    offer = gate.offer("acct/d", "d0", "p", now=10.0)

    assert offer.item is not None
    assert offer.item.offered_at == 50.0
    assert offer.item.deadline == 170.0
    # The expire call itself is clamped too: now=0 means "still at 50".
    assert gate.expire(now=0.0) == Step()


@pytest.mark.parametrize("bad_now", [math.nan, math.inf, -math.inf])
def test_a_non_finite_now_is_refused(bad_now):
    gate = seed_gate()
    with pytest.raises(ValueError, match="now must be a finite number"):
        gate.offer("acct/c", "m0", "p", now=bad_now)


def test_memory_stays_bounded_however_many_items_pass_through():
    gate: ConversationGate[int] = ConversationGate(
        max_processing=3, max_queue_per_customer=2, timeout_s=5.0
    )
    now = 0.0
    in_processing: list[str] = []
    for n in range(20_000):
        now += 0.25
        offer = gate.offer(f"acct/c{n % 7}", f"m{n}", n, now=now)
        if offer.decision == "admit":
            in_processing.append(f"m{n}")
        if n % 4 == 0 and in_processing:
            in_processing.extend(ids(gate.complete(in_processing.pop(0), now=now).started))
        if n % 3 == 0:
            in_processing.extend(ids(gate.expire(now).started))
        assert len(gate) <= 3 * (1 + 2)
        assert gate.customers <= 3
    assert gate.completed_total > 0
    assert gate.expired_total > 0

    gate.expire(now + 5.0)

    assert (len(gate), gate.customers, gate.processing, gate.next_deadline()) == (0, 0, 0, None)


# -- occupancy alert -----------------------------------------------------------------------


def test_the_occupancy_alert_fires_once_at_900_of_1000_and_rearms_below_it():
    gate = seed_gate()
    alerts = []
    for n in range(SEED_MAX_PROCESSING):
        if gate.offer(f"acct/c{n}", f"m{n}", "p", now=0.0).occupancy_alert:
            alerts.append(gate.processing)
    assert gate.warn_at == 900
    assert alerts == [900]

    gate.complete("m0", now=1.0)  # 999: still at or above 900, not re-armed
    assert not gate.offer("acct/x", "x", "p", now=1.0).occupancy_alert
    for n in range(1, 102):  # 1000 -> 899
        gate.complete(f"m{n}", now=2.0)
    assert gate.processing == 899

    assert gate.offer("acct/y", "y", "p", now=2.0).occupancy_alert
    assert not gate.offer("acct/z", "z", "p", now=2.0).occupancy_alert


def test_a_queued_item_never_raises_the_occupancy_alert():
    gate = seed_gate(max_processing=2, warn_ratio=1.0)
    assert not gate.offer("acct/c", "c0", "p", now=0.0).occupancy_alert
    assert not gate.offer("acct/c", "c1", "p", now=0.0).occupancy_alert
    assert gate.offer("acct/d", "d0", "p", now=0.0).occupancy_alert


def test_the_warning_level_is_not_skewed_by_float_rounding():
    gate = seed_gate(max_processing=10, warn_ratio=0.7)
    assert gate.warn_at == 7


# -- constructor validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "value", "message"),
    [
        ("max_processing", 0, "max_processing must be an int >= 1, got 0"),
        ("max_processing", True, "max_processing must be an int >= 1, got True"),
        ("max_processing", 2.0, "max_processing must be an int >= 1, got 2.0"),
        ("max_queue_per_customer", -1, "max_queue_per_customer must be an int >= 0, got -1"),
        ("max_queue_per_customer", False, "max_queue_per_customer must be an int >= 0, got F"),
        ("timeout_s", 0.0, "timeout_s must be a finite number > 0, got 0.0"),
        ("timeout_s", math.inf, "timeout_s must be a finite number > 0, got inf"),
        ("timeout_s", math.nan, "timeout_s must be a finite number > 0, got nan"),
        ("timeout_s", True, "timeout_s must be a finite number > 0, got True"),
        ("warn_ratio", 0.0, "warn_ratio must be a finite number > 0 and <= 1, got 0.0"),
        ("warn_ratio", 1.01, "warn_ratio must be a finite number > 0 and <= 1, got 1.01"),
    ],
)
def test_constructor_arguments_out_of_range_are_refused_by_name(arg, value, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        seed_gate(**{arg: value})


def test_the_smallest_valid_arguments_are_accepted():
    gate: ConversationGate[None] = ConversationGate(
        max_processing=1, max_queue_per_customer=0, timeout_s=1, warn_ratio=1
    )
    assert (gate.max_processing, gate.max_queue_per_customer, gate.timeout_s) == (1, 0, 1.0)
    assert gate.warn_at == 1


# -- stateful property test against a reference model --------------------------------------


class GateMachine(RuleBasedStateMachine):
    """Drive the gate with random operations and compare with a list-per-customer model.

    The model keeps, per customer, its live items in offer order; the head is the one in
    processing. Ids are m<seq>, so offer order is the number after the "m".
    """

    TIMEOUT = 10.0

    def __init__(self) -> None:
        super().__init__()
        self.gate: ConversationGate[int] = ConversationGate(
            max_processing=1, max_queue_per_customer=0, timeout_s=self.TIMEOUT
        )
        self.clock = 0.0  # the fake clock; the gate may also be fed stale values below it
        self.high = -math.inf  # the largest now the gate has seen
        self.seq = 0
        self.model: dict[str, list[Item[int]]] = {}
        self.accepted: Counter[str] = Counter()
        self.left: Counter[str] = Counter()
        self.starts: dict[str, list[int]] = {}
        self.finishes: dict[str, list[int]] = {}
        self.armed = True
        self.late = 0
        self.peak = 0

    @initialize(
        max_processing=st.integers(1, 4),
        max_queue=st.integers(0, 3),
        warn_ratio=st.sampled_from([0.5, 0.75, 1.0]),
    )
    def configure(self, max_processing: int, max_queue: int, warn_ratio: float) -> None:
        self.gate = ConversationGate(
            max_processing=max_processing,
            max_queue_per_customer=max_queue,
            timeout_s=self.TIMEOUT,
            warn_ratio=warn_ratio,
        )

    # -- model helpers --

    def now(self, step: float) -> float:
        """Advance the fake clock by ``step``, or feed a stale time when it is negative."""
        if step >= 0:
            self.clock += step
        now = self.clock + min(step, 0.0)
        self.high = max(self.high, now)
        return now

    def live_ids(self) -> list[str]:
        return [item.item_id for items in self.model.values() for item in items]

    def start(self, item: Item[int]) -> None:
        self.starts.setdefault(item.key, []).append(seq_of(item))

    def leave(self, item: Item[int], *, in_order: bool) -> None:
        self.left[item.item_id] += 1
        if in_order:
            self.finishes.setdefault(item.key, []).append(seq_of(item))

    def settle(self, started: tuple[Item[int], ...], freed: list[str]) -> None:
        """Check the started items are the new heads of the freed customers, in order."""
        assert [item.key for item in started] == [key for key in freed if self.model[key]]
        for item in started:
            assert item is self.model[item.key][0]
            self.start(item)
        for key in freed:
            if not self.model[key]:
                del self.model[key]
        if len(self.model) < self.gate.warn_at:
            self.armed = True

    # -- rules --

    @rule(
        customer=st.integers(0, 3),
        step=st.sampled_from([0.0, 0.0, 1.0, 3.0, -2.0]),
        burst=st.integers(1, 4),
    )
    def offer_new(self, customer: int, step: float, burst: int) -> None:
        # Bursts for one customer fill its queue, so cancels in mid-queue get exercised.
        for n in range(burst):
            self.offer_one(f"acct/c{customer}", step if n == 0 else 0.0)

    def offer_one(self, key: str, step: float) -> None:
        item_id = f"m{self.seq}"
        offer = self.gate.offer(key, item_id, self.seq, now=self.now(step))
        self.seq += 1
        busy = key in self.model
        if not busy and len(self.model) >= self.gate.max_processing:
            assert (offer.decision, offer.reason, offer.item) == ("reject", "capacity", None)
            return
        if busy and len(self.model[key]) - 1 >= self.gate.max_queue_per_customer:
            assert (offer.decision, offer.reason) == ("reject", "customer_backlog")
            return
        assert offer.item is not None
        assert offer.item.offered_at == self.high
        assert offer.item.deadline == self.high + self.TIMEOUT
        self.model.setdefault(key, []).append(offer.item)
        self.accepted[item_id] += 1
        if busy:
            assert offer.decision == "queue"
            assert not offer.occupancy_alert
            return
        assert offer.decision == "admit"
        self.start(offer.item)
        self.peak = max(self.peak, len(self.model))
        expect_alert = self.armed and len(self.model) >= self.gate.warn_at
        assert offer.occupancy_alert == expect_alert
        if expect_alert:
            self.armed = False

    @rule(data=st.data())
    def offer_duplicate(self, data: st.DataObject) -> None:
        live = self.live_ids()
        if live:
            item_id = data.draw(st.sampled_from(live))
            offer = self.gate.offer("acct/dup", item_id, -1, now=self.now(0.0))
            assert (offer.decision, offer.reason) == ("reject", "duplicate")

    @rule(data=st.data(), step=st.sampled_from([0.0, 2.0, -1.0]))
    def complete(self, data: st.DataObject, step: float) -> None:
        item_id = data.draw(st.sampled_from([*self.live_ids(), "ghost"]))
        result = self.gate.complete(item_id, now=self.now(step))
        heads = {items[0].item_id: key for key, items in self.model.items()}
        if item_id not in heads:
            self.late += 1
            assert result == Step(late=True)
            return
        key = heads[item_id]
        done = self.model[key].pop(0)
        assert result.completed is done
        self.leave(done, in_order=True)
        self.settle(result.started, [key])

    @rule(step=st.sampled_from([0.0, 1.0, 5.0, 10.0, 25.0]))
    def expire(self, step: float) -> None:
        result = self.gate.expire(now=self.now(step))
        due = [item for items in self.model.values() for item in items]
        due = sorted((item for item in due if item.deadline <= self.high), key=seq_of)
        assert list(result.expired) == due
        freed: list[str] = []
        for item in due:
            # Within a customer the head is the oldest, so it expires before the rest.
            assert item is self.model[item.key].pop(0)
            self.leave(item, in_order=True)
            if item.key not in freed:
                freed.append(item.key)
        self.settle(result.started, freed)

    @rule(data=st.data(), queued_only=st.booleans())
    def cancel(self, data: st.DataObject, queued_only: bool) -> None:
        if queued_only:
            candidates = [item.item_id for items in self.model.values() for item in items[1:]]
        else:
            candidates = [*self.live_ids(), "ghost"]
        if not candidates:
            return
        item_id = data.draw(st.sampled_from(candidates))
        result = self.gate.cancel(item_id)
        where = [
            (key, n)
            for key, items in self.model.items()
            for n, item in enumerate(items)
            if item.item_id == item_id
        ]
        if not where:
            assert result == Step()
            return
        key, index = where[0]
        removed = self.model[key].pop(index)
        assert result.cancelled is removed
        self.leave(removed, in_order=False)
        if index == 0:
            self.settle(result.started, [key])
        else:
            assert result.started == ()

    # -- checks --

    @invariant()
    def matches_the_model(self) -> None:
        gate = self.gate
        assert gate.processing == len(self.model) <= gate.max_processing
        assert gate.customers == len(self.model)
        assert len(gate) == sum(len(items) for items in self.model.values())
        assert gate.queued == len(gate) - gate.processing
        for items in self.model.values():
            assert 1 <= len(items) <= 1 + gate.max_queue_per_customer
            assert gate.is_processing(items[0].item_id)
            assert not any(gate.is_processing(item.item_id) for item in items[1:])
        deadlines = [item.deadline for items in self.model.values() for item in items]
        assert gate.next_deadline() == (min(deadlines) if deadlines else None)
        assert gate.peak_processing == self.peak
        assert gate.late_completions == self.late
        gone = gate.expired_total + gate.completed_total + gate.cancelled_total
        assert gone == sum(self.left.values())
        assert sum(self.accepted.values()) - gone == len(gate)

    @invariant()
    def each_customer_starts_and_finishes_in_offer_order(self) -> None:
        for seqs in [*self.starts.values(), *self.finishes.values()]:
            assert seqs == sorted(set(seqs))

    def teardown(self) -> None:
        for item in self.gate.drain():
            self.left[item.item_id] += 1
        assert self.left == self.accepted
        assert max(self.left.values(), default=1) == 1
        assert len(self.gate) == 0


def seq_of(item: Item[int]) -> int:
    return int(item.item_id[1:])


GateMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
test_the_gate_agrees_with_a_reference_model = GateMachine.TestCase


# -- explicit deadlines (re-admissions) ------------------------------------------------------


def test_an_item_offered_with_its_own_deadline_expires_in_deadline_order() -> None:
    gate = seed_gate(timeout_s=100.0)
    gate.offer("a/c1", "m1", "hi", now=10.0)  # deadline 110
    gate.offer("a/c2", "m2", "hi", now=11.0, deadline=50.0)  # a re-admission: earlier
    gate.offer("a/c3", "m3", "hi", now=12.0, deadline=111.0)
    assert gate.next_deadline() == 50.0
    assert ids(gate.expire(60.0).expired) == ["m2"]
    assert gate.next_deadline() == 110.0
    assert ids(gate.expire(111.0).expired) == ["m1", "m3"]
    assert len(gate) == 0


def test_a_queued_item_with_an_earlier_deadline_expires_before_the_one_in_processing() -> None:
    gate = seed_gate(timeout_s=100.0)
    first = gate.offer("a/c1", "m1", "hi", now=0.0)  # processing, deadline 100
    queued = gate.offer("a/c1", "m2", "hi", now=0.0, deadline=20.0)
    gate.offer("a/c1", "m3", "hi", now=0.0)  # queued behind it, deadline 100
    assert (first.decision, queued.decision) == ("admit", "queue")
    step = gate.expire(30.0)
    assert (ids(step.expired), step.started) == (["m2"], ())
    assert gate.is_processing("m1")
    step = gate.complete("m1", 31.0)
    assert ids(step.started) == ["m3"]  # the queue kept its order without m2


def test_drain_returns_items_in_deadline_order_and_a_bad_deadline_is_refused() -> None:
    gate = seed_gate(timeout_s=100.0)
    gate.offer("a/c1", "m1", "hi", now=0.0)
    gate.offer("a/c2", "m2", "hi", now=0.0, deadline=5.0)
    assert ids(gate.drain()) == ["m2", "m1"]
    with pytest.raises(ValueError, match="deadline"):
        gate.offer("a/c1", "m3", "hi", now=0.0, deadline=math.nan)

"""Tests for the supervisor's pure core (actors.supervisor.core), driven by a hand-moved clock."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.config import EngineConfig
from actors.cores.lifecycle import LifecycleError
from actors.cores.restart import Restart, RestartPolicy
from actors.supervisor.core import ShutdownPlan, SupervisorCore
from protocols import AccountSpec, ProviderSpec, ShutdownReport, StageReport

T0 = 1_700_000_000.0


def supervisor(seed: int = 0, **overrides: Any) -> SupervisorCore:
    args: dict[str, Any] = {
        "max_instances": 3,
        "restart_min_backoff_s": 0.1,
        "restart_max_backoff_s": 30.0,
        "restart_backoff_factor": 2.0,
        "restart_jitter": 0.0,
        "restart_max_restarts": 3,
        "restart_period_s": 60.0,
        "restart_reset_after_s": 30.0,
    }
    args.update(overrides)
    return SupervisorCore(EngineConfig(**args), seed=seed)


def add_account(core: SupervisorCore, account_id: str) -> None:
    assert core.check_add_account(account_id) is None
    core.add_child("account", account_id, spec=AccountSpec(account_id=account_id))


def provider(name: str, priority: int, *, active: bool = True) -> ProviderSpec:
    return ProviderSpec(name=name, kind="echo", priority=priority, active=active)


# -- the instance cap -----------------------------------------------------------------------


def test_exactly_max_instances_accounts_are_accepted_and_the_next_is_refused() -> None:
    core = supervisor(max_instances=3)
    core.add_child("router", "router")
    core.add_child("ai_pool", "ai_pool")  # neither counts against the cap
    for n in range(3):
        add_account(core, f"a-{n}")

    refusal = core.check_add_account("x")

    assert refusal == ("instance_limit", "cannot add account 'x': instance limit (3) reached")
    assert len(core.accounts()) == 3
    assert core.counters() == {"instance_limit_refusals": 1}


def test_the_seed_limit_of_a_hundred_accounts_is_named_in_the_refusal() -> None:
    core = supervisor(max_instances=100)
    for n in range(100):
        add_account(core, f"a-{n}")

    assert core.check_add_account("a-101") == (
        "instance_limit",
        "cannot add account 'a-101': instance limit (100) reached",
    )


def test_removing_an_account_frees_its_place_under_the_cap() -> None:
    core = supervisor(max_instances=1)
    add_account(core, "a-0")
    assert core.check_add_account("a-1") is not None

    core.remove_child(core.children[("account", "a-0")])

    assert core.check_add_account("a-1") is None


def test_an_account_id_already_supervised_is_refused_even_at_the_cap() -> None:
    core = supervisor(max_instances=1)
    add_account(core, "a-0")

    assert core.check_add_account("a-0") == (
        "account_exists",
        "cannot add account 'a-0': it already exists",
    )
    assert core.counters() == {}  # not an instance-limit refusal


def test_no_account_is_added_while_shutting_down() -> None:
    core = supervisor()
    core.shutting_down = True

    assert core.check_add_account("a-0") == (
        "shutting_down",
        "cannot add account 'a-0': the engine is shutting down",
    )


# -- crashes and restarts -------------------------------------------------------------------


def test_a_crashing_child_is_restarted_after_the_policys_growing_backoff() -> None:
    core = supervisor(restart_max_restarts=10)
    child = core.add_child("account", "a-0")
    core.child_up(child, pid=123, now=T0)
    assert (child.state, child.pid) == ("up", 123)

    delays = []
    for n in range(4):
        now = T0 + n  # never stable for restart_reset_after_s: one streak
        decision = core.child_crashed(child, now)
        assert not decision.give_up
        assert child.state == "down"
        delays.append(decision.delay_s)
        core.respawn(child)
        core.child_up(child, pid=200 + n, now=now + decision.delay_s)

    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert child.restarts == 4
    assert core.counters() == {
        "crashes": 4,
        "crashes.account": 4,
        "restarts": 4,
        "restarts.account": 4,
    }


def test_a_child_that_ran_stable_starts_a_new_backoff_streak() -> None:
    core = supervisor(restart_period_s=1.0)
    child = core.add_child("ai_pool", "ai_pool")
    core.child_up(child, pid=None, now=T0)
    assert core.child_crashed(child, T0 + 1).delay_s == pytest.approx(0.1)
    core.respawn(child)
    core.child_up(child, pid=None, now=T0 + 2)
    assert core.child_crashed(child, T0 + 3).delay_s == pytest.approx(0.2)

    core.respawn(child)
    core.child_up(child, pid=None, now=T0 + 4)
    decision = core.child_crashed(child, T0 + 4 + 30.0)  # up for restart_reset_after_s

    assert decision.delay_s == pytest.approx(0.1)


def test_jittered_delays_are_the_policys_for_the_same_seed() -> None:
    overrides = {"restart_jitter": 0.2, "restart_max_restarts": 10}
    core = supervisor(seed=7, **overrides)
    children = [core.add_child("account", f"a-{n}") for n in range(2)]
    reference = RestartPolicy(
        min_backoff_s=0.1,
        max_backoff_s=30.0,
        factor=2.0,
        jitter=0.2,
        max_restarts=10,
        period_s=60.0,
        reset_after_s=30.0,
        rng=random.Random(7),
    )
    # One child crashes three times: one policy fed the same events and the same random
    # stream gives the same delays.
    child = children[0]
    got, expected = [], []
    for n in range(3):
        now = T0 + n
        core.child_up(child, pid=None, now=now)
        reference.started(now)
        got.append(core.child_crashed(child, now + 0.5).delay_s)
        core.respawn(child)
        decision = reference.failed(now + 0.5)
        assert isinstance(decision, Restart)
        expected.append(decision.delay_s)

    assert got == expected
    for attempt, delay in enumerate(got, start=1):
        base = 0.1 * 2 ** (attempt - 1)
        assert base <= delay < base * 1.2
    # The same seed reproduces the same delays.
    again = supervisor(seed=7, **overrides)
    twin = again.add_child("account", "a-0")
    again.add_child("account", "a-1")
    replay = []
    for n in range(3):
        again.child_up(twin, pid=None, now=T0 + n)
        replay.append(again.child_crashed(twin, T0 + n + 0.5).delay_s)
        again.respawn(twin)
    assert replay == got


def test_past_the_restart_intensity_the_child_is_given_up() -> None:
    core = supervisor(restart_max_restarts=3, restart_period_s=60.0)
    child = core.add_child("account", "a-0")
    core.child_up(child, pid=None, now=T0)
    for n in range(3):
        assert not core.child_crashed(child, T0 + n).give_up
        core.respawn(child)
        core.child_up(child, pid=None, now=T0 + n + 0.5)

    decision = core.child_crashed(child, T0 + 3)

    assert decision.give_up
    assert decision.reason == "restart intensity exceeded: more than 3 restarts within 60 s"
    assert decision.delay_s == 0.0
    assert child.state == "failed"
    assert child.restarts == 3
    assert core.counters()["gave_up"] == 1
    assert core.counters()["restarts"] == 3
    assert core.counters()["crashes"] == 4
    with pytest.raises(LifecycleError, match="child: can't handle 'configured' when state=failed"):
        core.child_up(child, pid=None, now=T0 + 4)


def test_crashes_spread_wider_than_the_period_never_give_up() -> None:
    core = supervisor(restart_max_restarts=1, restart_period_s=10.0)
    child = core.add_child("router", "router")
    for n in range(5):
        core.child_up(child, pid=None, now=T0 + 20 * n)
        assert not core.child_crashed(child, T0 + 20 * n + 1).give_up
        core.respawn(child)


def test_a_respawned_child_has_the_next_generation_and_no_pid_until_it_is_up() -> None:
    core = supervisor()
    child = core.add_child("account", "a-0", spec=AccountSpec(account_id="a-0"))
    assert (child.generation, child.state) == (1, "starting")
    core.child_up(child, pid=41, now=T0)
    core.child_crashed(child, T0 + 1)

    core.respawn(child)

    assert (child.generation, child.state, child.pid) == (2, "starting", None)
    assert not core.is_up("account", "a-0")
    core.child_up(child, pid=42, now=T0 + 2)
    assert core.is_up("account", "a-0")
    assert core.child_table() == (("account", "a-0", 2, "up", 1),)


# -- providers ------------------------------------------------------------------------------


def test_at_most_max_providers_are_remembered_the_highest_priorities_first() -> None:
    core = supervisor(max_providers=2)
    core.remember_provider(provider("low", 1))
    core.remember_provider(provider("high", 9))
    core.remember_provider(provider("mid", 5))

    assert sorted(s.name for s in core.provider_specs()) == ["high", "mid"]

    core.remember_provider(provider("lowest", 0))  # ranks below both: not kept
    assert sorted(s.name for s in core.provider_specs()) == ["high", "mid"]
    core.remember_provider(provider("mid", 10))  # a replacement, not a new name
    assert {s.name: s.priority for s in core.provider_specs()} == {"high": 9, "mid": 10}
    core.forget_provider("high")
    core.remember_provider(provider("again", 3))
    assert sorted(s.name for s in core.provider_specs()) == ["again", "mid"]


def test_equal_priorities_are_kept_by_name_like_the_selector() -> None:
    core = supervisor(max_providers=2)
    for name in ("c", "a", "b"):
        core.remember_provider(provider(name, 1))

    assert sorted(s.name for s in core.provider_specs()) == ["a", "b"]


def test_an_inactive_spec_never_pushes_an_active_provider_out_of_memory() -> None:
    # The pool unloads a name on an inactive spec and never loads one, so a restarted pool
    # must get back every active provider the old one had.
    core = supervisor(max_providers=2)
    core.remember_provider(provider("a", 5))
    core.remember_provider(provider("b", 1))

    core.remember_provider(provider("c", 9, active=False))

    assert sorted(s.name for s in core.provider_specs() if s.active) == ["a", "b"]
    core.remember_provider(provider("a", 5, active=False))  # unloads a
    assert sorted(s.name for s in core.provider_specs() if s.active) == ["b"]


# -- the shutdown plan ----------------------------------------------------------------------


def test_the_stages_run_drain_accounts_ai_pool_router_with_their_deadlines() -> None:
    plan = ShutdownPlan(T0, timeout_s=10.0, drain_timeout_s=4.0)
    assert plan.stage == "drain"
    assert plan.drain_deadline == T0 + 4.0
    assert plan.deadline == T0 + 10.0

    plan.finish_stage("drain", T0 + 2.0, drained=5, abandoned=2)
    assert (plan.stage, plan.stage_role()) == ("accounts", "account")
    assert plan.stage_deadline(T0 + 2.0) == T0 + 2.0 + 8.0 / 2  # half of what is left

    plan.stage_timer_armed = True
    plan.finish_stage("accounts", T0 + 3.0, drained=0, abandoned=0)
    assert (plan.stage, plan.stage_role()) == ("ai_pool", "ai_pool")
    assert not plan.stage_timer_armed
    assert plan.stage_deadline(T0 + 3.0) == T0 + 3.0 + 7.0 / 2

    plan.finish_stage("ai_pool", T0 + 4.5, drained=0, abandoned=0)
    assert (plan.stage, plan.stage_role()) == ("router", "router")
    assert plan.stage_deadline(T0 + 4.5) == T0 + 10.0  # the last stage gets all of it

    plan.finish_stage("router", T0 + 5.0, drained=0, abandoned=0)
    assert plan.stage is None


def test_the_report_lists_each_stage_in_order_with_its_seconds_and_the_abandoned() -> None:
    plan = ShutdownPlan(T0, timeout_s=10.0, drain_timeout_s=5.0)
    plan.abandoned_ids = ("m7", "m9")
    plan.finish_stage("drain", T0 + 5.0, drained=3, abandoned=2)
    plan.finish_stage("accounts", T0 + 5.25, drained=0, abandoned=0)
    plan.finish_stage("ai_pool", T0 + 6.0, drained=0, abandoned=0)
    plan.finish_stage("router", T0 + 6.5, drained=0, abandoned=0)

    report = plan.report(T0 + 7.0)

    assert report == ShutdownReport(
        stages=(
            StageReport(name="drain", seconds=5.0, drained=3, abandoned=2),
            StageReport(name="accounts", seconds=0.25),
            StageReport(name="ai_pool", seconds=0.75),
            StageReport(name="router", seconds=0.5),
        ),
        total_s=7.0,
        abandoned=("m7", "m9"),
    )


def test_a_drain_longer_than_the_whole_shutdown_is_cut_to_timeout_s() -> None:
    plan = ShutdownPlan(T0, timeout_s=3.0, drain_timeout_s=5.0)

    assert plan.drain_deadline == T0 + 3.0


def test_a_stage_that_starts_after_the_deadline_gets_no_time_and_seconds_never_go_negative() -> (
    None
):
    plan = ShutdownPlan(T0, timeout_s=2.0, drain_timeout_s=1.0)
    plan.finish_stage("drain", T0 + 5.0, drained=0, abandoned=0)

    assert plan.stage_deadline(T0 + 5.0) == T0 + 5.0
    plan.finish_stage("accounts", T0 + 4.0, drained=0, abandoned=0)  # the clock stepped back
    report = plan.report(T0 - 1.0)
    assert [s.seconds for s in report.stages] == [5.0, 0.0]
    assert report.total_s == 0.0


@settings(max_examples=150, deadline=None)
@given(
    timeout_s=st.floats(0.5, 100.0),
    drain_share=st.floats(0.0, 1.0),
    spent=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
)
def test_every_stage_deadline_falls_within_timeout_s(
    timeout_s: float, drain_share: float, spent: list[float]
) -> None:
    plan = ShutdownPlan(T0, timeout_s=timeout_s, drain_timeout_s=timeout_s * drain_share)
    assert T0 <= plan.drain_deadline <= plan.deadline
    # The drain ends somewhere up to its deadline; each later stage uses a share of its time.
    now = T0 + (plan.drain_deadline - T0) * spent[0]
    plan.finish_stage("drain", now, drained=0, abandoned=0)
    for name, share in zip(("accounts", "ai_pool", "router"), spent[1:], strict=True):
        assert plan.stage == name
        deadline = plan.stage_deadline(now)
        assert now <= deadline <= plan.deadline
        if name == "router":
            assert deadline == plan.deadline
        else:  # within the rounding of epoch-sized floats
            assert deadline - now == pytest.approx((plan.deadline - now) / 2, abs=1e-6)
        now += (deadline - now) * share
        plan.finish_stage(name, now, drained=0, abandoned=0)
    report = plan.report(now)
    assert [s.name for s in report.stages] == ["drain", "accounts", "ai_pool", "router"]
    assert sum(s.seconds for s in report.stages) == pytest.approx(report.total_s)
    assert report.total_s <= timeout_s + 1e-6  # T0 + x - T0 rounds

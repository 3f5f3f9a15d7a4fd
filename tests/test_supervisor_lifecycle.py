"""The supervisor without Thespian: a child's lifecycle through the core, and the teardown
and the stats fan-out driven through fake collaborators and a hand-moved clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from actors.config import EngineConfig
from actors.cores.lifecycle import LifecycleError
from actors.runtime.wiring import (
    ActorReport,
    Drain,
    DrainDone,
    ShutdownDone,
    StatsQuery,
    SupervisorStats,
)
from actors.supervisor.core import Child, SupervisorCore
from actors.supervisor.lifecycle import ChildState
from actors.supervisor.stats import STATS_REASK_S, STATS_TIMEOUT_S, StatsFanout
from actors.supervisor.teardown import Teardown
from protocols import ShutdownRequest, StageReport

T0 = 1_700_000_000.0


def supervisor(**overrides: Any) -> SupervisorCore:
    args: dict[str, Any] = {"max_instances": 3, "restart_jitter": 0.0, "restart_max_restarts": 1}
    args.update(overrides)
    return SupervisorCore(EngineConfig(**args), seed=0)


def up(core: SupervisorCore, role: str, name: str | None = None) -> Child:
    child = core.add_child(role, name or role)
    core.child_up(child, pid=None, now=T0)
    return child


# -- a child's lifecycle through the core ---------------------------------------------------


def test_a_crash_reported_for_a_stopped_child_raises_and_counts_nothing() -> None:
    core = supervisor()
    child = up(core, "account", "a-0")
    assert core.stop_child(child)  # its actor runs: the caller must ask it to exit
    core.child_stopped(child)

    with pytest.raises(LifecycleError, match="child: can't handle 'crashed' when state=stopped"):
        core.child_crashed(child, T0 + 1)

    assert child.state is ChildState.STOPPED
    assert core.counters() == {}  # the restart policy never saw the bogus crash


def test_a_down_child_is_stopped_without_waiting_for_an_exit() -> None:
    core = supervisor()
    child = up(core, "account", "a-0")
    core.child_crashed(child, T0 + 1)

    assert not core.stop_child(child)  # nothing runs: no exit request, no exit to await
    assert child.state is ChildState.STOPPED
    with pytest.raises(LifecycleError, match="can't handle 'respawned' when state=stopped"):
        core.respawn(child)  # a restart timer that fires after the stop must check first


def test_a_child_cannot_be_stopped_twice_or_reported_stopped_unasked() -> None:
    core = supervisor()
    child = up(core, "router")
    with pytest.raises(LifecycleError, match="can't handle 'exited' when state=up"):
        core.child_stopped(child)

    core.stop_child(child)

    with pytest.raises(LifecycleError, match="can't handle 'stop' when state=stopping"):
        core.stop_child(child)


def test_only_a_down_child_is_respawned() -> None:
    core = supervisor()
    child = up(core, "ai_pool")

    with pytest.raises(LifecycleError, match="can't handle 'respawned' when state=up"):
        core.respawn(child)
    assert child.generation == 1


def test_a_child_that_crashes_before_it_is_up_is_restarted_like_any_other() -> None:
    core = supervisor(restart_max_restarts=1)
    child = core.add_child("account", "a-0")

    assert not core.child_crashed(child, T0).give_up
    assert child.state is ChildState.DOWN
    core.respawn(child)
    decision = core.child_crashed(child, T0 + 0.5)  # again, still starting

    assert decision.give_up
    assert child.state is ChildState.FAILED


def test_a_child_that_cannot_configure_itself_is_forgotten() -> None:
    core = supervisor()
    child = core.add_child("account", "a-0")

    core.child_refused(child)

    assert child.state is ChildState.STOPPING
    assert ("account", "a-0") not in core.children


def test_the_child_table_carries_plain_strings_across_processes() -> None:
    core = supervisor()
    up(core, "router")

    [(_role, _name, _generation, state, _restarts)] = core.child_table()

    assert state == "up"
    assert type(state) is str  # the allowlisted unpickler knows no enum class


# -- the teardown with fake collaborators ---------------------------------------------------


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Host:
    """What the supervisor actor does for the teardown, recorded."""

    core: SupervisorCore
    router: Any = "router@1"
    sent: list[tuple[Any, Any]] = field(default_factory=list)
    timers: list[tuple[float, Any]] = field(default_factory=list)
    exit_requests: list[str] = field(default_factory=list)

    def send(self, address: Any, msg: Any) -> None:
        self.sent.append((address, msg))

    def wake_at(self, at: float, payload: Any) -> None:
        self.timers.append((at, payload))

    def stop_child(self, child: Child) -> None:
        if self.core.stop_child(child):
            self.exit_requests.append(child.name)

    def live_router(self) -> Any:
        return self.router if self.core.is_up("router") else None

    def teardown(self, clock: Clock) -> Teardown:
        return Teardown(
            self.core,
            send=self.send,
            wake_at=self.wake_at,
            stop_child=self.stop_child,
            live_router=self.live_router,
            clock=clock,
        )


def engine_core() -> SupervisorCore:
    core = supervisor()
    up(core, "ai_pool")
    up(core, "router")
    for n in range(2):
        up(core, "account", f"a-{n}")
    return core


def exit_all(core: SupervisorCore, role: str) -> None:
    for child in core.children.values():
        if child.role == role:
            core.child_stopped(child)


def test_the_teardown_drains_then_stops_accounts_the_pool_and_the_router_in_order() -> None:
    core, clock = engine_core(), Clock()
    host = Host(core)
    teardown = host.teardown(clock)

    teardown.start(ShutdownRequest(timeout_s=10.0, drain_timeout_s=4.0), "facade")

    assert core.shutting_down
    assert host.sent == [("router@1", Drain(deadline=T0 + 4.0))]
    assert host.timers == [(T0 + 4.5, ("stage", "drain"))]
    assert host.exit_requests == []  # nothing is stopped before the drain ends

    clock.now = T0 + 1.0
    teardown.drain_done(DrainDone(drained=3, abandoned=("m9",), outcomes=()), "router@1")
    assert host.exit_requests == ["a-0", "a-1"]
    assert host.timers[-1] == (T0 + 1.0 + 4.5, ("stage", "accounts"))  # half of what is left

    for role, expected in (("account", ["ai_pool"]), ("ai_pool", ["router"])):
        exit_all(core, role)
        host.exit_requests.clear()
        clock.now += 0.25
        teardown.advance(clock.now)
        assert host.exit_requests == expected
    exit_all(core, "router")
    clock.now += 0.25
    teardown.advance(clock.now)

    address, done = host.sent[-1]
    assert address == "facade"
    assert isinstance(done, ShutdownDone)
    assert done.report.stages == (
        StageReport(name="drain", seconds=1.0, drained=3, abandoned=1),
        StageReport(name="accounts", seconds=0.25),
        StageReport(name="ai_pool", seconds=0.25),
        StageReport(name="router", seconds=0.25),
    )
    assert done.report.abandoned == ("m9",)
    assert {c.state for c in core.children.values()} == {ChildState.STOPPED}
    assert teardown.plan is None


def test_a_stage_whose_children_do_not_exit_in_time_is_logged_and_passed() -> None:
    core, clock = engine_core(), Clock()
    host = Host(core)
    teardown = host.teardown(clock)
    teardown.start(ShutdownRequest(timeout_s=10.0, drain_timeout_s=1.0), "facade")
    teardown.drain_done(DrainDone(drained=0, abandoned=(), outcomes=()), "router@1")
    [(at, payload)] = [t for t in host.timers if t[1] == ("stage", "accounts")]

    clock.now = at
    teardown.advance(clock.now, timed_out="drain")  # a stale timer changes nothing
    assert host.exit_requests == ["a-0", "a-1"]
    teardown.advance(clock.now, timed_out=payload[1])

    assert host.exit_requests == ["a-0", "a-1", "ai_pool"]
    assert teardown.plan is not None
    assert teardown.plan.stage == "ai_pool"
    # The late exit of an account stopped in the timed-out stage is still recorded.
    exit_all(core, "account")
    assert {c.state for c in core.accounts()} == {ChildState.STOPPED}


def test_without_a_live_router_the_drain_is_skipped_and_a_down_child_needs_no_exit() -> None:
    core, clock = supervisor(), Clock()
    router = up(core, "router")
    core.child_crashed(router, T0)  # down: restart pending
    account = up(core, "account", "a-0")
    core.child_crashed(account, T0)
    host = Host(core)
    teardown = host.teardown(clock)

    teardown.start(ShutdownRequest(timeout_s=5.0, drain_timeout_s=1.0), "facade")

    assert host.exit_requests == []  # nothing ran: every stage ended at once
    [(address, done)] = host.sent
    assert address == "facade"
    assert [s.name for s in done.report.stages] == ["drain", "accounts", "ai_pool", "router"]
    assert (router.state, account.state) == (ChildState.STOPPED, ChildState.STOPPED)


# -- the stats fan-out ----------------------------------------------------------------------


def report(token: int, role: str) -> ActorReport:
    return ActorReport(
        token=token, role=role, name=role, generation=1, pid=None, depth=0, capacity=1
    )


def fanout(core: SupervisorCore, host: Host, clock: Clock) -> StatsFanout:
    tokens = iter(range(1, 100))
    return StatsFanout(
        core,
        addresses={(c.role, c.name): f"{c.name}@1" for c in core.children.values()},
        send=host.send,
        wake_at=host.wake_at,
        next_token=lambda: next(tokens),
        pid=None,
        depth=lambda: 2,
        process_counters=lambda: {"refused_frames": 0},
        clock=clock,
        monotonic=clock,
    )


def test_stats_are_answered_once_every_live_child_reported() -> None:
    core, clock = supervisor(), Clock()
    up(core, "router")
    up(core, "ai_pool")
    core.add_child("account", "a-0")  # starting: not asked
    host = Host(core)
    stats = fanout(core, host, clock)

    stats.query(StatsQuery(token=0), "facade")
    assert host.sent == [("router@1", StatsQuery(token=1)), ("ai_pool@1", StatsQuery(token=1))]
    assert host.timers == [(T0 + STATS_TIMEOUT_S, ("stats", 1))]
    stats.report(report(1, "router"), "router@1")
    assert len(host.sent) == 2  # one child has not answered yet
    stats.report(report(1, "ai_pool"), "ai_pool@1")

    address, answer = host.sent[-1]
    assert address == "facade"
    assert isinstance(answer, SupervisorStats)
    assert [r.role for r in answer.reports] == ["supervisor", "router", "ai_pool"]
    assert answer.reports[0].depth == 2
    assert answer.children == (
        ("router", "router", 1, "up", 0),
        ("ai_pool", "ai_pool", 1, "up", 0),
        ("account", "a-0", 1, "starting", 0),
    )
    stats.finish(1)  # the timer fires later: already answered
    assert len(host.sent) == 3


def test_stats_missing_a_child_are_answered_when_the_timer_fires() -> None:
    core, clock = supervisor(), Clock()
    up(core, "router")
    host = Host(core)
    stats = fanout(core, host, clock)
    stats.query(StatsQuery(token=0), "facade")

    stats.finish(1)

    _, answer = host.sent[-1]
    assert [r.role for r in answer.reports] == ["supervisor"]
    stats.report(report(1, "router"), "router@1")  # too late: dropped
    assert len(host.sent) == 2


def test_a_child_that_left_a_question_unanswered_is_not_asked_again_until_it_answers() -> None:
    """A frozen member's account is asked once, not at every ``stats()``: each question to
    a peer that does not read stays a pending transmit in the supervisor."""
    core, clock = supervisor(), Clock()
    up(core, "router")
    up(core, "ai_pool")
    host = Host(core)
    stats = fanout(core, host, clock)
    stats.query(StatsQuery(token=0), "facade")  # token 1: both asked
    stats.report(report(1, "router"), "router@1")
    stats.finish(1)  # the pool never answered
    host.sent.clear()

    stats.query(StatsQuery(token=0), "facade")  # token 2: only the router is asked
    assert host.sent == [("router@1", StatsQuery(token=2))]
    stats.report(report(2, "router"), "router@1")  # all asked answered: no 1 s wait
    _, answer = host.sent[-1]
    assert [r.role for r in answer.reports] == ["supervisor", "router"]
    counters = answer.reports[0].counters
    assert (counters["stats_unanswered"], counters["stats_not_asked"]) == (1, 1)

    clock.now += STATS_REASK_S - 0.001  # just before the re-ask: still not asked
    host.sent.clear()
    stats.query(StatsQuery(token=0), "facade")
    assert [to for to, _ in host.sent[:1]] == ["router@1"]
    assert ("ai_pool@1", StatsQuery(token=3)) not in host.sent
    clock.now += 0.001  # at the bound: asked again
    host.sent.clear()
    stats.query(StatsQuery(token=0), "facade")
    assert ("ai_pool@1", StatsQuery(token=4)) in host.sent
    stats.report(report(1, "ai_pool"), "ai_pool@1")  # a late answer: it reads again
    host.sent.clear()
    stats.query(StatsQuery(token=0), "facade")
    assert ("ai_pool@1", StatsQuery(token=5)) in host.sent

"""Tests for lifecycles as data (actors.cores.lifecycle) and the engine's tables of them."""

from __future__ import annotations

import enum

import pytest

from actors.cores.lifecycle import Lifecycle, LifecycleError
from actors.engine.facade import Engine
from actors.engine.state import ENGINE, EngineState
from actors.errors import EngineError
from actors.router.account_state import ACCOUNT, AccountState
from actors.supervisor.lifecycle import CHILD, ChildState


class Door(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"
    LOCKED = "locked"


class Other(enum.Enum):
    ELSEWHERE = "elsewhere"


DOOR = Lifecycle(
    "door",
    Door,
    {
        (Door.OPEN, "close"): Door.CLOSED,
        (Door.CLOSED, "open"): Door.OPEN,
        (Door.CLOSED, "lock"): Door.LOCKED,
        (Door.LOCKED, "unlock"): Door.CLOSED,
    },
)


# -- the machine ----------------------------------------------------------------------------


def test_a_listed_event_moves_to_the_listed_state() -> None:
    assert DOOR.next(Door.OPEN, "close") is Door.CLOSED
    assert DOOR.next(Door.CLOSED, "lock") is Door.LOCKED


def test_an_unlisted_event_raises_naming_the_lifecycle_the_event_and_the_state() -> None:
    with pytest.raises(LifecycleError) as caught:
        DOOR.next(Door.LOCKED, "open")

    assert str(caught.value) == "door: can't handle 'open' when state=locked"
    assert (caught.value.lifecycle, caught.value.event, caught.value.state) == (
        "door",
        "open",
        Door.LOCKED,
    )
    assert isinstance(caught.value, RuntimeError)  # a bug in the caller, not bad input


def test_an_event_the_table_never_heard_of_is_refused_in_every_state() -> None:
    for state in Door:
        assert not DOOR.allows(state, "kick")
        with pytest.raises(LifecycleError, match="can't handle 'kick'"):
            DOOR.next(state, "kick")


def test_allows_answers_exactly_what_next_would_do() -> None:
    for state in Door:
        for event in DOOR.events():
            if DOOR.allows(state, event):
                DOOR.next(state, event)
            else:
                with pytest.raises(LifecycleError):
                    DOOR.next(state, event)


def test_a_table_naming_a_state_of_another_enum_is_refused() -> None:
    with pytest.raises(ValueError, match="door: the table names a state outside Door"):
        Lifecycle("door", Door, {(Door.OPEN, "leave"): Other.ELSEWHERE})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="outside Door"):
        Lifecycle("door", Door, {(Other.ELSEWHERE, "come"): Door.OPEN})  # type: ignore[dict-item]


def test_the_table_lists_its_events_rows_and_reachable_states() -> None:
    assert DOOR.events() == {"close", "open", "lock", "unlock"}
    assert (Door.LOCKED, "unlock", Door.CLOSED) in DOOR.table()
    assert len(list(DOOR.table())) == 4
    assert DOOR.reachable(Door.OPEN) == set(Door)


def test_changing_the_mapping_given_to_a_lifecycle_does_not_change_its_table() -> None:
    table = {(Door.OPEN, "close"): Door.CLOSED}
    door = Lifecycle("door", Door, table)

    table[(Door.CLOSED, "open")] = Door.OPEN

    assert not door.allows(Door.CLOSED, "open")


# -- a supervised child ---------------------------------------------------------------------


def test_a_child_can_reach_every_state_from_starting_and_stopped_is_final() -> None:
    assert CHILD.reachable(ChildState.STARTING) == set(ChildState)
    assert CHILD.reachable(ChildState.STOPPED) == {ChildState.STOPPED}
    # Failed is final but for being stopped.
    assert CHILD.reachable(ChildState.FAILED) == {ChildState.FAILED, ChildState.STOPPED}


def test_a_crash_reported_for_a_stopped_child_raises_naming_the_event_and_the_state() -> None:
    with pytest.raises(LifecycleError, match="child: can't handle 'crashed' when state=stopped"):
        CHILD.next(ChildState.STOPPED, "crashed")


def test_a_child_is_stopped_at_once_when_no_actor_of_it_runs() -> None:
    for state in (ChildState.DOWN, ChildState.FAILED):
        assert CHILD.next(state, "stop") is ChildState.STOPPED
    for state in (ChildState.STARTING, ChildState.UP):
        assert CHILD.next(state, "stop") is ChildState.STOPPING  # its exit is awaited


def test_child_states_print_as_the_strings_stats_and_healthz_report() -> None:
    assert [str(s) for s in ChildState] == [
        "starting",
        "up",
        "down",
        "failed",
        "stopping",
        "stopped",
    ]
    assert f"{ChildState.UP}" == "up"
    assert ChildState.DOWN == "down"


# -- the engine facade ----------------------------------------------------------------------


def test_an_engine_runs_once_and_stops_once() -> None:
    state = EngineState.NEW
    for event, expected in (
        ("start", EngineState.RUNNING),
        ("shutdown", EngineState.STOPPING),
        ("stopped", EngineState.STOPPED),
    ):
        state = ENGINE.next(state, event)
        assert state is expected

    assert ENGINE.reachable(EngineState.STOPPED) == {EngineState.STOPPED}
    with pytest.raises(LifecycleError, match="engine: can't handle 'start' when state=stopped"):
        ENGINE.next(state, "start")


def test_an_engine_shut_down_before_it_started_cannot_be_started() -> None:
    engine = Engine(base="simpleSystemBase")
    report = engine.shutdown()  # never started: no actor system is made

    assert report.stages == ()
    assert engine.shutdown() is report  # a second shutdown answers with the first report
    with pytest.raises(EngineError, match=r"^can't start an engine that is stopped$"):
        engine.start()
    with pytest.raises(EngineError, match=r"^the engine is stopped, not running$"):
        engine.ask_child("router", "router", object())


# -- an account, as the router sees it ------------------------------------------------------


def test_an_account_news_the_router_can_get_twice_changes_nothing() -> None:
    for state in (AccountState.UP, AccountState.DOWN, AccountState.FAILED):
        assert ACCOUNT.next(state, str(state)) is state


def test_a_failed_account_is_never_restarted_only_removed() -> None:
    for event in ("up", "down"):
        with pytest.raises(
            LifecycleError, match=f"account: can't handle '{event}' when state=failed"
        ):
            ACCOUNT.next(AccountState.FAILED, event)
    assert ACCOUNT.next(AccountState.FAILED, "removed") is AccountState.UNKNOWN


def test_every_account_state_can_be_removed_and_added_again() -> None:
    for state in AccountState:
        assert ACCOUNT.next(state, "removed") is AccountState.UNKNOWN
    assert ACCOUNT.next(AccountState.UNKNOWN, "up") is AccountState.UP

"""Tests for the bounded account status-event subscriptions (actors.engine.listeners)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger

from actors.engine.listeners import Listeners, Subscription
from actors.errors import EngineError, ListenerLimitError
from protocols import AccountEvent

SEED_LIMIT = 50


def event(account_id: str = "a-1", kind: str = "connected") -> AccountEvent:
    return AccountEvent(account_id=account_id, kind=kind, at=1_700_000_000.0)


class Recorder:
    """A callback that remembers what it was called with, under a name."""

    def __init__(self, name: str, log: list[tuple[str, AccountEvent]]) -> None:
        self.name = name
        self.log = log

    def __call__(self, ev: AccountEvent) -> None:
        self.log.append((self.name, ev))


@pytest.fixture
def records() -> Iterator[list[Any]]:
    """Loguru records emitted during the test."""
    captured: list[Any] = []
    sink_id = logger.add(lambda m: captured.append(m.record), level="DEBUG")
    yield captured
    logger.remove(sink_id)


def fill(listeners: Listeners, account_id: str, n: int) -> list[Subscription]:
    return [listeners.subscribe(account_id, lambda ev: None) for _ in range(n)]


# -- the limit ------------------------------------------------------------------------


def test_exactly_the_seed_limit_of_subscriptions_is_allowed() -> None:
    listeners = Listeners(max_per_account=SEED_LIMIT)
    subs = fill(listeners, "a-1", SEED_LIMIT)
    assert all(sub.active for sub in subs)
    assert listeners.count("a-1") == listeners.total == SEED_LIMIT


def test_one_past_the_limit_is_refused_naming_the_account_and_the_limit() -> None:
    listeners = Listeners(max_per_account=SEED_LIMIT)
    fill(listeners, "a-1", SEED_LIMIT)
    with pytest.raises(
        ListenerLimitError, match=r"^cannot subscribe to account 'a-1': listener limit \(50\) "
    ):
        listeners.subscribe("a-1", lambda ev: None)
    assert listeners.count("a-1") == SEED_LIMIT
    assert listeners.stats()["refused"] == 1


def test_the_limit_error_is_an_engine_error() -> None:
    assert issubclass(ListenerLimitError, EngineError)


def test_the_limit_is_per_account() -> None:
    listeners = Listeners(max_per_account=2)
    fill(listeners, "a-1", 2)
    fill(listeners, "a-2", 2)
    assert listeners.total == 4


def test_cancel_frees_a_slot_at_the_limit() -> None:
    listeners = Listeners(max_per_account=2)
    first, _ = fill(listeners, "a-1", 2)
    assert first.cancel() is True
    assert first.active is False
    assert listeners.count("a-1") == 1
    listeners.subscribe("a-1", lambda ev: None)
    assert listeners.count("a-1") == 2


def test_cancelling_twice_reports_false_and_frees_nothing_more() -> None:
    listeners = Listeners(max_per_account=2)
    first, _ = fill(listeners, "a-1", 2)
    first.cancel()
    assert first.cancel() is False
    assert listeners.count("a-1") == 1


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "50"])
def test_the_constructor_names_a_bad_limit(bad: object) -> None:
    with pytest.raises(ValueError, match="max_per_account must be an int >= 1"):
        Listeners(max_per_account=bad)  # type: ignore[arg-type]


def test_a_callback_that_is_not_callable_is_refused() -> None:
    listeners = Listeners(max_per_account=2)
    with pytest.raises(TypeError, match="callback must be callable, got str"):
        listeners.subscribe("a-1", "print")  # type: ignore[arg-type]
    assert listeners.total == 0


# -- dispatch -------------------------------------------------------------------------


def test_dispatch_calls_the_accounts_callbacks_in_subscription_order() -> None:
    listeners = Listeners(max_per_account=5)
    log: list[tuple[str, AccountEvent]] = []
    for name in ("first", "second", "third"):
        listeners.subscribe("a-1", Recorder(name, log))
    listeners.subscribe("a-2", Recorder("other account", log))
    assert listeners.dispatch(event("a-1")) == 3
    assert log == [("first", event()), ("second", event()), ("third", event())]


def test_dispatch_to_an_account_without_subscriptions_calls_nothing() -> None:
    assert Listeners(max_per_account=5).dispatch(event("nobody")) == 0


def test_a_raising_callback_is_logged_and_counted_and_the_others_still_run(
    records: list[Any],
) -> None:
    listeners = Listeners(max_per_account=5)
    log: list[tuple[str, AccountEvent]] = []

    def broken(ev: AccountEvent) -> None:
        raise RuntimeError("listener bug")

    listeners.subscribe("a-1", Recorder("before", log))
    listeners.subscribe("a-1", broken)
    listeners.subscribe("a-1", Recorder("after", log))
    assert listeners.dispatch(event("a-1", "failed")) == 3
    assert [name for name, _ in log] == ["before", "after"]
    assert listeners.callback_errors == 1
    [record] = [r for r in records if r["level"].name == "ERROR"]
    assert record["extra"] == {"account": "a-1", "event": "failed"}
    assert record["exception"] is not None
    assert isinstance(record["exception"].value, RuntimeError)


def test_a_callback_may_cancel_its_own_subscription_during_dispatch() -> None:
    listeners = Listeners(max_per_account=5)
    calls: list[AccountEvent] = []
    holder: list[Subscription] = []

    def once(ev: AccountEvent) -> None:
        calls.append(ev)
        holder[0].cancel()

    holder.append(listeners.subscribe("a-1", once))
    listeners.dispatch(event())
    listeners.dispatch(event())
    assert len(calls) == 1
    assert listeners.count("a-1") == 0


def test_a_subscription_cancelled_by_an_earlier_callback_is_skipped() -> None:
    listeners = Listeners(max_per_account=5)
    log: list[tuple[str, AccountEvent]] = []
    victims: list[Subscription] = []
    listeners.subscribe("a-1", lambda ev: victims[0].cancel())
    victims.append(listeners.subscribe("a-1", Recorder("victim", log)))
    assert listeners.dispatch(event()) == 1
    assert log == []


def test_a_subscription_added_during_dispatch_waits_for_the_next_event() -> None:
    listeners = Listeners(max_per_account=5)
    log: list[tuple[str, AccountEvent]] = []

    def subscribe_another(ev: AccountEvent) -> None:
        if listeners.count("a-1") < 2:
            listeners.subscribe("a-1", Recorder("newcomer", log))

    listeners.subscribe("a-1", subscribe_another)
    assert listeners.dispatch(event()) == 1
    assert log == []
    assert listeners.dispatch(event(kind="disconnected")) == 2
    assert log == [("newcomer", event(kind="disconnected"))]


# -- closing --------------------------------------------------------------------------


def test_close_account_ends_every_subscription_of_that_account_only() -> None:
    listeners = Listeners(max_per_account=5)
    log: list[tuple[str, AccountEvent]] = []
    removed = [listeners.subscribe("a-1", Recorder("a-1", log)) for _ in range(3)]
    kept = listeners.subscribe("a-2", Recorder("a-2", log))
    assert listeners.close_account("a-1") == 3
    assert not any(sub.active for sub in removed)
    assert kept.active
    assert listeners.dispatch(event("a-1")) == 0
    assert listeners.dispatch(event("a-2")) == 1
    assert log == [("a-2", event("a-2"))]
    assert listeners.count("a-1") == 0
    assert listeners.total == 1
    assert listeners.close_account("a-1") == 0


def test_cancel_after_close_account_is_a_harmless_no_op() -> None:
    listeners = Listeners(max_per_account=2)
    sub = listeners.subscribe("a-1", lambda ev: None)
    listeners.close_account("a-1")
    assert sub.cancel() is False
    assert listeners.total == 0


def test_a_closed_account_can_be_subscribed_to_again_with_a_full_allowance() -> None:
    listeners = Listeners(max_per_account=2)
    fill(listeners, "a-1", 2)
    listeners.close_account("a-1")
    assert len(fill(listeners, "a-1", 2)) == 2


def test_close_all_ends_every_subscription_of_every_account() -> None:
    listeners = Listeners(max_per_account=SEED_LIMIT)
    subs = [*fill(listeners, "a-1", SEED_LIMIT), *fill(listeners, "a-2", 3)]
    assert listeners.close_all() == SEED_LIMIT + 3
    assert not any(sub.active for sub in subs)
    assert listeners.total == 0
    assert listeners.dispatch(event("a-1")) == listeners.dispatch(event("a-2")) == 0
    assert listeners.stats()["accounts"] == 0
    assert listeners.close_all() == 0


def test_close_all_from_inside_a_callback_stops_the_rest_of_that_dispatch() -> None:
    listeners = Listeners(max_per_account=5)
    log: list[tuple[str, AccountEvent]] = []
    listeners.subscribe("a-1", lambda ev: listeners.close_all())
    listeners.subscribe("a-1", Recorder("after shutdown", log))
    assert listeners.dispatch(event()) == 1
    assert log == []


def test_stats_report_sizes_and_counters() -> None:
    listeners = Listeners(max_per_account=3)
    fill(listeners, "a-1", 2)
    listeners.subscribe("a-2", lambda ev: 1 / 0)
    listeners.dispatch(event("a-1"))
    logger.disable("actors.engine.listeners")
    try:
        listeners.dispatch(event("a-2"))
    finally:
        logger.enable("actors.engine.listeners")
    assert listeners.stats() == {
        "subscriptions": 3,
        "accounts": 2,
        "max_per_account": 3,
        "dispatched": 3,
        "callback_errors": 1,
        "refused": 0,
    }
    assert listeners.max_per_account == 3
    assert repr(listeners.subscribe("a-2", lambda ev: None)) == (
        "<Subscription account='a-2' active>"
    )

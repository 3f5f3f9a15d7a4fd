"""The lease core (``actors.cores.lease``): an injected clock on each side, no clock sync."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

import pytest
from thespian.actors import ActorSystem

from actors.account.actor import AccountActor
from actors.config import EngineConfig
from actors.cores.lease import LEASE_GRACE_S, LEASE_VALID_FOR_S, Lease, LeaseDesk
from actors.runtime.wiring import Configure, LeaseAsk, LeaseGrant, StatsQuery
from protocols import AccountSpec, DeliveryBatch, OutboundReply, SendBatch


def _lease(now: float = 100.0) -> Lease:
    return Lease(valid_for_s=2.0, grace_s=4.0, now=now)


def test_no_lease_until_a_grant_answers_an_ask() -> None:
    lease = _lease()
    assert not lease.may_act(100.0)
    ask = lease.asked(100.0)
    assert not lease.may_act(100.1)
    assert lease.granted(ask, 100.2)
    assert lease.may_act(101.99)
    assert not lease.may_act(102.0)  # 2 s from the ask, not from the grant's arrival


def test_a_grant_that_arrives_late_counts_from_its_ask_so_a_frozen_holder_is_not_licensed() -> None:
    lease = _lease()
    lease.granted(lease.asked(100.0), 100.0)
    ask = lease.asked(100.5)  # then frozen 5 s: the grant waited in its socket
    assert not lease.granted(ask, 105.5)
    assert not lease.may_act(105.5)
    assert lease.expired_for(105.5) == pytest.approx(3.0)


def test_answers_to_unknown_or_superseded_asks_extend_nothing() -> None:
    lease = _lease()
    first = lease.asked(100.0)
    second = lease.asked(100.5)
    assert lease.granted(second, 100.6)
    assert lease.may_act(102.4)
    assert not lease.may_act(102.5)
    assert lease.granted(first, 100.7)  # older than an answered ask: forgotten
    assert not lease.may_act(102.5)
    assert lease.granted(999, 100.8)  # never asked: nothing extended, the lease still holds
    assert not lease.may_act(102.5)


def test_asks_remembered_are_bounded() -> None:
    lease = _lease()
    asks = [lease.asked(100.0 + i * 0.01) for i in range(100)]
    assert not lease.granted(asks[0], 101.0)  # long forgotten
    assert lease.granted(asks[-1], 101.0)


def test_the_holder_gives_up_after_the_grace_with_or_without_ever_holding_a_lease() -> None:
    lease = _lease(now=100.0)
    assert not lease.fenced_out(104.0)
    assert lease.fenced_out(104.1)  # never granted: the grace counts from its start
    lease = _lease(now=100.0)
    lease.granted(lease.asked(101.0), 101.0)  # holds until 103
    assert lease.expired_for(102.0) == 0.0
    assert not lease.fenced_out(107.0)
    assert lease.fenced_out(107.01)
    lease.granted(lease.asked(107.5), 107.6)  # renewed in time: back in business
    assert lease.may_act(107.6)
    assert not lease.fenced_out(107.6)


def test_the_desk_knows_when_a_generations_lease_surely_ended() -> None:
    desk = LeaseDesk(valid_for_s=2.0)
    assert desk.safe_after("a", 1) == -math.inf  # never granted: safe at once
    desk.grant("a", 1, 50.0)
    desk.grant("a", 1, 50.5)
    assert desk.safe_after("a", 1) == 52.5
    desk.grant("a", 2, 60.0)  # a new generation replaces the old one's entry
    assert desk.safe_after("a", 1) == -math.inf
    assert desk.safe_after("a", 2) == 62.0
    assert len(desk) == 1
    desk.forget("a")
    assert len(desk) == 0


def test_holder_and_grantor_agree_without_a_shared_clock() -> None:
    """Whatever the offset between the clocks and the delays, the holder's lease ends by
    the grantor's ``safe_after`` (both measured as real time)."""
    for offset in (-1000.0, 0.0, 3.7):
        for up, down in ((0.0, 0.0), (0.3, 1.2), (1.9, 0.1)):
            lease, desk = _lease(now=offset), LeaseDesk(valid_for_s=2.0)
            real_ask = 10.0
            ask = lease.asked(real_ask + offset)
            desk.grant("a", 1, real_ask + up)  # the ask took ``up`` to arrive
            lease.granted(ask, real_ask + up + down + offset)
            last_real = desk.safe_after("a", 1)
            assert not lease.may_act(last_real + offset)


def test_the_engine_figures_leave_room_for_renewals() -> None:
    assert LEASE_VALID_FOR_S == 2.0
    assert LEASE_GRACE_S == 2 * LEASE_VALID_FOR_S


def test_bad_figures_are_refused() -> None:
    with pytest.raises(ValueError, match="valid_for_s"):
        Lease(valid_for_s=-1.0, grace_s=1.0, now=0.0)
    with pytest.raises(ValueError, match="valid_for_s"):
        LeaseDesk(valid_for_s=math.nan)


# --- the account actor holding a lease (simpleSystemBase: one process, real timers) ----


def _reply(n: int) -> OutboundReply:
    return OutboundReply(
        account_id="a0",
        customer_id="+15550001111",
        message_id=f"m{n}",
        text="hi",
        deadline=time.time() + 60,
    )


def _next(system: Any, kind: type, timeout_s: float = 5.0) -> Any:
    """The next message of ``kind`` the test (the account's supervisor and router) gets."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = system.listen(timedelta(seconds=0.2))
        if isinstance(msg, kind):
            return msg
    raise AssertionError(f"no {kind.__name__} within {timeout_s} s")


def test_an_account_sends_only_under_a_lease_and_exits_after_the_grace() -> None:
    system = ActorSystem("simpleSystemBase", transientUnique=True)
    try:
        account = system.createActor(AccountActor)
        system.tell(
            account,
            Configure(
                role="account",
                name="a0",
                generation=1,
                config=EngineConfig(durability="off"),
                base="simpleSystemBase",
                seed=1,
                account=AccountSpec(account_id="a0"),
                lease_s=0.3,  # grace 0.6 s
            ),
        )
        first = _next(system, LeaseAsk)
        assert (first.account_id, first.generation) == ("a0", 1)
        # No lease yet: the reply is kept, only the batch is acknowledged.
        system.tell(account, SendBatch(replies=(_reply(1),), generation=1, seq=1))
        ack = _next(system, DeliveryBatch)
        assert (ack.reports, ack.ack) == ((), 1)
        system.tell(account, LeaseGrant(ask=first.ask))  # now it sends what it kept
        sent = _next(system, DeliveryBatch)
        assert [(r.message_id, r.ok) for r in sent.reports] == [("m1", True)]
        # Granted no more: at its next ask (0.5 s) the lease (0.3 s) has run out; a reply
        # given now is kept, unsent; after the grace the actor exits on its own.
        _next(system, LeaseAsk)
        system.tell(account, SendBatch(replies=(_reply(2),), generation=1, seq=2))
        ack = _next(system, DeliveryBatch)
        assert (ack.reports, ack.ack) == ((), 2)
        report = system.ask(account, StatsQuery(token=1), timedelta(seconds=2))
        assert (report.counters["lease_valid"], report.counters["lease_held_replies"]) == (0, 1)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if system.listen(timedelta(seconds=1.0)) is None:
                break  # nothing for 1 s: no more asks (it asks every 0.5 s while alive)
        else:
            raise AssertionError("the account kept asking for a lease")
        assert system.ask(account, StatsQuery(token=2), timedelta(seconds=0.5)) is None
    finally:
        system.shutdown()

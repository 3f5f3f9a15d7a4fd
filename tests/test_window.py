"""Adaptive batching: the pure batch window and the router's links built on it."""

from __future__ import annotations

import pytest

from actors.cores.window import BatchWindow
from actors.router.effects import Send
from actors.router.links import HOPS, Links
from protocols import AIBatch, AIRequest, CancelBatch, OutboundReply, SendBatch

GEN = 3
T0 = 1_700_000_000.0


def _request(mid: str) -> AIRequest:
    return AIRequest(
        message_id=mid, account_id="acct-1", customer_id="+15550001", text="hi", deadline=T0
    )


def _reply(mid: str, account: str = "acct-1") -> OutboundReply:
    return OutboundReply(
        account_id=account, customer_id="+15550001", message_id=mid, text="re", deadline=T0
    )


# -- BatchWindow ------------------------------------------------------------------------------


def test_an_item_offered_to_an_idle_peer_leaves_at_once() -> None:
    window: BatchWindow[str] = BatchWindow(2)
    window.offer(["a"])
    assert window.take() == (1, ["a"])


def test_items_wait_while_the_window_is_full_and_leave_together_at_the_ack() -> None:
    window: BatchWindow[str] = BatchWindow(2)
    window.offer(["a"])
    assert window.take() == (1, ["a"])
    window.offer(["b"])
    assert window.take() == (2, ["b"])
    window.offer(["c"])
    window.offer(["d", "e"])
    assert window.take() is None  # two unacknowledged: the window is full
    assert (window.in_flight, window.waiting) == (2, 3)
    assert window.ack(1)
    assert window.take() == (3, ["c", "d", "e"])  # one batch, in the order offered
    assert (window.batches, window.items) == (3, 5)


def test_a_window_of_one_is_stop_and_wait() -> None:
    window: BatchWindow[int] = BatchWindow(1)
    window.offer([1])
    assert window.take() == (1, [1])
    window.offer([2])
    assert window.take() is None
    window.ack(1)
    assert window.take() == (2, [2])


def test_acks_are_cumulative_and_old_repeated_or_foreign_acks_free_nothing() -> None:
    window: BatchWindow[int] = BatchWindow(3)
    for i in range(3):
        window.offer([i])
        assert window.take() is not None
    assert window.in_flight == 3
    assert window.ack(2)  # acknowledges 1 and 2
    assert window.in_flight == 1
    assert not window.ack(2)  # repeated
    assert not window.ack(1)  # old
    assert not window.ack(9)  # never sent: another router's numbering
    assert window.in_flight == 1
    assert window.ack(3)
    assert window.in_flight == 0


def test_reset_forgets_the_flight_returns_what_waited_and_old_acks_stay_old() -> None:
    window: BatchWindow[str] = BatchWindow(1)
    window.offer(["a"])
    window.take()
    window.offer(["b"])
    assert window.reset() == ["b"]
    assert (window.in_flight, window.waiting) == (0, 0)
    assert not window.ack(1)  # the old peer's late acknowledgement
    window.offer(["c"])
    assert window.take() == (2, ["c"])  # numbering goes on


def test_nothing_offered_nothing_taken() -> None:
    window: BatchWindow[str] = BatchWindow(1)
    assert window.take() is None
    window.offer([])
    assert window.take() is None


@pytest.mark.parametrize("bad", [0, -1])
def test_a_window_below_one_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="window must be >= 1"):
        BatchWindow(bad)


# -- Links ------------------------------------------------------------------------------------


def _sends(links: Links, to_pool=(), to_accounts=None, cancel=(), live=lambda _m: True, **kw):  # type: ignore[no-untyped-def]
    return links.sends(
        list(to_pool),
        {k: list(v) for k, v in (to_accounts or {}).items()},
        list(cancel),
        pool=kw.get("pool", "pool"),
        accounts=kw.get("accounts", {"acct-1": "a1", "acct-2": "a2"}),
        generation=GEN,
        waits_for_ai=live,
        waits_for_send=live,
        now=kw.get("now", 0.0),
    )


def test_links_send_the_pool_first_then_each_account_then_the_cancellations() -> None:
    links = Links(2)
    out = _sends(
        links,
        [_request("m1"), _request("m2")],
        {"acct-1": [_reply("m3")], "acct-2": [_reply("m4", "acct-2")]},
        ["m5"],
    )
    assert out == [
        Send(
            to="pool",
            msg=AIBatch(requests=(_request("m1"), _request("m2")), generation=GEN, seq=1),
        ),
        Send(to="a1", msg=SendBatch(replies=(_reply("m3"),), generation=GEN, seq=1)),
        Send(to="a2", msg=SendBatch(replies=(_reply("m4", "acct-2"),), generation=GEN, seq=1)),
        Send(to="pool", msg=CancelBatch(message_ids=("m5",), generation=GEN)),
    ]


def test_links_hold_an_accounts_replies_while_its_window_is_full_then_send_them_as_one() -> None:
    links = Links(1)
    first = _sends(links, to_accounts={"acct-1": [_reply("m1")]})
    assert [s.msg.seq for s in first] == [1]
    assert _sends(links, to_accounts={"acct-1": [_reply("m2")]}) == []
    assert _sends(links, to_accounts={"acct-1": [_reply("m3")]}) == []
    # Another account is not held up by the first one's window.
    other = _sends(links, to_accounts={"acct-2": [_reply("x1", "acct-2")]})
    assert [s.to for s in other] == ["a2"]
    links.account_acked("acct-1", 1)
    out = _sends(links)
    assert out == [
        Send(to="a1", msg=SendBatch(replies=(_reply("m2"), _reply("m3")), generation=GEN, seq=2))
    ]
    counters = links.counters()
    assert (counters["hop.to_accounts.batches"], counters["hop.to_accounts.items"]) == (3, 4)
    assert counters["hop.waiting"] == 0


def test_links_hold_the_pools_requests_until_it_acknowledges() -> None:
    links = Links(1)
    assert len(_sends(links, [_request("m1")])) == 1
    assert _sends(links, [_request("m2")]) == []
    assert links.counters()["hop.waiting"] == 1
    links.pool_acked(1)
    (send,) = _sends(links, [_request("m3")])
    assert send.msg == AIBatch(requests=(_request("m2"), _request("m3")), generation=GEN, seq=2)


def test_an_item_whose_message_ended_while_it_waited_does_not_leave() -> None:
    links = Links(1)
    _sends(links, to_accounts={"acct-1": [_reply("m1")]})
    _sends(links, to_accounts={"acct-1": [_reply("m2"), _reply("m3")]})
    links.account_acked("acct-1", 1)
    (send,) = _sends(links, live=lambda mid: mid != "m2")  # m2 timed out meanwhile
    assert send.msg.replies == (_reply("m3"),)


def test_a_replaced_account_drops_what_waited_for_the_old_one_and_starts_afresh() -> None:
    links = Links(1)
    _sends(links, to_accounts={"acct-1": [_reply("m1")]})
    _sends(links, to_accounts={"acct-1": [_reply("m2")]})
    assert links.account_replaced("acct-1") == 1
    # The core sends again everything the account held; the new one gets it at once.
    (send,) = _sends(links, to_accounts={"acct-1": [_reply("m1"), _reply("m2")]})
    assert send.msg.replies == (_reply("m1"), _reply("m2"))
    links.account_acked("acct-1", 1)  # the old generation's late ack: not for this batch
    assert _sends(links, to_accounts={"acct-1": [_reply("m3")]}) == []


def test_a_replaced_pool_drops_what_waited_for_the_old_one() -> None:
    links = Links(1)
    _sends(links, [_request("m1")])
    _sends(links, [_request("m2")])
    assert links.pool_replaced() == 1
    assert len(_sends(links, [_request("m1"), _request("m2")])) == 1


def test_replies_for_an_account_without_an_address_wait_for_it() -> None:
    links = Links(2)
    assert _sends(links, to_accounts={"acct-9": [_reply("m1", "acct-9")]}) == []
    (send,) = _sends(links, accounts={"acct-9": "a9"})
    assert send.to == "a9"


def test_links_count_every_hop() -> None:
    links = Links(2)
    links.received("submit", 5)
    links.received("from_pool", 2)
    counters = links.counters()
    assert set(HOPS) == {k.split(".")[1] for k in counters if k.count(".") == 2}
    assert (counters["hop.submit.batches"], counters["hop.submit.items"]) == (1, 5)
    assert counters["hop.from_pool.items"] == 2
    assert counters["hop.outcomes.batches"] == 0


# -- silence: how long a peer has left a batch unacknowledged ---------------------------------


def test_a_window_knows_when_its_oldest_unacknowledged_batch_left() -> None:
    window: BatchWindow[str] = BatchWindow(2)
    assert window.unacked_since is None
    window.offer(["a"])
    window.take(10.0)
    window.offer(["b"])
    window.take(11.5)
    assert window.unacked_since == 10.0
    window.ack(1)
    assert window.unacked_since == 11.5  # the next oldest
    window.ack(2)
    assert window.unacked_since is None
    window.offer(["c"])
    window.take(20.0)
    window.reset()  # replaced: nothing is in flight to the new peer
    assert window.unacked_since is None


def test_links_say_how_long_an_account_has_not_read() -> None:
    links = Links(2)
    assert links.silent_for("acct-1", 100.0) == 0.0  # never sent to
    _sends(links, to_accounts={"acct-1": [_reply("m1")]}, now=100.0)
    _sends(links, to_accounts={"acct-2": [_reply("x1", "acct-2")]}, now=100.5)
    assert links.silent_for("acct-1", 101.25) == pytest.approx(1.25)
    assert links.silent_for("acct-2", 101.25) == pytest.approx(0.75)
    links.account_acked("acct-1", 1)
    assert links.silent_for("acct-1", 105.0) == 0.0  # it read everything: not silent
    _sends(links, to_accounts={"acct-2": [_reply("x2", "acct-2")]}, now=102.0)
    assert links.silent_for("acct-2", 103.0) == pytest.approx(2.5)  # the oldest counts
    assert links.account_replaced("acct-2") == 0  # down: what flew to it is forgotten
    assert links.silent_for("acct-2", 103.0) == 0.0

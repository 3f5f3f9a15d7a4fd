"""Adaptive batching changes nothing observable, on both bases.

The router's batch windows (``actors.router.links``) hold items while a peer has
unacknowledged batches. These tests run the engine with the narrowest window (1, so
batches merge as much as they can) and check what a user sees: every message ends once,
each customer's replies leave in the order the customer wrote, admission and its refusals
do not depend on the window, and a lone message on an idle engine is not held back.
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.account.actor import LoopbackSent
from protocols import Accepted
from tests.conftest import BASES, EngineFactory
from tests.engine_helpers import actor, collect, inbound

ACCOUNTS = ("acct-1", "acct-2", "acct-3")


def _router_counters(engine: Any) -> dict[str, int]:
    return dict(actor(engine, "router").counters)


@pytest.mark.parametrize("base", BASES)
def test_with_the_narrowest_window_every_message_ends_once_and_each_customer_keeps_order(
    make_engine: EngineFactory, base: str
) -> None:
    engine = make_engine(base, echo={}, accounts=ACCOUNTS, batch_window=1)
    # 8 customers on 3 accounts, 6 messages each, submitted in small interleaved batches
    # so that the windows fill and later items wait and merge.
    messages = [
        inbound(
            f"{c}-{k}",
            account=ACCOUNTS[c % len(ACCOUNTS)],
            customer=f"+1555000{c:04d}",
            text=f"{c}-{k}",
        )
        for k in range(6)
        for c in range(8)
    ]
    ids = []
    for start in range(0, len(messages), 4):
        results = engine.submit_many(messages[start : start + 4])
        assert all(isinstance(r, Accepted) for r in results), results
        ids += [r.message_id for r in results]
    outcomes = collect(engine, ids)
    assert sorted(outcomes) == sorted(ids)
    assert {o.status for o in outcomes.values()} == {"replied"}

    for account_id in ACCOUNTS:
        sent = engine.ask_child("account", account_id, LoopbackSent())
        by_customer: dict[str, list[str]] = {}
        for record in sent.records:
            by_customer.setdefault(record.customer_id, []).append(record.message_id)
        for customer, sent_ids in by_customer.items():
            c = int(customer[-4:])
            assert sent_ids == [f"wamid.{c}-{k}" for k in range(6)], (account_id, customer)
    counters = _router_counters(engine)
    # Every item went out and came back through the hops the router counts.
    for hop in ("to_pool", "from_pool", "to_accounts", "from_accounts"):
        assert counters[f"hop.{hop}.items"] == len(ids), hop
    assert counters["hop.waiting"] == 0


@pytest.mark.parametrize("base", BASES)
def test_admission_and_its_refusals_do_not_depend_on_the_window(
    make_engine: EngineFactory, base: str
) -> None:
    def admit(window: int) -> list[tuple[str, str]]:
        engine = make_engine(
            base,
            echo={"latency_s": 5.0},  # nothing ends while we submit: the bounds fill
            accounts=("acct-1",),
            batch_window=window,
            max_concurrent_processing=4,
            max_pending_per_customer=1,
        )
        out = []
        for i in range(3):  # three rounds: the same customers again, then new ones
            batch = [inbound(f"{i}-{c}", customer=f"+1555{c:07d}") for c in range(3 + 2 * i)]
            for r in engine.submit_many(batch):
                out.append((r.message_id, "accepted" if isinstance(r, Accepted) else str(r.reason)))
        engine.shutdown()
        return out

    narrow, wide = admit(1), admit(64)
    assert narrow == wide
    reasons = {reason for _, reason in narrow}
    assert reasons == {"accepted", "capacity", "customer_backlog"}, reasons


@pytest.mark.parametrize("base", BASES)
def test_a_lone_message_on_an_idle_engine_leaves_at_once_in_a_batch_of_its_own(
    make_engine: EngineFactory, base: str
) -> None:
    engine = make_engine(base, echo={}, accounts=("acct-1",), batch_window=1)
    (result,) = engine.submit_many([inbound(1)])
    assert isinstance(result, Accepted)
    # Nothing else is submitted: if the message waited for a batch to fill, it would wait
    # for ever (the windows have no timer), and collect() would fail at its deadline.
    assert collect(engine, ["wamid.1"])["wamid.1"].status == "replied"
    counters = _router_counters(engine)
    for hop in ("to_pool", "from_pool", "to_accounts", "from_accounts"):
        assert (counters[f"hop.{hop}.batches"], counters[f"hop.{hop}.items"]) == (1, 1), hop

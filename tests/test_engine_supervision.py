"""Supervision: crashed and killed actors are restarted; every accepted message still ends once."""

from __future__ import annotations

import os
import signal

import pytest

from actors.account.actor import LoopbackSent
from protocols import Accepted, AccountEvent, Rejected
from tests.conftest import BASES, EngineFactory
from tests.engine_helpers import actor, collect, inbound, wait_for

TCP = "multiprocTCPBase"


def _restarts(engine, role: str, name: str | None = None) -> int:  # type: ignore[no-untyped-def]
    return int(actor(engine, role, name).restarts)


@pytest.mark.parametrize("base", BASES)
def test_a_handler_that_keeps_failing_on_one_message_is_isolated_and_the_account_restarted(
    make_engine: EngineFactory, base: str
) -> None:
    engine = make_engine(base, echo={})
    engine.add_account("acct-1", options={"crash_text": "CRASH"})
    engine.submit(inbound(1, text="please CRASH"))
    out = collect(engine, ["wamid.1"])["wamid.1"]
    # Each attempt crashes the account; after the third the message ends, not the account.
    assert (out.status, out.reason) == ("failed", "account_failed")
    wait_for(lambda: actor(engine, "account", "acct-1").state == "up", what="account up")
    assert _restarts(engine, "account", "acct-1") == 3
    engine.submit(inbound(2, text="fine"))
    assert collect(engine, ["wamid.2"])["wamid.2"].status == "replied"


def test_a_sigkilled_account_process_is_restarted_and_its_messages_still_end_once(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(TCP, echo={"latency_s": 0.05})
    engine.add_account("acct-1", options={"latency_s": 0.3})
    engine.add_account("acct-2", options={"latency_s": 0.3})
    old_pid = actor(engine, "account", "acct-1").pid
    ids = [
        r.message_id
        for r in engine.submit_many(inbound(i, account=f"acct-{1 + i % 2}") for i in range(200))
    ]
    wait_for(lambda: actor(engine, "account", "acct-1").depth > 0, what="sends in flight")
    os.kill(old_pid, signal.SIGKILL)
    outcomes = collect(engine, ids)
    assert {o.status for o in outcomes.values()} == {"replied"}
    # The outcomes can all be in before the new generation reports up (the old one may have
    # finished every send before the kill landed): wait for it before asking it anything.
    wait_for(lambda: actor(engine, "account", "acct-1").state == "up", what="acct-1 up again")
    entry = actor(engine, "account", "acct-1")
    assert entry.pid != old_pid
    assert entry.restarts == 1
    assert _restarts(engine, "account", "acct-2") == 0
    sent = engine.ask_child("account", "acct-1", LoopbackSent())
    assert sent.sent_total <= 100  # the new generation sent what the old one had not


def test_past_the_restart_intensity_an_account_fails_and_its_messages_end_account_failed(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(TCP, echo={}, restart_max_restarts=1, restart_period_s=60.0)
    events: list[AccountEvent] = []
    engine.subscribe("acct-1", events.append)
    engine.add_account("acct-1", options={"latency_s": 30.0})
    engine.submit(inbound(1))
    wait_for(lambda: actor(engine, "account", "acct-1").depth == 1, what="send in flight")
    os.kill(actor(engine, "account", "acct-1").pid, signal.SIGKILL)
    wait_for(
        lambda: (
            actor(engine, "account", "acct-1").state == "up"
            and actor(engine, "account", "acct-1").restarts == 1
        ),
        what="first restart",
    )
    os.kill(actor(engine, "account", "acct-1").pid, signal.SIGKILL)
    out = collect(engine, ["wamid.1"])["wamid.1"]
    assert (out.status, out.reason) == ("failed", "account_failed")
    late = engine.submit(inbound(2))
    assert isinstance(late, Rejected)
    assert late.reason == "account_failed"
    wait_for(
        lambda: bool(engine.outcomes(timeout=0.1) or True) and "failed" in [e.kind for e in events],
        what="a failed event",
    )
    assert [e.kind for e in events][:2] == ["connected", "disconnected"]


@pytest.mark.parametrize("role", ["router", "ai_pool"])
def test_a_sigkilled_router_or_pool_loses_no_accepted_message(
    make_engine: EngineFactory, role: str
) -> None:
    engine = make_engine(TCP, echo={"latency_s": 0.5}, accounts=("acct-1",))
    results = engine.submit_many(inbound(i) for i in range(300))
    ids = [r.message_id for r in results if isinstance(r, Accepted)]
    assert len(ids) == 300
    os.kill(actor(engine, role).pid, signal.SIGKILL)
    outcomes = collect(engine, ids, deadline_s=60.0)
    assert len(outcomes) == 300
    assert {o.status for o in outcomes.values()} == {"replied"}
    wait_for(lambda: actor(engine, role).restarts == 1, what=f"{role} restart")
    engine.submit(inbound(1000))
    assert collect(engine, ["wamid.1000"])["wamid.1000"].status == "replied"
    sent = engine.ask_child("account", "acct-1", LoopbackSent())
    assert len({r.message_id for r in sent.records}) == sent.sent_total  # nobody got two replies


@pytest.mark.parametrize("base", BASES)
def test_a_repeated_request_id_is_answered_again_not_admitted_twice(
    make_engine: EngineFactory, base: str
) -> None:
    from protocols import SubmitBatch, SubmitResults

    engine = make_engine(base, echo={"latency_s": 0.05}, accounts=("acct-1",))
    link = engine._link
    assert link is not None
    batch = SubmitBatch(messages=(inbound(1),), generation=link.generation, request_id=9999)
    system = engine._sys
    assert system is not None
    first = system.ask(link.address, batch, 10.0)
    again = system.ask(link.address, batch, 10.0)
    assert isinstance(first, SubmitResults)
    assert again == first
    assert actor(engine, "router").counters["accepted"] == 1

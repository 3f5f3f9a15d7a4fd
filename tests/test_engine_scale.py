"""Concurrency without a process per call, listeners, and logging, on multiprocTCPBase."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
from loguru import logger

from actors import ListenerLimitError
from actors.logging import LoguruHandler
from actors.runtime import procs as _procs
from protocols import AccountEvent
from tests.conftest import BASES, EngineFactory
from tests.engine_helpers import actor, collect, inbound, wait_for

TCP = "multiprocTCPBase"


def test_a_thousand_customers_against_a_one_second_provider_finish_together(
    make_engine: EngineFactory,
) -> None:
    # One call at a time would take 1000 s, far past the 30 s deadline: only calls made
    # side by side can all be replied (the engine's clock judges, not the test's).
    engine = make_engine(
        TCP, echo={"latency_s": 1.0}, accounts=("acct-1",), processing_timeout_s=30.0
    )
    results = engine.submit_many(inbound(i) for i in range(1000))
    assert {type(r).__name__ for r in results} == {"Accepted"}
    assert engine.stats().in_flight == 1000
    outcomes = collect(engine, [r.message_id for r in results], deadline_s=60.0)
    assert {o.status for o in outcomes.values()} == {"replied"}
    # ... and without a process per call: still one process per actor.
    assert len([a for a in engine.stats().actors if a.pid]) == 4
    assert actor(engine, "router").counters["gate.peak_processing"] == 1000


def test_an_account_keeps_many_sends_in_flight_against_a_slow_transport(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(TCP, echo={})
    # Each send lasts 2 s: more than 100 at once needs only 50 replies a second to reach the
    # account, a small fraction of what it gets even on a busy machine.
    engine.add_account("acct-1", options={"latency_s": 2.0})
    results = engine.submit_many(inbound(i) for i in range(500))
    wait_for(lambda: actor(engine, "account", "acct-1").depth > 100, what="sends in flight")
    collect(engine, [r.message_id for r in results])


@pytest.mark.parametrize("base", BASES)
def test_listeners_get_account_events_up_to_max_listeners_and_end_with_the_account(
    make_engine: EngineFactory, base: str
) -> None:
    engine = make_engine(base, echo={}, max_listeners=2)
    seen: list[AccountEvent] = []
    first = engine.subscribe("acct-1", seen.append)
    engine.subscribe("acct-1", lambda event: None)
    with pytest.raises(ListenerLimitError, match=r"account 'acct-1': listener limit \(2\)"):
        engine.subscribe("acct-1", seen.append)
    engine.add_account("acct-1")
    wait_for(
        lambda: bool(engine.outcomes(timeout=0.05) or True) and bool(seen),
        what="the connected event",
    )
    assert [(e.account_id, e.kind) for e in seen] == [("acct-1", "connected")]
    engine.remove_account("acct-1")
    assert not first.active
    engine.subscribe("acct-2", seen.append)
    engine.subscribe("acct-2", seen.append)
    with pytest.raises(ListenerLimitError):
        engine.subscribe("acct-2", seen.append)


def test_limits_and_restarts_are_logged_from_every_actor_process(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    log = tmp_path / "engine.log"
    sink = logger.add(log, level="INFO", serialize=True, enqueue=False)
    try:
        engine = make_engine(TCP, echo={}, max_instances=1, accounts=("acct-1",))
        with pytest.raises(Exception, match="instance limit"):
            engine.add_account("acct-2")
        os.kill(actor(engine, "account", "acct-1").pid, signal.SIGKILL)
        wait_for(lambda: "exited unexpectedly" in log.read_text(), what="the restart log line")
        text = log.read_text()
        assert "instance limit (1) reached" in text
        assert '"actor": "supervisor"' in text
    finally:
        logger.remove(sink)


def test_the_rate_log_sweep_runs_on_a_timer_that_dies_with_the_account(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(TCP, echo={}, sweep_tick_s=0.05, accounts=("acct-1",))
    wait_for(
        lambda: actor(engine, "account", "acct-1").counters["sweeps"] >= 3,
        what="three sweep ticks",
    )
    pid = actor(engine, "account", "acct-1").pid
    engine.remove_account("acct-1")
    wait_for(lambda: not _procs.alive(pid), what="the account process to end")
    assert all(a.role != "account" for a in engine.stats().actors)


def test_thespian_log_records_are_routed_into_loguru(tmp_path: Path) -> None:
    log = tmp_path / "thespian.log"
    sink = logger.add(log, level="WARNING")
    try:
        handler = LoguruHandler()
        record = logging.LogRecord(
            "thespian.system", logging.WARNING, __file__, 1, "transport trouble %s", ("x",), None
        )
        handler.emit(record)
    finally:
        logger.remove(sink)
    assert "transport trouble x" in log.read_text()

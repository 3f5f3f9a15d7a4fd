"""Ordered teardown: drain, then accounts, then the AI pool; without a durable intake store,
abandoned messages are journaled."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from actors.engine.journal import read_journal
from actors.runtime import procs as _procs
from protocols import Accepted, Rejected
from tests.conftest import BASES, EngineFactory
from tests.engine_helpers import inbound

pytestmark = pytest.mark.parametrize("base", BASES)


def test_shutdown_drains_in_flight_messages_before_stopping_anything(
    make_engine: EngineFactory, base: str
) -> None:
    # A drain deadline a hundred times the calls' latency: a busy machine still drains all.
    engine = make_engine(
        base,
        echo={"latency_s": 0.2},
        accounts=("acct-1",),
        drain_timeout_s=20.0,
        shutdown_timeout_s=30.0,
    )
    ids = [r.message_id for r in engine.submit_many(inbound(i) for i in range(50))]
    report = engine.shutdown()
    assert [s.name for s in report.stages] == [
        "drain",
        "accounts",
        "ai_pool",
        "router",
        "actor_system",
    ]
    assert report.stages[0].drained == 50
    assert report.abandoned == ()
    outcomes = engine.outcomes(timeout=0)
    assert sorted(o.message_id for o in outcomes) == sorted(ids)
    assert {o.status for o in outcomes} == {"replied"}


def test_without_a_store_what_cannot_drain_in_time_is_abandoned_with_an_outcome_and_journaled(
    make_engine: EngineFactory, base: str, tmp_path: Path
) -> None:
    # With a durable store it would stay unfinished there instead (test_durable_intake).
    journal = tmp_path / "dead.bin"
    engine = make_engine(
        base,
        echo={"latency_s": 60.0},
        accounts=("acct-1",),
        drain_timeout_s=0.3,
        shutdown_timeout_s=3.0,
        dead_letter_path=str(journal),
        durability="off",
    )
    submitted = [inbound(i) for i in range(40)]
    assert all(isinstance(r, Accepted) for r in engine.submit_many(submitted))
    pids = engine.pids
    report = engine.shutdown()
    # It did not wait for the 60 s calls (its own deadline is 3 s; the rest is slack for a
    # busy machine's process reaping).
    assert report.total_s < 30.0
    assert report.stages[0].name == "drain"
    assert report.stages[0].abandoned == 40
    assert sorted(report.abandoned) == sorted(m.message_id for m in submitted)
    outcomes = engine.outcomes(timeout=0)
    assert len(outcomes) == 40
    assert {(o.status, o.reason) for o in outcomes} == {("abandoned", "shutdown")}
    assert list(read_journal(journal)) == submitted
    assert not [p for p in pids if _procs.alive(p)]


def test_after_shutdown_submissions_are_refused_and_the_admin_port_is_free(
    make_engine: EngineFactory, base: str
) -> None:
    engine = make_engine(base, echo={}, accounts=("acct-1",))
    port = engine.admin_port
    engine.shutdown()
    refused = engine.submit(inbound(1))
    assert isinstance(refused, Rejected)
    assert refused.reason == "shutting_down"
    assert engine.shutdown() is engine.shutdown_report  # idempotent
    if port is not None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))  # nothing listens on it any more

"""Faults under a steady load: every accepted message still ends in exactly one outcome.

Each test runs a few hundred messages a second through a multiprocTCPBase engine (see
``tests.load_helpers.Load``), injects one fault while the load runs, then checks:

- every accepted message got exactly one outcome (the sets of ids are compared);
- outcomes arrived within the message's deadline (plus the facade's grace);
- restarts stayed within the policy, and memory stayed bounded;
- the engine serves a new message afterwards.

``test_engine_supervision.py`` kills each actor once after a burst; these kill during a running
load, twice. Every test here is short (a few seconds); the long variants are load-runner
runs. Each prints its accepted-vs-outcomes figures (``-s`` independent).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from actors.engine.journal import read_journal
from actors.runtime import procs as _procs
from protocols import Accepted, ProviderSpec, Rejected
from tests.conftest import EngineFactory
from tests.engine_helpers import actor, collect, inbound, wait_for
from tests.fakes.graph_api import Behaviour, FakeGraphAPI
from tests.fakes.openai_api import FakeOpenAI
from tests.load_helpers import Load, cpu_seconds, rss_mb

TCP = "multiprocTCPBase"
RSS_BOUND_MB = 300.0
GRACE_S = 1.5  # the facade's ledger grace (1 s) plus the collection interval
OPENAI_KEY = "sk-faults-5e1d"
GRAPH_TOKEN = "graph-faults-c0ffee"

FIGURES: list[str] = []  # one line per run, printed by the reporting fixture


@pytest.fixture(autouse=True)
def _report(capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> Iterator[None]:
    FIGURES.clear()
    yield
    with capsys.disabled():
        for line in FIGURES:
            print(f"\n[faults] {request.node.name}: {line}")


def peak_rss(engine_pids: frozenset[int], peak: dict[int, float]) -> None:
    for pid in engine_pids:
        mb = rss_mb(pid)
        if mb is not None:
            peak[pid] = max(peak.get(pid, 0.0), mb)


def serves_again(engine, mid: str = "after.1", account: str = "acct-1") -> str:  # type: ignore[no-untyped-def]
    msg = inbound(mid, account=account, customer="+15559999999")
    result = engine.submit(msg)
    assert isinstance(result, Accepted), result
    outcome = collect(engine, [msg.message_id], deadline_s=15)[msg.message_id]
    assert outcome.status == "replied", outcome
    return outcome.reply


# --- SIGKILL during a running load ------------------------------------------------------------


@pytest.mark.parametrize("role", ["account", "ai_pool", "router"])
def test_a_process_killed_twice_during_a_load_loses_nothing(
    make_engine: EngineFactory, role: str
) -> None:
    engine = make_engine(
        TCP,
        echo={"latency_s": 0.2},
        accounts=("acct-1", "acct-2"),
        processing_timeout_s=8.0,
        restart_max_restarts=5,
    )
    name = "acct-1" if role == "account" else None
    load = Load(engine, prefix=f"kill-{role}", rate_per_s=300, accounts=("acct-1", "acct-2"))
    peak: dict[int, float] = {}
    load.start()
    try:
        for kill in (1, 2):
            wait_for(
                lambda kill=kill: len(load.accepted) >= 150 * kill,  # type: ignore[misc]
                deadline_s=10,
                what="load in flight",
            )
            pid = actor(engine, role, name)["pid"]
            peak_rss(engine.pids, peak)
            os.kill(pid, signal.SIGKILL)
            wait_for(
                lambda kill=kill: (  # type: ignore[misc]
                    (entry := actor(engine, role, name))["restarts"] == kill
                    and entry["state"] == "up"
                ),
                deadline_s=10,
                what=f"restart {kill} of the {role}",
            )
            assert actor(engine, role, name)["pid"] != pid
        wait_for(lambda: len(load.accepted) >= 450, deadline_s=10, what="load after the kills")
    finally:
        load.finish(deadline_s=30)
    peak_rss(engine.pids, peak)
    FIGURES.append(load.summary())
    # The echo provider never fails: whatever was accepted is replied, kills or not.
    assert set(load.statuses()) == {"replied"}, load.summary()
    assert max(load.latencies()) <= 8.0 + GRACE_S
    restarts = {(a["role"], a["name"]): a["restarts"] for a in engine.stats()["actors"]}
    assert restarts.pop((role, name or role)) == 2
    assert set(restarts.values()) == {0}, restarts  # nobody else was restarted
    assert max(peak.values()) < RSS_BOUND_MB
    serves_again(engine)


# --- a provider that hangs forever --------------------------------------------------------


def test_a_provider_that_hangs_forever_fails_over_to_echo_within_the_deadline(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAULTS_OPENAI_KEY", OPENAI_KEY)
    engine = make_engine(
        TCP,
        echo={"latency_s": 0.05},
        accounts=("acct-1",),
        processing_timeout_s=4.0,
        provider_cooldown_s=0.5,
    )
    engine.remove_provider("echo")
    with FakeOpenAI(api_key=OPENAI_KEY) as llm:
        options = {
            "base_url": llm.base_url,
            "model": "m",
            "api_key_env": "FAULTS_OPENAI_KEY",
            "timeout_s": 0.5,
        }
        engine.add_provider(ProviderSpec(name="llm", kind="openai", priority=10, options=options))
        engine.add_provider(
            ProviderSpec(name="echo", kind="echo", priority=1, options={"latency_s": 0.05})
        )
        llm.hang(times=None)
        load = Load(engine, prefix="hang", rate_per_s=300).start()
        try:
            wait_for(lambda: len(load.accepted) >= 300, deadline_s=10, what="300 accepted")
        finally:
            load.finish(deadline_s=15)
        FIGURES.append(f"{load.summary()}; the hanging server got {llm.request_count} calls")
        assert set(load.statuses()) == {"replied"}, load.summary()
        assert {o.reply for o in load.outcomes.values()} == {"echo: hi"}
        assert max(load.latencies()) <= 4.0 + GRACE_S
        assert llm.request_count >= 1
        assert engine.stats()["counters"]["restarts"] == 0  # a fault outside, no crash inside
        # Once the server answers again, the provider serves again after its cooldown.
        llm.clear()
        replies: list[str] = []
        wait_for(
            lambda: (
                replies.append(serves_again(engine, f"after.{len(replies)}"))
                or replies[-1].startswith("reply to:")
            ),
            deadline_s=10,
            what="the recovered provider to answer",
        )


# --- a storm of 429s with Retry-After ----------------------------------------------------


def test_a_storm_of_429s_parks_or_fails_messages_within_the_deadline_without_spinning(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAULTS_OPENAI_KEY", OPENAI_KEY)
    # The cooldown is the floor of a bench; a longer Retry-After wins (README).
    engine = make_engine(
        TCP, accounts=("acct-1",), processing_timeout_s=2.0, provider_cooldown_s=0.5
    )
    with FakeOpenAI(api_key=OPENAI_KEY) as llm:
        for name, priority in (("llm-a", 10), ("llm-b", 5)):
            options = {"base_url": llm.base_url, "model": name, "api_key_env": "FAULTS_OPENAI_KEY"}
            engine.add_provider(
                ProviderSpec(name=name, kind="openai", priority=priority, options=options)
            )
        llm.fail(429, retry_after="2.5", times=None)  # every provider: come back in 2.5 s
        pool_pid = actor(engine, "ai_pool")["pid"]
        load = Load(engine, prefix="storm", rate_per_s=300)
        t0 = time.monotonic()
        load.start()
        try:
            wait_for(lambda: time.monotonic() - t0 > 1.5, deadline_s=5, what="1.5 s of load")
            load.stop()
            # Every provider is cooling down until ~t0 + 2.5 s: requests wait, none is sent.
            calls, cpu = llm.request_count, cpu_seconds(pool_pid)
            llm.clear()
            threading.Event().wait(max(0.0, t0 + 2.3 - time.monotonic()))
            quiet_s = time.monotonic() - t0 - 1.5
            calls_while_benched = llm.request_count - calls
            cpu_while_benched = cpu_seconds(pool_pid) - cpu
        finally:
            load.finish(deadline_s=15)
        FIGURES.append(
            f"{load.summary()}; {calls} calls got 429; pool CPU {cpu_while_benched:.2f} s "
            f"in {quiet_s:.2f} s benched"
        )
        statuses = load.statuses()
        # The first wave tried both providers; later ones failed at once (their deadline came
        # before the Retry-After) or waited for it and were replied, or timed out when the
        # wait left too little of the deadline for the call.
        ended = {"replied", "failed/provider_error", "failed/no_provider", "timeout/timeout"}
        assert set(statuses) <= ended, statuses
        assert statuses["failed/no_provider"] > 0
        assert statuses["replied"] > 0
        assert max(load.latencies()) <= 2.0 + GRACE_S
        assert calls_while_benched == 0  # Retry-After honoured: no call while benched
        assert cpu_while_benched < 0.3 * quiet_s  # waiting is a timer, not a busy loop
        assert engine.stats()["counters"]["restarts"] == 0
        assert serves_again(engine).startswith("reply to:")


# --- the Graph API fails for a while, then recovers -----------------------------------------


def test_graph_5xx_for_a_while_then_recovery_ends_every_message_replied(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAULTS_GRAPH_TOKEN", GRAPH_TOKEN)
    engine = make_engine(TCP, echo={"latency_s": 0.05}, processing_timeout_s=6.0)
    with FakeGraphAPI(token=GRAPH_TOKEN) as graph:
        engine.add_account(
            "acct-1",
            transport="cloud_api",
            options={
                "phone_number_id": "100200300",
                "token_env": "FAULTS_GRAPH_TOKEN",
                "api_base": graph.base_url,
                "throughput_per_s": 2000,
                "backoff_min_s": 0.1,
                "backoff_max_s": 0.4,
            },
        )
        graph.program(Behaviour(status=503), times=None)
        load = Load(engine, prefix="graph", rate_per_s=300).start()
        try:
            wait_for(lambda: len(load.accepted) >= 300, deadline_s=10, what="300 accepted")
            graph.program(Behaviour(status=500))  # a second kind of 5xx, still failing
            wait_for(lambda: len(load.accepted) >= 450, deadline_s=10, what="450 accepted")
            failing_calls = graph.request_count
            graph.program(Behaviour())  # recovered
        finally:
            load.finish(deadline_s=20)
        FIGURES.append(f"{load.summary()}; {failing_calls} Graph calls failed with 5xx first")
        assert set(load.statuses()) == {"replied"}, load.summary()
        assert max(load.latencies()) <= 6.0 + GRACE_S
        assert failing_calls > len(load.accepted) / 2  # the 5xx were really met and retried
        assert engine.stats()["counters"]["restarts"] == 0
        serves_again(engine)
        assert all(r.bearer_ok for r in graph.requests)


# --- shutdown() in the middle of a flood ----------------------------------------------------


def test_shutdown_in_the_middle_of_a_flood_ends_every_accepted_message_once(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(
        TCP,
        echo={"latency_s": 0.5},
        accounts=("acct-1",),
        max_concurrent_processing=200,
        max_pending_per_customer=2,
        drain_timeout_s=0.3,
    )
    pids = engine.pids | {a["pid"] for a in engine.stats()["actors"]}
    load = Load(engine, prefix="stop", rate_per_s=1500, batch=75, customers=400).start()
    wait_for(lambda: len(load.accepted) >= 600, deadline_s=10, what="600 accepted")
    report: list = []
    stopper = threading.Thread(target=lambda: report.append(engine.shutdown()), name="stopper")
    stopper.start()
    stopper.join(30)
    assert report, "shutdown() did not return"
    stopped = time.monotonic()
    # The submitter keeps going after shutdown returned: every later batch is refused.
    wait_for(
        lambda: sum(b.started > stopped for b in load.batches) >= 3,
        deadline_s=10,
        what="three batches submitted after shutdown",
    )
    load.finish(deadline_s=10)
    FIGURES.append(f"{load.summary()}; abandoned in the report {len(report[0].abandoned)}")
    statuses = load.statuses()
    assert set(statuses) <= {"replied", "abandoned/shutdown"}, statuses
    assert statuses["abandoned/shutdown"] > 0  # the drain deadline was short on purpose
    abandoned = {m for m, o in load.outcomes.items() if o.status == "abandoned"}
    assert abandoned == set(report[0].abandoned)
    journal = {m.message_id for m in read_journal(engine.config.dead_letter_path)}
    assert journal == abandoned
    after = [b for b in load.batches if b.started > stopped]
    assert {r.reason for b in after for r in b.results if isinstance(r, Rejected)} == {
        "shutting_down"
    }
    assert not any(isinstance(r, Accepted) for b in after for r in b.results)
    assert not [p for p in pids if _procs.alive(p)], "an engine process outlived shutdown"

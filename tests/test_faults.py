"""Faults under a steady load: every accepted message still ends in exactly one outcome.

Each test runs a few hundred messages a second through a multiprocTCPBase engine (see
``tests.load_helpers.Load``), injects one fault while the load runs, then checks:

- every accepted message got exactly one outcome (the sets of ids are compared);
- no outcome came later than the engine promised (``Load.late``: its deadline plus the
  facade's grace, judged by when the test asked, not by how fast it was let to ask);
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
from protocols import Accepted, Outcome, ProviderSpec, Rejected
from tests.conftest import EngineFactory
from tests.engine_helpers import actor, collect, inbound, wait_for
from tests.fakes.graph_api import Behaviour, FakeGraphAPI
from tests.fakes.openai_api import FakeOpenAI
from tests.load_helpers import Load, cpu_seconds, rss_mb

TCP = "multiprocTCPBase"
RSS_BOUND_MB = 300.0
WAIT_S = 30.0  # the longest a step may take on a busy machine; a condition ends it sooner
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
    outcome = collect(engine, [msg.message_id], deadline_s=WAIT_S)[msg.message_id]
    assert outcome.status == "replied", outcome
    return outcome.reply


# --- SIGKILL during a running load ------------------------------------------------------------


@pytest.mark.parametrize("role", ["account", "ai_pool", "router"])
def test_a_process_killed_twice_during_a_load_loses_nothing(
    make_engine: EngineFactory, role: str
) -> None:
    # A deadline far beyond a restart, even a slow one: every message must be replied.
    timeout_s = 20.0
    engine = make_engine(
        TCP,
        echo={"latency_s": 0.2},
        accounts=("acct-1", "acct-2"),
        processing_timeout_s=timeout_s,
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
                deadline_s=WAIT_S,
                what="load in flight",
            )
            pid = actor(engine, role, name).pid
            peak_rss(engine.pids, peak)
            os.kill(pid, signal.SIGKILL)
            wait_for(
                lambda kill=kill: (  # type: ignore[misc]
                    (entry := actor(engine, role, name)).restarts == kill and entry.state == "up"
                ),
                deadline_s=WAIT_S,
                what=f"restart {kill} of the {role}",
            )
            assert actor(engine, role, name).pid != pid
        wait_for(lambda: len(load.accepted) >= 450, deadline_s=WAIT_S, what="load after the kills")
    finally:
        load.finish(deadline_s=timeout_s + WAIT_S)
    peak_rss(engine.pids, peak)
    FIGURES.append(load.summary())
    # The echo provider never fails: whatever was accepted is replied, kills or not.
    assert set(load.statuses()) == {"replied"}, load.summary()
    assert load.late() == []
    restarts = {(a.role, a.name): a.restarts for a in engine.stats().actors}
    assert restarts.pop((role, name or role)) == 2
    assert set(restarts.values()) == {0}, restarts  # nobody else was restarted
    assert max(peak.values()) < RSS_BOUND_MB
    serves_again(engine)


# --- a provider that hangs forever --------------------------------------------------------


def test_a_provider_that_hangs_forever_fails_over_to_echo_within_the_deadline(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAULTS_OPENAI_KEY", OPENAI_KEY)
    # The provider's 0.5 s timeout cuts the hang; the deadline leaves a busy machine room.
    timeout_s = 10.0
    engine = make_engine(
        TCP,
        echo={"latency_s": 0.05},
        accounts=("acct-1",),
        processing_timeout_s=timeout_s,
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
            wait_for(lambda: len(load.accepted) >= 300, deadline_s=WAIT_S, what="300 accepted")
        finally:
            load.finish(deadline_s=timeout_s + WAIT_S)
        FIGURES.append(f"{load.summary()}; the hanging server got {llm.request_count} calls")
        assert set(load.statuses()) == {"replied"}, load.summary()
        assert {o.reply for o in load.outcomes.values()} == {"echo: hi"}
        assert load.late() == []
        assert llm.request_count >= 1
        assert engine.stats().counters["restarts"] == 0  # a fault outside, no crash inside
        # Once the server answers again, the provider serves again after its cooldown.
        llm.clear()
        replies: list[str] = []
        wait_for(
            lambda: (
                replies.append(serves_again(engine, f"after.{len(replies)}"))
                or replies[-1].startswith("reply to:")
            ),
            deadline_s=WAIT_S,
            what="the recovered provider to answer",
        )


# --- a storm of 429s with Retry-After ----------------------------------------------------


def test_a_storm_of_429s_parks_or_fails_messages_within_the_deadline_without_spinning(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAULTS_OPENAI_KEY", OPENAI_KEY)
    # The cooldown is the floor of a bench; a longer Retry-After wins (README). The
    # Retry-After is twice the deadline: a message offered in the first half of a bench
    # cannot be served before its deadline (fails at once), one offered late waits for it.
    retry_after_s, timeout_s = 6.0, 3.0
    engine = make_engine(
        TCP, accounts=("acct-1",), processing_timeout_s=timeout_s, provider_cooldown_s=0.5
    )
    names = ("llm-a", "llm-b")
    with FakeOpenAI(api_key=OPENAI_KEY) as llm:
        for name, priority in zip(names, (10, 5), strict=True):
            options = {"base_url": llm.base_url, "model": name, "api_key_env": "FAULTS_OPENAI_KEY"}
            engine.add_provider(
                ProviderSpec(name=name, kind="openai", priority=priority, options=options)
            )
        llm.fail(429, retry_after=f"{retry_after_s:g}", times=None)  # every provider
        pool_pid = actor(engine, "ai_pool").pid
        load = Load(engine, prefix="storm", rate_per_s=300)
        # No call is made before t0, so no bench can end before t0 + retry_after_s.
        t0 = time.monotonic()
        load.start()
        try:
            wait_for(
                lambda: benched(engine, llm, names),
                deadline_s=WAIT_S,
                what="both providers to get their 429 with no call left in flight",
            )
            benched_at = time.monotonic()
            wait_for(
                lambda: any(b.started > benched_at for b in load.batches),
                deadline_s=WAIT_S,
                what="a batch offered while both providers are benched",
            )
            load.stop()
            # From here until t0 + retry_after_s every provider is benched: requests wait
            # or fail, none is sent (a call still in flight would have shown in `benched`).
            # The load's outcomes are collected meanwhile (the router is not the pool).
            calls, cpu, quiet_from = llm.request_count, cpu_seconds(pool_pid), time.monotonic()
            llm.clear()
            load.strays += [o.message_id for o in load.collect_until(t0 + retry_after_s - 0.1)]
            quiet_s = time.monotonic() - quiet_from
            calls_while_benched = llm.request_count - calls
            cpu_while_benched = cpu_seconds(pool_pid) - cpu
            # A message whose deadline falls after every bench's end (at most benched_at +
            # retry_after_s) waits for it and is then answered by the provider. Its outcome
            # is collected through the load, which keeps the load's own.
            until = benched_at + retry_after_s - timeout_s + 1.5
            load.strays += [o.message_id for o in load.collect_until(until)]
            probe = inbound("waited.1", customer="+15559999999")
            assert isinstance(engine.submit(probe), Accepted)
            waited: list[Outcome] = []
            wait_for(
                lambda: bool(waited.extend(load.collect(timeout=0.2))) or bool(waited),
                deadline_s=WAIT_S,
                what="the outcome of the message that waited for the Retry-After",
            )
        finally:
            load.finish(deadline_s=timeout_s + WAIT_S)
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
        assert [(o.message_id, o.status) for o in waited] == [(probe.message_id, "replied")]
        assert (waited[0].reply or "").startswith("reply to:")
        assert load.late() == []
        assert quiet_s > 1.0, "no quiet window: the test stalled for seconds"
        assert calls_while_benched == 0  # Retry-After honoured: no call while benched
        assert cpu_while_benched < 0.3 * quiet_s  # waiting is a timer, not a busy loop
        assert engine.stats().counters["restarts"] == 0
        assert serves_again(engine).startswith("reply to:")


def benched(engine, llm: FakeOpenAI, names: tuple[str, ...]) -> bool:  # type: ignore[no-untyped-def]
    """Each provider got a 429 and has no call in flight, so none is sent until it ends."""
    if not set(names) <= {r.model for r in llm.requests}:
        return False
    stats = actor(engine, "ai_pool").provider_stats
    return all(name in stats and stats[name].get("in_flight") == 0 for name in names)


# --- the Graph API fails for a while, then recovers -----------------------------------------


def test_graph_5xx_for_a_while_then_recovery_ends_every_message_replied(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAULTS_GRAPH_TOKEN", GRAPH_TOKEN)
    # The 5xx last until two counts are reached (at most two waits): a deadline past that
    # means every message is replied however slowly the machine gets there.
    timeout_s = 2 * WAIT_S + 10.0
    engine = make_engine(TCP, echo={"latency_s": 0.05}, processing_timeout_s=timeout_s)
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
            wait_for(lambda: len(load.accepted) >= 300, deadline_s=WAIT_S, what="300 accepted")
            graph.program(Behaviour(status=500))  # a second kind of 5xx, still failing
            wait_for(lambda: len(load.accepted) >= 450, deadline_s=WAIT_S, what="450 accepted")
            # The fake picks a call's answer when it counts the call, under one lock: every
            # call counted so far gets a 5xx, every later one a 200.
            failing_calls = graph.request_count
            graph.program(Behaviour())  # recovered
        finally:
            load.finish(deadline_s=timeout_s + WAIT_S)
        FIGURES.append(f"{load.summary()}; {failing_calls} Graph calls failed with 5xx first")
        assert set(load.statuses()) == {"replied"}, load.summary()
        assert load.late() == []
        # The 5xx were really met, and each was handed back to be sent again.
        assert failing_calls > 0
        counters = actor(engine, "account", "acct-1").counters
        assert counters["transport.retryable"] == failing_calls, counters
        assert engine.stats().counters["restarts"] == 0
        serves_again(engine)
        assert all(r.bearer_ok for r in graph.requests)


# --- shutdown() in the middle of a flood ----------------------------------------------------


def test_shutdown_in_the_middle_of_a_flood_ends_every_accepted_message_once(
    make_engine: EngineFactory,
) -> None:
    # Each call takes far longer than the drain may: whatever is in flight when shutdown()
    # begins (200 processing and up to 400 queued behind them) cannot all end in the drain.
    # With no durable store (durability off) those end abandoned and go to the journal; with
    # one they stay unfinished for the next start (tests/test_durable_intake.py).
    engine = make_engine(
        TCP,
        echo={"latency_s": 2.0},
        accounts=("acct-1",),
        durability="off",
        max_concurrent_processing=200,
        max_pending_per_customer=2,
        drain_timeout_s=0.3,
    )
    pids = engine.pids | {a.pid for a in engine.stats().actors}
    load = Load(engine, prefix="stop", rate_per_s=1500, batch=75, customers=400).start()
    wait_for(lambda: len(load.accepted) >= 450, deadline_s=WAIT_S, what="450 accepted")
    report: list = []
    stopper = threading.Thread(target=lambda: report.append(engine.shutdown()), name="stopper")
    stopper.start()
    stopper.join(30)
    assert report, "shutdown() did not return"
    stopped = time.monotonic()
    # The submitter keeps going after shutdown returned: every later batch is refused.
    wait_for(
        lambda: sum(b.started > stopped for b in load.batches) >= 3,
        deadline_s=WAIT_S,
        what="three batches submitted after shutdown",
    )
    load.finish(deadline_s=WAIT_S)
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

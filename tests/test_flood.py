"""A flood: submissions at about ten times what the engine can complete, on multiprocTCPBase.

The engine can complete ``max_concurrent_processing / latency`` = 200 messages a second
(echo latency 1 s); the test offers about 2,000 a second for 3 s, in batches of 1,000 that
each hold four messages from each of 250 customers. So every batch on its own is more than
the engine may hold (200 customers in processing, two queued behind each), however slowly a
busy machine lets the test submit: the router decides a batch in one turn. What must hold:

- the surplus is refused at the edge, only with ``capacity`` or ``customer_backlog``;
- every engine process's resident memory stays bounded (peak recorded and printed);
- no actor's depth exceeds its declared capacity;
- accepted messages end within their deadline, each exactly once;
- when the flood stops, a new customer's message is accepted and goes straight to a
  provider (nothing left queued ahead of it).

The sustained (minutes-long) variant is a load-runner run, not a test.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from protocols import Accepted
from tests.conftest import EngineFactory
from tests.engine_helpers import actor, inbound
from tests.load_helpers import Load, rss_mb

TCP = "multiprocTCPBase"
LATENCY_S = 1.0
CONCURRENT = 200
PENDING = 2  # max_pending_per_customer
CUSTOMERS = 250  # more than CONCURRENT, and a batch holds PENDING + 2 messages of each
TIMEOUT_S = 30.0  # a customer's last message waits (PENDING + 1) latencies: far below
FLOOD_S = 3.0
WAIT_S = 30.0  # the longest a step may take on a busy machine; a condition ends it sooner
RSS_BOUND_MB = 300.0


def test_a_flood_at_ten_times_capacity_is_refused_at_the_edge_with_bounded_memory(
    make_engine: EngineFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(
        TCP,
        echo={"latency_s": LATENCY_S},
        accounts=("acct-1", "acct-2"),
        max_concurrent_processing=CONCURRENT,
        max_pending_per_customer=PENDING,
        processing_timeout_s=TIMEOUT_S,
    )
    pids = set(engine.pids) | {a.pid for a in engine.stats().actors if a.pid}
    peak: dict[int, float] = dict.fromkeys(pids, 0.0)
    depth_over: list[str] = []
    load = Load(
        engine, prefix="flood", rate_per_s=2000, batch=(PENDING + 2) * CUSTOMERS,
        customers=CUSTOMERS, accounts=("acct-1", "acct-2"),
    )  # fmt: skip
    started = time.monotonic()
    load.start()
    try:
        while time.monotonic() - started < FLOOD_S:
            for pid in pids:
                peak[pid] = max(peak[pid], rss_mb(pid) or 0.0)
            for a in engine.stats().actors:
                if a.depth > a.capacity:
                    depth_over.append(f"{a.role}:{a.name} {a.depth}/{a.capacity}")
            threading.Event().wait(0.2)  # the sampling interval
        load.stop()
        flood_s = time.monotonic() - started
        # The flood is over: a new customer gets in as soon as a processing slot frees.
        stopped = time.monotonic()
        fresh = inbound("fresh.1", customer="+15559990001")
        while not isinstance(engine.submit(fresh), Accepted):
            assert time.monotonic() - stopped < WAIT_S, "no slot freed after the flood"
            load.strays += [o.message_id for o in load.collect(timeout=0.05)]
        admitted_s = time.monotonic() - stopped
        reply = None
        while reply is None:  # the flood's outcomes go on arriving: keep them for the check
            assert time.monotonic() - stopped < WAIT_S + TIMEOUT_S, "the new message got no outcome"
            for outcome in load.collect(timeout=0.05):
                if outcome.message_id == fresh.message_id:
                    reply = outcome
                else:
                    load.strays.append(outcome.message_id)
        replied_s = time.monotonic() - stopped
    finally:
        load.finish(deadline_s=TIMEOUT_S + WAIT_S)
    for pid in pids:
        peak[pid] = max(peak[pid], rss_mb(pid) or 0.0)

    offered_rate = load.offered / flood_s
    completed_rate = len(load.accepted) / flood_s
    latencies = load.latencies()
    worst_mb = max(peak.values())
    with capsys.disabled():
        print(
            f"\n[flood] offered {load.offered} in {flood_s:.1f} s ({offered_rate:.0f}/s), "
            f"accepted {len(load.accepted)} ({completed_rate:.0f}/s), {load.summary()}"
            f"\n[flood] peak RSS per engine process (MiB): "
            + ", ".join(f"{pid}: {mb:.1f}" for pid, mb in sorted(peak.items()))
            + f"; max {worst_mb:.1f}; embedding process now {rss_mb(os.getpid()) or 0:.1f}"
            f"\n[flood] accepted->outcome latency max {max(latencies):.2f} s; after the flood "
            f"a new message was accepted in {admitted_s:.2f} s and replied in {replied_s:.2f} s"
        )
    # Each batch alone is more than the engine holds: both kinds of refusal, at any speed.
    assert set(load.rejected) <= {"capacity", "customer_backlog"}, load.rejected
    assert load.rejected["capacity"] > 0
    assert load.rejected["customer_backlog"] > 0
    assert worst_mb < RSS_BOUND_MB
    assert not depth_over, depth_over[:5]
    assert set(load.statuses()) == {"replied"}, load.summary()
    assert load.late() == []
    assert reply.status == "replied"
    # No backlog left behind the new message: a new customer goes straight into processing,
    # and the pool, holding at most one call per customer in processing, never made a
    # request wait for a provider slot.
    pool = actor(engine, "ai_pool").counters
    assert (pool["parks"], pool["over_capacity"]) == (0, 0), pool

#!/usr/bin/env python3
"""Micro-benchmark of the pure cores at two sizes, to show their per-call cost is O(1).

Each operation is timed over many calls on a structure already filled to N keys, at
N = 10,000 and N = 1,000,000 (``--sizes`` to change). A cost that does not grow with N is
what O(1) amortized means; the ratio column compares the two sizes in the same run (only
ratios taken in one run are comparable on a shared machine). Memory per key is the growth
of the process's resident set while filling, divided by N.

Usage: ``python scripts/bench_cores.py [--sizes 10000 1000000] [--calls 200000]``
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from actors.cores.dedupe import DedupeSet
from actors.cores.gate import ConversationGate
from actors.cores.ratelog import RecipientRateLog
from actors.cores.restart import RestartPolicy
from actors.cores.selector import ProviderSelector
from protocols import ProviderSpec


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def per_call_ns(op: Callable[[int], object], calls: int) -> float:
    """Median over 5 rounds of the per-call time of ``op(i)`` for i in range(calls)."""
    rounds = []
    per_round = max(1, calls // 5)
    start_i = 0
    for _ in range(5):
        gc.disable()
        t0 = time.perf_counter_ns()
        for i in range(start_i, start_i + per_round):
            op(i)
        rounds.append((time.perf_counter_ns() - t0) / per_round)
        gc.enable()
        start_i += per_round
    rounds.sort()
    return rounds[2]


@dataclass
class Row:
    core: str
    op: str
    ns: dict[int, float]
    bytes_per_key: dict[int, float]


def bench_ratelog(n: int, calls: int) -> list[tuple[str, float, float]]:
    log = RecipientRateLog(
        max_recipients=n, max_entries_per_recipient=100, window_s=60.0, allowance=10
    )
    before = rss_bytes()
    for i in range(n):
        log.record(f"r{i}", 0.0)
    mem = (rss_bytes() - before) / n
    rng = random.Random(1)
    keys = [f"r{rng.randrange(n)}" for _ in range(4096)]
    now = [1.0]

    def acquire(i: int) -> object:
        now[0] += 1e-6
        return log.try_acquire(keys[i & 4095], now[0])

    def record_new(i: int) -> object:  # at capacity: every call evicts the LRU recipient
        now[0] += 1e-6
        log.record(f"new{i}", now[0])
        return None

    def check(i: int) -> object:
        return log.check(keys[i & 4095], now[0])

    # check before record_new: record_new evicts the prefilled recipients check looks up.
    out = [
        ("try_acquire (existing)", per_call_ns(acquire, calls), mem),
        ("check (existing)", per_call_ns(check, calls), mem),
        ("record (new, evicts LRU)", per_call_ns(record_new, calls), mem),
    ]
    # Sweep: let the whole log expire, then time budget-34 sweeps that each remove 34
    # (few enough calls that the log never runs empty).
    late = now[0] + 61.0
    sweeps = min(2000, len(log) // 34)
    out.append(
        ("sweep(budget=34), per call", per_call_ns(lambda i: log.sweep(late, 34), sweeps), mem)
    )
    return out


def bench_dedupe(n: int, calls: int) -> list[tuple[str, float, float]]:
    d = DedupeSet(n)
    before = rss_bytes()
    for i in range(n):
        d.seen_before(f"wamid.{i}")
    mem = (rss_bytes() - before) / n
    hits = [f"wamid.{n - 1 - (i % 1000)}" for i in range(4096)]
    return [
        ("seen_before (new, evicts)", per_call_ns(lambda i: d.seen_before(f"x{i}"), calls), mem),
        (
            "seen_before (duplicate)",
            per_call_ns(lambda i: d.seen_before(hits[i & 4095]), calls),
            mem,
        ),
    ]


def bench_gate(n: int, calls: int) -> list[tuple[str, float, float]]:
    gate: ConversationGate[None] = ConversationGate(
        max_processing=n, max_queue_per_customer=20, timeout_s=120.0
    )
    before = rss_bytes()
    for i in range(n):
        gate.offer(f"c{i}", f"m{i}", None, 0.0)
    mem = (rss_bytes() - before) / n
    rng = random.Random(2)
    order = list(range(n))
    rng.shuffle(order)
    now = [0.0]

    def offer_queue_complete(i: int) -> object:
        # A customer's next message queues behind its current one; completing the current
        # one starts the next: the router's steady state at full occupancy.
        c = order[i % n]
        now[0] += 1e-7
        gate.offer(f"c{c}", f"q{i}", None, now[0])
        step = gate.complete(_current[c], now[0])
        _current[c] = step.started[0].item_id
        return step

    _current = {i: f"m{i}" for i in range(n)}
    out = [("offer(queue) + complete -> next", per_call_ns(offer_queue_complete, calls), mem)]
    out.append(
        (
            "offer (new customer, capacity reject)",
            per_call_ns(lambda i: gate.offer(f"z{i}", f"z{i}", None, now[0]), calls),
            mem,
        )
    )
    # Expire: everything offered at t=0 falls due at 120 s; time expire() in slices.
    deadline = (gate.next_deadline() or 0.0) + 1.0
    steps = []
    t0 = time.perf_counter_ns()
    expired = len(gate.expire(deadline).expired)
    steps.append((time.perf_counter_ns() - t0) / max(1, expired))
    out.append((f"expire, per expired item ({expired:,} items)", steps[0], mem))
    return out


def bench_selector(n: int, calls: int) -> list[tuple[str, float, float]]:
    # Loaded providers are capped at max_providers (50); N is the number of specs offered
    # and the number of calls already recorded: choose() must not depend on either.
    sel: ProviderSelector[ProviderSpec] = ProviderSelector(max_providers=50, cooldown_s=5.0)
    specs = [
        ProviderSpec(name=f"p{i}", kind="echo", priority=i % 1000, daily_limit=10**12)
        for i in range(n)
    ]
    before = rss_bytes()
    sel.load(specs)
    mem = (rss_bytes() - before) / n
    names = [s.name for s in specs[:50]]
    for i in range(n):
        sel.record_call(names[i % 50], 1_700_000_000.0)
    top = sorted(sel.names)[:49]
    exclude = frozenset(top)
    return [
        (
            "choose (top provider free)",
            per_call_ns(lambda i: sel.choose(1_700_000_000.0), calls),
            mem,
        ),
        (
            "choose (49 of 50 excluded)",
            per_call_ns(lambda i: sel.choose(1_700_000_000.0, exclude), calls),
            mem,
        ),
        (
            "record_failure",
            per_call_ns(lambda i: sel.record_failure(names[i % 50], 1_700_000_000.0), calls),
            mem,
        ),
    ]


def bench_restart(n: int, calls: int) -> list[tuple[str, float, float]]:
    policy = RestartPolicy(max_restarts=n, period_s=1.0, rng=random.Random(3))
    t = [0.0]
    for _ in range(n):  # n failures spread wider than the period: never gives up
        t[0] += 2.0
        policy.started(t[0])
        policy.failed(t[0] + 0.5)

    def fail(i: int) -> object:
        t[0] += 2.0
        policy.started(t[0])
        return policy.failed(t[0] + 0.5)

    return [("started + failed", per_call_ns(fail, calls), 0.0)]


BENCHES = {
    "RecipientRateLog": bench_ratelog,
    "DedupeSet": bench_dedupe,
    "ConversationGate": bench_gate,
    "ProviderSelector": bench_selector,
    "RestartPolicy": bench_restart,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args(argv)
    sizes: list[int] = args.sizes

    results: dict[tuple[str, str], Row] = {}
    for core, bench in BENCHES.items():
        for n in sizes:
            print(f"  {core} at N={n:,} ...", file=sys.stderr)
            for op, ns, mem in bench(n, args.calls):
                label = op.split(" (")[0] if op.startswith("expire") else op
                row = results.setdefault((core, label), Row(core, label, {}, {}))
                row.ns[n] = ns
                row.bytes_per_key[n] = mem
            gc.collect()

    head = f"{'core':<18} {'operation':<40}" + "".join(f"{f'N={n:,}':>14}" for n in sizes)
    head += f"{'ratio':>8}"
    print(head)
    print("-" * len(head))
    for row in results.values():
        cells = "".join(f"{row.ns.get(n, float('nan')):>11.0f} ns" for n in sizes)
        ratio = row.ns[sizes[-1]] / row.ns[sizes[0]] if len(sizes) > 1 else 1.0
        print(f"{row.core:<18} {row.op:<40}{cells}{ratio:>8.2f}")
    print()
    print("memory per key (RSS growth while filling / N):")
    for core in BENCHES:
        rows = [r for r in results.values() if r.core == core]
        if rows and any(rows[0].bytes_per_key.values()):
            cells = ", ".join(f"N={n:,}: {rows[0].bytes_per_key[n]:.0f} B" for n in sizes)
            print(f"  {core:<18} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

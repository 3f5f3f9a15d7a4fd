#!/usr/bin/env python3
"""Benchmark the intake store: ``record_accepted`` of 200-message batches, per durability.

Each batch is one transaction (one commit; one fsync of the WAL with ``fsync``), the cost
``submit_many`` pays before it can answer ``Accepted``. Also timed: finishing those
messages with ``record_outcomes`` in batches of the same size (the outcome path's
commit). The store lives in a fresh temporary directory on the file system that holds
``--dir`` (default: the system's temporary directory; point it at the disk the
engine's ``intake_path`` will use, since fsync cost is a property of that disk).

Usage: ``python scripts/bench_intake.py [--batches 200] [--batch-size 200] [--rounds 3]
[--dir PATH]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

from actors.engine.intake import IntakeStore
from protocols import InboundMessage, Outcome

DURABILITIES = ("fsync", "os", "off")


def batches(count: int, size: int, run: str) -> list[list[InboundMessage]]:
    return [
        [
            InboundMessage(
                account_id="acct-1",
                customer_id=f"+1555{(b * size + i) % 10_000:07d}",
                message_id=f"wamid.{run}.{b}.{i}",
                text="Hi, where is my order? It was due yesterday.",
            )
            for i in range(size)
        ]
        for b in range(count)
    ]


def bench(
    durability: str, work: Sequence[list[InboundMessage]], directory: str
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        store = IntakeStore.open(
            os.path.join(tmp, "intake", "intake.db"),
            durability=durability,
            retention_s=7 * 24 * 3600.0,
            max_records=len(work) * len(work[0]) + 1,
        )
        try:
            deadline = time.time() + 120.0
            t0 = time.perf_counter()
            for batch in work:
                store.record_accepted([(m, deadline) for m in batch])
            accept_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for batch in work:
                done = [Outcome(message_id=m.message_id, status="replied", reply="Shipped!")
                        for m in batch]  # fmt: skip
                store.record_outcomes(done)
            outcome_s = time.perf_counter() - t0
            stats = store.stats()
        finally:
            store.close()
    n = len(work)
    return {
        "batches_per_s": n / accept_s,
        "messages_per_s": n * len(work[0]) / accept_s,
        "commit_ms": accept_s / n * 1000,
        "outcome_batches_per_s": n / outcome_s,
        "db_mib": stats["db_bytes"] / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200, help="batches per durability")
    parser.add_argument("--batch-size", type=int, default=200, help="messages per batch")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the store lives")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is shown")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {d: [] for d in DURABILITIES}
    for n in range(args.rounds):  # interleaved, so a noisy neighbour hits all three alike
        for d in DURABILITIES[n % 3 :] + DURABILITIES[: n % 3]:
            runs[d].append(bench(d, batches(args.batches, args.batch_size, f"{d}{n}"), args.dir))
    rows = {d: {k: statistics.median(x[k] for x in runs[d]) for k in runs[d][0]} for d in runs}
    print(
        f"record_accepted: {args.batches} batches of {args.batch_size} messages; "
        f"store under {args.dir}; median of {args.rounds} rounds"
    )
    print(
        f"{'durability':<11}{'batches/s':>11}{'messages/s':>13}{'ms/commit':>11}"
        f"{'outcome batches/s':>19}{'db MiB':>8}{'vs off':>8}"
    )
    for d, r in rows.items():
        ratio = r["messages_per_s"] / rows["off"]["messages_per_s"]
        print(
            f"{d:<11}{r['batches_per_s']:>11.0f}{r['messages_per_s']:>13.0f}"
            f"{r['commit_ms']:>11.2f}{r['outcome_batches_per_s']:>19.0f}"
            f"{r['db_mib']:>8.1f}{ratio:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

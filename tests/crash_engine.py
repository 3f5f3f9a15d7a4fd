"""The crash test's child: an engine that takes messages until the test SIGKILLs it.

Usage: ``python tests/crash_engine.py STORE DURABILITY COUNT`` (from the repository root).

It starts an ``Engine`` on multiprocTCPBase with its intake store at ``STORE``, an echo
provider with 0.3 s latency and the loopback account ``acct-1``, then submits ``COUNT``
messages (one customer each) in small batches, 20 batches a second, and collects outcomes
once a second: so at any moment some replies are sent (and marked sent by the account)
but their outcomes not collected yet. Each line it prints is flushed at once:

``pids P1 P2 ...``
    every process of the engine's actor system (the Thespian admin runs in a session of
    its own: killing this process's group does not reach it, the test kills these too);
``accepted ID``
    ``submit_many`` answered ``Accepted``: the message is in the store;
``outcome ID STATUS``
    ``outcomes`` returned it: the outcome is in the store;
``done``
    every message was submitted; it goes on collecting until it is killed.
"""

from __future__ import annotations

import os
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from actors import Engine, EngineConfig  # noqa: E402 - after the path is set
from protocols import Accepted, InboundMessage, ProviderSpec  # noqa: E402

BATCH = 8
COLLECT_EVERY = 20  # batches


def message(n: int) -> InboundMessage:
    return InboundMessage(
        account_id="acct-1", customer_id=f"+1555{n:07d}", message_id=f"wamid.crash.{n}", text="hi"
    )


def main(store: str, durability: str, count: int) -> None:
    config = EngineConfig(
        intake_path=store,
        durability=durability,
        dead_letter_path=os.path.join(os.path.dirname(store), "dead-letters.bin"),
    )
    engine = Engine(config, base="multiprocTCPBase", seed=5).start()
    engine.add_provider(
        ProviderSpec(name="echo", kind="echo", priority=10, options={"latency_s": 0.3})
    )
    engine.add_account("acct-1")
    engine.stats()  # it remembers every actor's pid
    print("pids", *sorted(engine.pids), flush=True)

    def collect(timeout: float) -> None:
        for outcome in engine.outcomes(timeout=timeout):
            print("outcome", outcome.message_id, outcome.status, flush=True)

    pace = threading.Event()
    for i, start in enumerate(range(0, count, BATCH)):
        batch = [message(n) for n in range(start, min(count, start + BATCH))]
        for result in engine.submit_many(batch):
            if isinstance(result, Accepted):
                print("accepted", result.message_id, flush=True)
        if i % COLLECT_EVERY == COLLECT_EVERY - 1:
            collect(0.0)
        pace.wait(0.05)  # a steady stream, not one burst
    print("done", flush=True)
    while True:
        collect(0.5)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))

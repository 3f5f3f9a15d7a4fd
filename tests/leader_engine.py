"""The leader-restart test's child: a leader engine the test drives over stdin, then kills.

Usage: ``python tests/leader_engine.py STORE ADMIN_PORT SECRET_ENV`` (from the repository
root; the secret itself is in the environment variable ``SECRET_ENV``).

It starts an ``Engine`` on multiprocTCPBase with its intake store at ``STORE``, the fixed
Thespian admin port ``ADMIN_PORT`` (members join the convention there) and the members'
transport secret, and an echo provider. It runs in a child process so that the test can
SIGKILL it for real, with every process of its actor system. It reads one command a line
on stdin and collects outcomes between commands; each line it prints is flushed at once:

``ready ADMIN_PORT`` and ``pids P1 P2 ...``
    at start, and ``pids`` again after each command: every process of the engine's actor
    system seen so far (the Thespian admin runs in a session of its own: killing this
    process's group does not reach it, the test kills these too);
``counters JSON``
    the engine's counters (at start: what the intake store recovered);
``outcome ID STATUS``
    ``outcomes`` returned it: the outcome is in the store.

Commands:

``members N``
    wait (up to ``MEMBERS_DEADLINE_S``) until the supervisor knows ``N`` members; print
    ``members UP SECONDS``, or ``members UP timeout`` when fewer came;
``accounts LATENCY NAME...``
    add each loopback account with ``latency_s=LATENCY``, as an application does after a
    start (what the store recovered for an account is admitted again when it is added),
    then print ``account NAME HOST PID GENERATION STATE DEPTH`` for each (``DEPTH``: the
    replies the router has at it, unconfirmed);
``submit FIRST COUNT``
    submit messages ``wamid.FIRST`` ... over the accounts in turn (``account_of``); print
    ``accepted ID`` or ``rejected ID REASON`` each, then ``submitted``;
``stats``
    print ``counters``, the accounts and ``pids``;
``sent``
    print ``sent NAME ID...`` for each account: the replies it sent (its loopback
    transport's record), then ``sent-done``;
``stop``
    shut the engine down, print ``stopped`` and exit.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from actors import Engine, EngineConfig  # noqa: E402 - after the path is set
from actors.account.actor import LoopbackSent  # noqa: E402
from protocols import Accepted, InboundMessage, ProviderSpec  # noqa: E402

MEMBERS_DEADLINE_S = 30.0
"""How long ``members`` waits: generous, the test prints how long it took."""
COLLECT_S = 0.1
"""How long one ``outcomes`` call waits between two commands."""


def account_of(n: int, names: list[str]) -> str:
    return names[n % len(names)]


def message(n: int, account: str) -> InboundMessage:
    return InboundMessage(
        account_id=account, customer_id=f"+1555{n:07d}", message_id=f"wamid.{n}", text="hi"
    )


def say(*words: object) -> None:
    print(*words, flush=True)


class Leader:
    """The engine and the commands the test sends it."""

    def __init__(self, store: str, admin_port: int, secret_env: str) -> None:
        config = EngineConfig(
            intake_path=store,
            dead_letter_path=os.path.join(os.path.dirname(store), "dead-letters.bin"),
            transport_secret_env=secret_env,
        )
        self.engine = Engine(config, base="multiprocTCPBase", admin_port=admin_port, seed=7)
        self.engine.start()
        self.engine.add_provider(ProviderSpec(name="echo", kind="echo", priority=10, options={}))
        self.names: list[str] = []
        say("ready", self.engine.admin_port)
        self.stats()

    def stats(self) -> None:
        stats = self.engine.stats()  # it remembers every pid of the leader's own actors
        say("counters", json.dumps(dict(stats.counters), sort_keys=True))
        for entry in stats.of_role("account"):
            say(
                "account",
                *(entry.name, entry.host, entry.pid, entry.generation, entry.state, entry.depth),
            )
        say("pids", *sorted(self.engine.pids))

    def members(self, wanted: int) -> None:
        began = time.monotonic()
        until = began + MEMBERS_DEADLINE_S
        up = 0
        while time.monotonic() < until:
            up = self.engine.stats().counters.get("supervisor.members_up", 0)
            if up >= wanted:
                say("members", up, f"{time.monotonic() - began:.2f}")
                return
            self.collect()  # the poll interval, spent on outcomes
        say("members", up, "timeout")

    def accounts(self, latency_s: float, names: list[str]) -> None:
        for name in names:
            self.engine.add_account(name, options={"latency_s": latency_s})
        self.names = names
        self.stats()

    def submit(self, first: int, count: int) -> None:
        batch = [message(n, account_of(n, self.names)) for n in range(first, first + count)]
        for result in self.engine.submit_many(batch):
            if isinstance(result, Accepted):
                say("accepted", result.message_id)
            else:
                say("rejected", result.message_id, result.reason)
        say("submitted")

    def sent(self) -> None:
        for name in self.names:
            records = self.engine.ask_child("account", name, LoopbackSent()).records
            say("sent", name, *(r.message_id for r in records))
        say("sent-done")

    def collect(self) -> None:
        for outcome in self.engine.outcomes(timeout=COLLECT_S):
            say("outcome", outcome.message_id, outcome.status)


def main(store: str, admin_port: int, secret_env: str) -> None:
    leader = Leader(store, admin_port, secret_env)
    commands: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            commands.put(line)
        commands.put("stop")  # the test went away: stop rather than run on unseen

    threading.Thread(target=read, daemon=True).start()
    while True:
        try:
            words = commands.get_nowait().split()
        except queue.Empty:
            leader.collect()
            continue
        if words[0] == "members":
            leader.members(int(words[1]))
        elif words[0] == "accounts":
            leader.accounts(float(words[1]), words[2:])
        elif words[0] == "submit":
            leader.submit(int(words[1]), int(words[2]))
        elif words[0] == "stats":
            leader.stats()
        elif words[0] == "sent":
            leader.sent()
        elif words[0] == "stop":
            leader.engine.shutdown()
            say("stopped")
            return
        else:
            raise SystemExit(f"unknown command {words!r}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])

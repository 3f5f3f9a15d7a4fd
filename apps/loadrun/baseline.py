"""Raw Thespian on the same base and machine, to put the engine's figures in proportion.

A trivial actor in an actor system of its own (own admin port, shut down after):

- one-hop throughput: N small messages told from outside, then one ask that flushes;
- the same with 200 items per told message (what batching buys on this base);
- ping-pong: the median round trip of an ask.

The actor class lives in this imported module, never in ``__main__``: Thespian's forked
processes find it in ``sys.modules``.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from typing import Any

from thespian.actors import Actor, ActorSystem

from actors.logging import thespian_log_defs
from actors.runtime.system import install_patches

from . import procs

__all__ = ["BATCH_ITEMS", "Sink", "measure"]

BATCH_ITEMS = 200
PINGS = 500


class Sink(Actor):  # type: ignore[misc]  # Thespian ships no type hints
    """Counts what it is told; answers ``("flush",)`` with the count, echoes pings."""

    def __init__(self) -> None:
        super().__init__()
        self.items = 0

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802  # Thespian's name
        if isinstance(msg, tuple) and msg:
            kind = msg[0]
            if kind == "m":
                self.items += 1
            elif kind == "b":
                self.items += len(msg[1])
            elif kind == "ping":
                self.send(sender, msg)
            elif kind == "flush":
                self.send(sender, ("count", self.items))
                self.items = 0
            elif kind == "pids":
                self.send(sender, ("pids", os.getpid(), os.getppid()))


def _flush(asys: Any, sink: Any, expected: int) -> None:
    reply = asys.ask(sink, ("flush",), 60)
    if not (isinstance(reply, tuple) and reply[1] == expected):
        raise RuntimeError(f"raw Thespian baseline lost messages: {reply!r}, expected {expected}")


def measure(base: str, messages: int, *, admin_port: int | None = None) -> dict[str, Any]:
    """Measure raw Thespian on ``base``; ``messages`` one-item tells for the throughput."""
    multiproc = base.startswith("multiproc")
    capabilities = {"Admin Port": admin_port or _free_port()} if multiproc else {}
    install_patches()  # the same loopback binds and unpickler as the engine's system
    asys = ActorSystem(base, capabilities, logDefs=thespian_log_defs(), transientUnique=True)
    pids: set[int] = set()
    try:
        sink = asys.createActor(Sink)
        if multiproc:
            reply = asys.ask(sink, ("pids",), 10)
            if isinstance(reply, tuple):
                pids = {reply[1], reply[2]} | procs.children(reply[2])
        payload = "hello " + "x" * 24
        _flush(asys, sink, 0)  # warm: the first message pays for connection setup

        t0 = time.perf_counter()
        for i in range(messages):
            asys.tell(sink, ("m", i, payload))
        _flush(asys, sink, messages)
        tell_s = time.perf_counter() - t0

        items = messages * 4
        tells = -(-items // BATCH_ITEMS)
        t0 = time.perf_counter()
        for i in range(tells):
            asys.tell(sink, ("b", [(i, j, payload) for j in range(BATCH_ITEMS)]))
        _flush(asys, sink, tells * BATCH_ITEMS)
        batch_s = time.perf_counter() - t0

        rtts = []
        for i in range(PINGS):
            t = time.perf_counter()
            asys.ask(sink, ("ping", i), 10)
            rtts.append(time.perf_counter() - t)
    finally:
        asys.shutdown()
        leftovers = procs.wait_gone(pids, timeout_s=5.0) if pids else set()
    return {
        "base": base,
        "tell_messages": messages,
        "tell_per_s": messages / tell_s,
        "batch_items": tells * BATCH_ITEMS,
        "batch_size": BATCH_ITEMS,
        "batch_items_per_s": tells * BATCH_ITEMS / batch_s,
        "pings": PINGS,
        "rtt_median_ms": statistics.median(rtts) * 1000,
        "rtt_p99_ms": sorted(rtts)[int(0.99 * len(rtts)) - 1] * 1000,
        "leftover_processes": sorted(leftovers),
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port

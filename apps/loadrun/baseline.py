"""Raw Thespian on the same base and machine, to put the engine's figures in proportion.

A trivial actor in an actor system of its own (own admin port, shut down after):

- one-hop throughput: N small messages told from outside, then one ask that flushes;
- the same with 200 items per told message (what batching buys on this base);
- ping-pong: the median round trip of an ask.

The system gets the engine's patches (loopback binds, the allowlisted unpickler, frame
authentication). On a TCP base it is measured twice in a row: with every frame
authenticated, as the engine runs (the figures at the top level, ``transport_auth:
"on"``), then with authentication off (``without_auth``, and the relative cost in
``auth_cost``), which is what the engine's ``transport_auth = false`` measures.

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

from actors.config import EngineConfig
from actors.logging import thespian_log_defs
from actors.runtime import actorguard, frameauth
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


_COMPARED = ("tell_per_s", "batch_items_per_s", "rtt_median_ms")


def measure(base: str, messages: int, *, admin_port: int | None = None) -> dict[str, Any]:
    """Measure raw Thespian on ``base``; ``messages`` one-item tells for the throughput.

    On a TCP base, with frame authentication on, then off (see the module's docstring).
    """
    if not base.startswith("multiproc"):
        return {**_measure(base, messages, None, auth=True), "transport_auth": "n/a"}
    on = _measure(base, messages, admin_port, auth=True)
    off = _measure(base, messages, None, auth=False)
    return {
        **on,
        "transport_auth": "on",
        "without_auth": {k: off[k] for k in _COMPARED},
        "leftover_processes": sorted({*on["leftover_processes"], *off["leftover_processes"]}),
        # Positive: authentication costs that fraction (of throughput, or extra latency).
        "auth_cost": {
            "tell": 1 - on["tell_per_s"] / off["tell_per_s"],
            "batch": 1 - on["batch_items_per_s"] / off["batch_items_per_s"],
            "rtt": on["rtt_median_ms"] / off["rtt_median_ms"] - 1,
        },
    }


class _System:
    """Owns the transport settings of one measured actor system (see frameauth.start)."""


def _measure(base: str, messages: int, admin_port: int | None, *, auth: bool) -> dict[str, Any]:
    multiproc = base.startswith("multiproc")
    capabilities = {"Admin Port": admin_port or _free_port()} if multiproc else {}
    install_patches()  # the same loopback binds, unpickler and frame MACs as the engine's
    actorguard.admit(Sink)  # the admin creates the engine's actor classes, and this one
    owner = _System()
    frameauth.start(owner, EngineConfig(transport_auth=auth))
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
        frameauth.stop(owner)
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

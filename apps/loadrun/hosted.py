"""The engine in a child process: the proxy the driver talks to in ``--crash-every`` runs.

:class:`HostedEngine` has the ``Engine`` methods the runner uses (``submit_many``,
``outcomes``, ``stats``, ``shutdown``, ``pids``, ``base``) and forwards each to an engine
host (:mod:`apps.loadrun.engine_host`), a ``python -m`` child in a session of its own.
:meth:`HostedEngine.kill` SIGKILLs that session from any thread; the call in progress, or
the next one, raises :class:`HostGoneError`, and :meth:`HostedEngine.restart` then makes
sure every process of the dead engine is gone (by PID: its actor processes follow it
through the engine's lifeline; any left after :data:`GONE_WITHIN_S` is SIGKILLed and
reported) and starts a new host on the same intake store.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from actors import ConfigError, EngineError
from actors.runtime import procs as engine_procs
from protocols import Accepted, InboundMessage, Outcome, Rejected, ShutdownReport, StatsReply

from . import hostwire, procs
from .engine_host import HostSetup

__all__ = ["GONE_WITHIN_S", "EngineLike", "HostGoneError", "HostedEngine", "Restart"]

GONE_WITHIN_S = 2.0
"""After a kill, every process of the engine must be gone within this (issue 10: 2 s)."""
_READY_TIMEOUT_S = 120.0  # start, recovery, providers and accounts
_CALL_MARGIN_S = 60.0  # beyond the engine's own timeouts: a host this late is hung
_GONE_POLL_S = 0.005
_ROOT = str(Path(__file__).resolve().parents[2])  # the directory that holds ``apps``


class EngineLike(Protocol):
    """What the driver, the sampler and the run use of an engine, embedded or hosted."""

    base: str

    def submit_many(self, messages: Iterable[InboundMessage]) -> list[Accepted | Rejected]: ...

    def outcomes(self, timeout: float = 1.0, *, max_items: int = 10_000) -> list[Outcome]: ...

    def stats(self) -> StatsReply: ...

    def shutdown(self) -> ShutdownReport: ...

    @property
    def pids(self) -> frozenset[int]: ...


class HostGoneError(EngineError):
    """The engine host died (killed, or on its own) before it answered."""


@dataclass(slots=True)
class _Host:
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    started: float  # monotonic
    ready: float | None = None
    pids: set[int] = field(default_factory=set)
    admin_pid: int | None = None
    killed_at: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    gone_at: float | None = None  # when every process in ``pids`` was seen gone
    gone_wall: float = 0.0  # the same moment by the wall clock (the store's clock)
    leftovers: tuple[int, ...] = ()  # alive GONE_WITHIN_S after the kill (SIGKILLed)
    buried: threading.Event = field(default_factory=threading.Event)
    broken: bool = False  # a call was interrupted mid-frame: the channel is out of step


@dataclass(frozen=True, slots=True)
class Restart:
    """One engine death and the start of its successor, in monotonic seconds."""

    host_pid: int
    planned: bool  # killed by the runner (else: it died or hung on its own)
    exit_status: int | None
    killed_at: float
    gone_wall: float  # time.time() once every process of the dead engine was gone
    pids: tuple[int, ...]  # processes of the dead engine known at the kill (host included)
    gone_s: float  # kill -> every one of them gone
    leftovers: tuple[int, ...]  # still alive GONE_WITHIN_S after the kill: SIGKILLed
    ready_s: float  # kill -> the new engine ready (providers and accounts added)
    start_s: float  # the new host's own start time (Engine.start + providers + accounts)
    recovery: dict[str, int] = field(default_factory=dict)  # the new engine's intake.* counters


class HostedEngine:
    """An ``Engine`` in an engine host; see the module docstring.

    Args:
        setup: what every host starts with (the same intake store each time).
        call_timeout_s: the longest a call waits beyond the engine's own timeouts.
    """

    def __init__(self, setup: HostSetup, *, call_timeout_s: float = _CALL_MARGIN_S) -> None:
        self.setup = setup
        self.base = setup.base
        self.call_timeout_s = call_timeout_s
        self.hosts_started = 0
        self._host: _Host | None = None
        self._lock = threading.Lock()  # the host's process: kill (any thread) vs reap

    # --- the host's life ---------------------------------------------------------------------

    def start(self) -> HostedEngine:
        """Start a host and wait until its engine is ready.

        Raises:
            ConfigError: the engine refused its config.
            EngineError: the host did not start, or its engine did not.
        """
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "apps.loadrun.host_main", str(child.fileno())],
                pass_fds=(child.fileno(),),
                start_new_session=True,  # its own process group: one killpg reaches it
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # stdout is the runner's report
                env=env,
            )
        finally:
            child.close()
        host = _Host(proc=proc, sock=parent, started=time.monotonic(), pids={proc.pid})
        with self._lock:
            self._host = host
        self.hosts_started += 1
        try:
            hostwire.send(parent, self.setup)
            reply = hostwire.recv(parent, timeout_s=_READY_TIMEOUT_S, alive=self._alive(host))
        except (hostwire.ChannelClosedError, TimeoutError) as exc:
            self._end(host)
            raise HostGoneError(f"the engine host did not start ({exc})") from None
        if reply[0] != "ready":
            self._end(host)
            error = ConfigError if reply[1] == "ConfigError" else EngineError
            raise error(reply[2])
        info: dict[str, Any] = reply[1]
        with self._lock:
            host.pids.update(info["pids"])
            host.admin_pid = info.get("admin_pid")
            host.info = info
            host.ready = time.monotonic()
        return self

    def kill(self, *, min_up_s: float = 0.0) -> bool:
        """SIGKILL the host's session if it is ready and has been up ``min_up_s``.

        Safe from any thread. Every process of its engine alive now is remembered first;
        then this waits (up to :data:`GONE_WITHIN_S`) until each of them is gone, and
        SIGKILLs any left (reported by :meth:`restart`).

        Returns:
            True if the signal was sent.
        """
        with self._lock:
            h = self._host
            if h is None or h.ready is None or h.killed_at is not None:
                return False
            if h.proc.returncode is not None or time.monotonic() - h.ready < min_up_s:
                return False
            self._signal(h)
        self._bury(h)
        return True

    def restart(self) -> Restart:
        """After :class:`HostGoneError`: bury the dead engine and start a new host.

        Raises:
            EngineError: the new host did not start.
        """
        with self._lock:
            h = self._host
            assert h is not None, "start() first"
            planned = h.killed_at is not None
            if not planned:  # died or hung on its own: make sure nothing of it goes on
                self._signal(h)
        if not planned:
            self._bury(h)
        h.buried.wait()  # the killing thread is watching the processes go
        assert h.killed_at is not None
        assert h.gone_at is not None
        status = h.proc.wait()
        h.sock.close()
        if h.leftovers:  # SIGKILLed: they must be gone before the next start
            engine_procs.wait_gone(h.leftovers, timeout_s=5.0)
        self.start()
        new = self._host
        assert new is not None
        assert new.ready is not None
        return Restart(
            host_pid=h.proc.pid,
            planned=planned,
            exit_status=status,
            killed_at=h.killed_at,
            gone_wall=h.gone_wall,
            pids=tuple(sorted(h.pids)),
            gone_s=h.gone_at - h.killed_at,
            leftovers=h.leftovers,
            ready_s=new.ready - h.killed_at,
            start_s=float(new.info.get("start_s", 0.0)),
            recovery=dict(new.info.get("intake", {})),
        )

    def close(self) -> set[int]:
        """End the host (after :meth:`shutdown`); returns its processes still alive (killed)."""
        h = self._host
        if h is None:
            return set()
        if h.broken:  # an interrupted run: no orderly end over an out-of-step channel
            with self._lock:
                if h.killed_at is None:
                    self._signal(h)
            self._bury(h)
        elif h.proc.returncode is None and h.killed_at is None:
            with contextlib.suppress(EngineError):
                self._call("exit", 10.0)
        try:
            h.proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(h.proc.pid, signal.SIGKILL)
            h.proc.wait()
        h.sock.close()
        return procs.wait_gone(h.pids, timeout_s=5.0)

    # --- the Engine's methods --------------------------------------------------------------

    def submit_many(self, messages: Iterable[InboundMessage]) -> list[Accepted | Rejected]:
        results: list[Accepted | Rejected] = self._call("submit_many", 0.0, messages=list(messages))
        return results

    def outcomes(self, timeout: float = 1.0, *, max_items: int = 10_000) -> list[Outcome]:
        got: list[Outcome] = self._call("outcomes", timeout, timeout=timeout, max_items=max_items)
        return got

    def stats(self) -> StatsReply:
        stats: StatsReply = self._call("stats", 0.0)
        h = self._host
        if h is not None:
            with self._lock:
                h.pids.update(a.pid for a in stats.actors if a.pid)
                if stats.admin_pid:
                    h.pids.add(stats.admin_pid)
                    h.admin_pid = stats.admin_pid
        return stats

    def shutdown(self) -> ShutdownReport:
        cfg = self.setup.config
        report, pids = self._call("shutdown", cfg.shutdown_timeout_s + cfg.drain_timeout_s)
        if self._host is not None:
            self._host.pids.update(pids)
        assert isinstance(report, ShutdownReport)
        return report

    @property
    def pids(self) -> frozenset[int]:
        """The current host and every process of its engine seen so far."""
        return frozenset(self._host.pids) if self._host is not None else frozenset()

    @property
    def host_pid(self) -> int:
        """The current host's pid (the process that embeds the engine)."""
        return self._host.proc.pid if self._host is not None else os.getpid()

    # --- plumbing ------------------------------------------------------------------------------

    def _call(self, op: str, wait_s: float, **kwargs: Any) -> Any:
        h = self._host
        if h is None:
            raise HostGoneError("no engine host: start() first")
        if h.broken:
            raise HostGoneError(f"the channel to engine host {h.proc.pid} was interrupted")
        try:
            hostwire.send(h.sock, (op, kwargs))
            reply = hostwire.recv(
                h.sock, timeout_s=wait_s + self.call_timeout_s, alive=self._alive(h)
            )
        except KeyboardInterrupt:
            h.broken = True  # part of a frame may be unread: no later call can trust it
            raise
        except hostwire.ChannelClosedError as exc:
            raise HostGoneError(f"the engine host {h.proc.pid} is gone ({exc})") from None
        except TimeoutError:
            raise HostGoneError(f"the engine host {h.proc.pid} hung in {op}") from None
        if reply[0] == "ok":
            return reply[1]
        raise EngineError(f"engine host: {reply[1]}: {reply[2]}")

    def _alive(self, h: _Host) -> Any:
        def alive() -> bool:
            with self._lock:
                return h.killed_at is None and h.proc.poll() is None

        return alive

    def _signal(self, h: _Host) -> None:
        # Under the lock.
        self._scan(h)
        h.killed_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(h.proc.pid, signal.SIGKILL)

    def _bury(self, h: _Host) -> None:
        # After the signal: watch every known process of the engine go (the host is a zombie
        # until restart() reaps it: not alive). The lifeline ends the others.
        assert h.killed_at is not None
        left = set(h.pids)
        while True:
            left = {p for p in left if engine_procs.alive(p)}
            if not left or time.monotonic() - h.killed_at >= GONE_WITHIN_S:
                break
            time.sleep(_GONE_POLL_S)
        h.gone_at = time.monotonic()
        h.gone_wall = time.time()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        h.leftovers = tuple(sorted(left))
        h.buried.set()

    def _scan(self, h: _Host) -> None:
        # Under the lock, before a kill: what is alive of this engine now. The admin left
        # the host's process tree (Thespian detaches it); its own tree holds the actors.
        h.pids |= engine_procs.descendants(h.proc.pid)
        if h.admin_pid:
            h.pids |= engine_procs.descendants(h.admin_pid)

    def _end(self, h: _Host) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(h.proc.pid, signal.SIGKILL)
        h.proc.wait()
        h.sock.close()
        procs.wait_gone(h.pids, timeout_s=GONE_WITHIN_S)

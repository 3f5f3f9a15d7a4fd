"""The Thespian actor system under one engine: start it, ask it, stop it, and reap it.

Thespian's admin detaches into its own session and ``ActorSystem.shutdown()`` gives up
after 10 s, leaving busy actor processes alive. So the handle remembers every process of
its system (the admin's descendants) and, after shutdown, waits for each PID to end and
kills what is left — only PIDs of this system, never by name. When the embedding process
dies without a shutdown, :mod:`actors.runtime.lifeline` ends them instead.

Every process of the system is forked from :meth:`SystemHandle.start` or from the admin,
after it has set what they inherit: the patches, the bind host, the lifeline, Thespian's
log file in a private directory, and (for the forked processes) umask 077, so what they
create is private.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from loguru import logger
from thespian.actors import ActorSystem

from actors.config import EngineConfig
from actors.errors import EngineError
from actors.logging import private_thespian_log, thespian_log_defs
from actors.runtime import (
    actorguard,
    convention,
    frameauth,
    lifeline,
    netsafe,
    procs,
    thespian_fixes,
    transmits,
)
from actors.runtime.wiring import EngineStarted, StartEngine

__all__ = ["SystemHandle", "free_port", "install_patches"]


def install_patches() -> None:
    """Install the network-safety patches and the Thespian fix in this process (idempotent).

    Called before an actor system starts: every process it forks inherits them (frame
    authentication with a random key until :meth:`SystemHandle.start` sets the engine's),
    and the convention timers and transmit limits, which Thespian reads when its modules
    are imported (:mod:`actors.runtime.convention`, :mod:`actors.runtime.transmits`).
    """
    convention.apply()
    transmits.apply()
    thespian_fixes.apply()
    netsafe.apply()
    frameauth.apply()
    actorguard.apply()


def _private_by_default() -> None:
    # After lifeline's own at-fork handler (registered when it was imported, above), which
    # decides whether this child is an engine process. The umask is process-wide, so the
    # embedding process, which runs other code too, keeps its own.
    if lifeline.engine_process():
        os.umask(0o077)


os.register_at_fork(after_in_child=_private_by_default)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for the admin)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class SystemHandle:
    """One actor system and its supervisor."""

    def __init__(self, base: str, admin_port: int | None) -> None:
        self.base = base
        self.multiproc = base.startswith("multiproc")
        self.admin_port = (admin_port or free_port()) if self.multiproc else None
        self.admin_pid: int | None = None
        self.supervisor: Any = None
        self._system: Any = None
        self._pids: set[int] = set()
        self.stale = 0  # late answers to earlier asks, set aside
        self.on_stale: Callable[[Any], None] | None = None  # gets them (e.g. lost outcomes)

    def start(self, config: EngineConfig, seed: int, timeout_s: float) -> EngineStarted:
        """Start the system and the supervisor, which starts the router and the pool.

        Raises:
            EngineError: the supervisor did not report the engine started in time.
        """
        from actors.supervisor.actor import SupervisorActor

        self.open(config)
        try:
            self.supervisor = self._system.createActor(SupervisorActor)
            started = self._system.ask(
                self.supervisor, StartEngine(config=config, base=self.base, seed=seed), timeout_s
            )
            if not isinstance(started, EngineStarted):
                raise EngineError(f"the supervisor did not start the engine (got {started!r})")
        except BaseException:
            self._system.shutdown()
            frameauth.stop(self)
            raise
        if self.multiproc:
            self.admin_pid = started.admin_pid
            self._pids.add(started.supervisor_pid)
            self.remember_pids()
        return started

    def open(self, config: EngineConfig, capabilities: Mapping[str, Any] | None = None) -> None:
        """Start the actor system alone, with no actor in it (:meth:`start` adds the engine's).

        The patches, the transport key of ``config``, the bind address and the private
        Thespian log are set first, so the admin and everything it forks inherit them.
        ``capabilities`` are added to the admin's (a convention member's, say). Whoever
        creates actors in it and learns the admin's pid sets :attr:`admin_pid`, so that
        :meth:`stop` can reap the system's processes.
        """
        install_patches()
        # The transport key, in module state before the admin is forked: every process of
        # the system inherits it, and it touches neither disk nor argv.
        frameauth.start(self, config)
        private_thespian_log()
        caps: dict[str, Any] = {"Admin Port": self.admin_port} if self.multiproc else {}
        caps.update(capabilities or {})
        if self.multiproc:
            self._bind(config.bind_address)
        # The admin and every actor process are forked from here and inherit the warning
        # filters of this moment: give them Python's defaults, whatever the embedding
        # process (a test run with warnings as errors, say) has set.
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            # Thespian drops sockets without closing them; in actor processes that would print
            # a ResourceWarning per socket to stderr (the embedding process keeps its filters).
            warnings.filterwarnings("ignore", category=ResourceWarning)
            # The admin is forked in here; it and all it forks die with this process.
            with lifeline.tied_forks():
                self._system = ActorSystem(
                    self.base, caps, logDefs=thespian_log_defs(), transientUnique=True
                )

    @property
    def system(self) -> Any:
        """Thespian's ``ActorSystem`` of this handle (after :meth:`open`)."""
        return self._system

    def _bind(self, host: str) -> None:
        # Every process of the system is forked from here or from the admin, after this.
        netsafe.bind_to(host)
        if not ipaddress.IPv4Address(host).is_loopback:
            logger.bind(actor="engine").warning(
                "the actor system listens on {} (bind_address), not on loopback: its frames "
                "are authenticated, not encrypted; run it over a VPN (see README, Security)",
                "every interface" if host == netsafe.ANY_ADDRESS else host,
            )

    def ask(
        self,
        target: Any,
        msg: Any,
        timeout_s: float,
        *,
        accept: Callable[[Any], bool] | None = None,
        other: Callable[[Any], None] | None = None,
    ) -> Any:
        """Ask ``target`` and return its answer, or None after ``timeout_s``.

        Thespian's ask returns the first message that reaches this process, which may be
        a late answer to an earlier ask that timed out. With ``accept``, answers it rejects
        are handed to ``other`` (or dropped) and the wait goes on until the deadline.
        """
        reply = self._system.ask(target, msg, timeout_s)
        if accept is None:
            return reply
        deadline = time.monotonic() + timeout_s
        other = other or self.on_stale
        while reply is not None and not accept(reply):
            self.stale += 1
            if other is not None:
                other(reply)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            reply = self._system.listen(remaining)
        return reply

    def remember_pids(self, more: set[int] | None = None) -> None:
        """Record the current processes of this system (they are checked at ``stop``)."""
        if more:
            self._pids.update(more)
        if self.admin_pid is not None:
            self._pids.update(procs.descendants(self.admin_pid))

    @property
    def pids(self) -> frozenset[int]:
        """Every process of this actor system seen so far (empty on simpleSystemBase)."""
        pids = set(self._pids)
        if self.admin_pid is not None:
            pids.add(self.admin_pid)
        return frozenset(pids)

    def stop(self) -> None:
        """Shut the system down and make sure none of its processes is left."""
        self.remember_pids()
        self._system.shutdown()
        frameauth.stop(self)
        if self.admin_pid is None:
            return
        leftovers = procs.wait_gone(self.pids, timeout_s=5.0)
        for pid in leftovers:
            logger.bind(actor="engine").error(
                "process {} of this actor system outlived shutdown; killing it", pid
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        procs.wait_gone(leftovers, timeout_s=2.0)
        if leftovers:
            # The killed processes may have been reaped by now; record who was left.
            self._pids -= {p for p in leftovers if not procs.alive(p)}

"""One convention member's life: its config checked, its actor system started, watched, stopped.

A member is an actor system of its own (``multiprocTCPBase``) whose admin joins the
leader's convention: the leader is the engine's actor system (its admin leads, having no
leader to join), the members host account actors. The member's admin listens on the
address it is given (a VPN address in production) and joins only with the leader's
transport key, derived from a shared secret: without ``transport_secret_env`` or
``transport_secret_file`` the member refuses to start, since a random key could never
join. The system is started by :class:`actors.runtime.system.SystemHandle` like the
engine's (the same patches, key, bind address, timers and private Thespian log), with
the member's capabilities (:func:`actors.runtime.convention.member_capabilities`).

What it reports
    :class:`Member` tells ``emit`` (a JSON line each, for the command's stdout) when it is
    ``up`` (its admin's address and every pid of its system), ``joined`` or ``left`` the
    leader (as the member's admin sees it, through its agent,
    :class:`actors.member.actor.MemberAgent`), ``admin-lost`` and ``down``. A member that
    has not joined after :data:`JOIN_WARN_S` (or has been out of the convention that long
    since it left) logs why that may be, once per absence.

Its admin lost
    The actors of a member outlive its admin (they die with the process that started the
    member, :mod:`actors.runtime.lifeline`), and the leader drops a member whose admin
    died: they would serve on unseen. So a member whose admin has died kills every
    process of its system and exits with status 1 (:meth:`Member.watch`), for its service
    manager to start it again.

What its admin creates
    The member agent and the account actor only (:func:`actors.runtime.actorguard.limit_to`):
    the leader's requests for anything else are refused, as requests from outside are.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from actors.account.actor import AccountActor
from actors.config import EngineConfig
from actors.errors import ConfigError, EngineError
from actors.member.actor import MemberAgent, MemberQuery, MemberStatus
from actors.runtime import actorguard, convention, procs, transport_key
from actors.runtime.system import SystemHandle, free_port

__all__ = [
    "ASK_TIMEOUT_S",
    "HOSTED",
    "JOIN_WARN_S",
    "POLL_S",
    "Member",
    "MemberSetup",
    "member_config",
]

BASE = "multiprocTCPBase"
POLL_S = 0.5
"""How often the member process asks its agent whether it is in the leader's convention."""
ASK_TIMEOUT_S = 5.0
"""How long one such question may take (a busy member answers late, not never)."""
START_TIMEOUT_S = 30.0
"""How long the agent may take to answer its first question after the system started."""
JOIN_WARN_S = 10.0
"""A member not in the leader's convention after this long says what to check, once."""
HOSTED: tuple[type, ...] = (MemberAgent, AccountActor)
"""The only actor classes a member's admin creates, for itself or for the leader."""

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberSetup:
    """What a member is started with (checked: see :func:`member_config`)."""

    config: EngineConfig  # bind_address, transport secret and limits
    leader: tuple[str, int]  # the leader's admin, (IPv4 literal, port)
    member_id: str
    max_accounts: int
    admin_port: int = 0  # 0: a free port on the bind address


def member_config(
    path: str | None,
    *,
    bind: str | None = None,
    secret_env: str | None = None,
    secret_file: str | None = None,
) -> EngineConfig:
    """The member's ``EngineConfig``: the file's ``[engine]`` table, ``WAE_*``, the options.

    The secret is read now, so a member that could never join stops before it starts.

    Raises:
        ConfigError: a bad file or value, authentication off, no shared secret (neither
            ``transport_secret_env`` nor ``transport_secret_file``), or a secret that
            cannot be read or is too short.
    """
    overrides: dict[str, Any] = {}
    if bind is not None:
        overrides["bind_address"] = bind
    if secret_env is not None:
        overrides.update(transport_secret_env=secret_env, transport_secret_file="")
    if secret_file is not None:
        overrides.update(transport_secret_file=secret_file, transport_secret_env="")
    config = EngineConfig.load(path, **overrides)
    if not config.transport_auth:
        raise ConfigError(
            "transport_auth = false: a member joins its leader only over authenticated frames"
        )
    if not (config.transport_secret_env or config.transport_secret_file):
        raise ConfigError(
            "no shared secret: set transport_secret_env (--secret-env) or "
            "transport_secret_file (--secret-file) to the leader's; a member joins only "
            "with the key derived from it (README, Running on several hosts)"
        )
    transport_key.wanted(config)  # reads and checks the secret
    return config


class Member:
    """A member's actor system, from :meth:`start` to :meth:`stop`."""

    def __init__(self, setup: MemberSetup, emit: Emit) -> None:
        self.setup = setup
        self._emit = emit
        self._log = logger.bind(actor="member", member=setup.member_id)
        self._handle: SystemHandle | None = None
        self._agent: Any = None
        self._leader = f"{setup.leader[0]}:{setup.leader[1]}"
        self.joined = False

    def start(self) -> None:
        """Start the system and the agent; emit ``up``.

        Raises:
            EngineError: the system did not start, or its agent did not answer in time
                (what was started is stopped again).
        """
        setup, bind = self.setup, self.setup.config.bind_address
        caps = convention.member_capabilities(
            leader=setup.leader, member_id=setup.member_id, max_accounts=setup.max_accounts
        )
        actorguard.limit_to(*HOSTED)  # before the admin is forked: it inherits the limit
        handle = SystemHandle(BASE, setup.admin_port or free_port(bind))
        try:
            handle.open(setup.config, caps)
        except Exception as exc:
            raise EngineError(f"the member's actor system did not start: {exc}") from exc
        self._handle = handle
        try:
            self._agent = handle.system.createActor(MemberAgent)
            status = self._status(START_TIMEOUT_S)
            if status is None:
                raise EngineError(f"the member agent did not answer within {START_TIMEOUT_S} s")
        except BaseException:
            self.stop(report=False)
            raise
        handle.admin_pid = status.admin_pid
        handle.remember_pids({status.pid})
        self._emit(
            {
                "event": "up",
                "member": setup.member_id,
                "admin": f"{bind}:{handle.admin_port}",
                "leader": self._leader,
                "max_accounts": setup.max_accounts,
                "pid": os.getpid(),
                "admin_pid": status.admin_pid,
                "pids": sorted(handle.pids),
                "timers": dict(convention.TIMERS),
            }
        )
        self._log.info(
            "member {} up: admin at {}:{}, joining the leader at {}",
            setup.member_id,
            bind,
            handle.admin_port,
            self._leader,
        )
        self._seen(status)

    def watch(self, stop: threading.Event) -> bool:
        """Follow the member's place in the convention until ``stop`` is set.

        Returns False, early, when the member's admin has died: the actors it created would
        live on (they are tied to this process, not to the admin) and keep serving while
        the leader has dropped the member. The caller then stops the member.
        """
        out_since: float | None = time.monotonic()  # not in the convention since then
        warned = False  # about this absence
        answering = True
        while not stop.wait(POLL_S):
            if self._admin_gone():
                self._log.error(
                    "the member's admin (pid {}) is gone: stopping the whole member, so "
                    "that none of its actors goes on without it",
                    self._handle.admin_pid if self._handle else None,
                )
                self._emit({"event": "admin-lost", "member": self.setup.member_id})
                return False
            status = self._status(ASK_TIMEOUT_S)
            if status is not None:
                self._seen(status)
                assert self._handle is not None
                self._handle.remember_pids()  # accounts the leader placed here since
            elif answering:  # said once per silence, not every poll
                self._log.warning(
                    "the member agent did not answer within {} s: the member's actor "
                    "system is overloaded or broken",
                    ASK_TIMEOUT_S,
                )
            answering = status is not None
            now = time.monotonic()
            if self.joined:
                out_since, warned = None, False
            elif out_since is None:  # it left (the leader dropped it, or stopped)
                out_since = now
            if out_since is not None and not warned and now - out_since > JOIN_WARN_S:
                warned = True
                self._log.warning(
                    "not in the convention of the leader at {} after {:.0f} s: is it "
                    "running there, reachable from {}, with the same transport secret? "
                    "(a wrong secret shows in the leader's log as refused frames, mac)",
                    self._leader,
                    JOIN_WARN_S,
                    self.setup.config.bind_address,
                )
        return True

    def stop(self, *, report: bool = True) -> None:
        """Shut the system down (the admin leaves the convention) and reap its processes.

        Without its admin there is nobody to shut the system down: its processes are
        killed first, so that no actor of it runs on while the shutdown is tried.
        """
        gone = self._admin_gone()
        handle, self._handle = self._handle, None
        if handle is None:
            return
        if gone:
            for pid in handle.pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        handle.stop()
        if report:
            self._emit({"event": "down", "member": self.setup.member_id})

    def _admin_gone(self) -> bool:
        handle = self._handle
        return bool(handle and handle.admin_pid is not None and not procs.alive(handle.admin_pid))

    def _status(self, timeout_s: float) -> MemberStatus | None:
        assert self._handle is not None
        reply = self._handle.ask(
            self._agent,
            MemberQuery(),
            timeout_s,
            accept=lambda r: isinstance(r, MemberStatus),
        )
        return reply if isinstance(reply, MemberStatus) else None

    def _seen(self, status: MemberStatus) -> None:
        joined = self._leader in status.peers
        if joined != self.joined:
            self.joined = joined
            self._emit(
                {
                    "event": "joined" if joined else "left",
                    "member": self.setup.member_id,
                    "leader": self._leader,
                }
            )
            if joined:
                self._log.info("joined the leader at {}", self._leader)
            else:
                self._log.warning("out of the leader's convention at {}", self._leader)

"""``--members N``: convention members for a load run, as separate processes on one machine.

Each member is ``python -m apps.member`` (an actor system of its own, issue 14) bound to
its own loopback address (127.0.0.2, 127.0.0.3, ...), joining the engine's actor system
(the leader) at a fixed admin port with a shared transport secret made for this run. The
secret travels only through the environment (:data:`SECRET_ENV`, set in this process
before the engine starts, so that its processes inherit it, and given to each member's
environment): never on a command line nor on disk. The members are started and have
joined before the accounts are added, so that the supervisor places accounts on them.

A member's processes are its command (a process group of its own, as under a service
manager) and its actor system (whose admin detaches into a session of its own): a kill
SIGKILLs both groups and every pid the member reported, as a crashed host would lose
them. :meth:`MemberSet.close` stops the live members with SIGTERM (they leave the
convention and shut down), then kills whatever is left, and says which pids and which
ports on the members' addresses outlived it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

from actors import EngineConfig, EngineError
from actors.runtime import procs as _engine_procs
from actors.runtime.system import free_port

from . import procs

__all__ = [
    "SECRET_ENV",
    "MemberProc",
    "MemberSet",
    "accounts_by_host",
    "listening",
    "member_capacity",
]

SECRET_ENV = "LOADRUN_TRANSPORT_SECRET"
"""The environment variable that carries the run's shared secret to the engine and members
(not ``WAE_*``: those are read as config keys)."""
FIRST_HOST = 2
"""Member ``k`` (from 0) binds 127.0.0.(FIRST_HOST + k)."""
UP_TIMEOUT_S = 60.0
"""How long a member may take to print ``up``, and all of them to join the leader."""
STOP_TIMEOUT_S = 15.0
"""How long a member may take to leave and shut down after SIGTERM before it is killed."""
GONE_TIMEOUT_S = 10.0
"""How long a killed member's processes may take to be gone."""
_POLL_S = 0.1


def member_capacity(accounts: int, members: int) -> int:
    """The default ``--max-accounts`` of each member: an even share with the leader."""
    return max(1, math.ceil(accounts / (members + 1)))


def accounts_by_host(stats: Any) -> dict[str, int]:
    """How many accounts each host runs (``leader`` or a member's id) in an engine's stats."""
    return dict(sorted(Counter(e.host or "?" for e in stats.of_role("account")).items()))


def listening(hosts: tuple[str, ...], *, of: set[int] | None = None) -> list[str]:
    """``host:port`` of every TCP socket listening on one of ``hosts`` (Linux /proc).

    With ``of``, only the sockets that those processes hold (others, a test's members
    say, may listen on the same addresses).
    """
    wanted = {socket.inet_aton(h)[::-1].hex().upper(): h for h in hosts}
    inodes = None if of is None else _socket_inodes(of)
    found = []
    with open("/proc/net/tcp") as fh:
        for line in fh.read().splitlines()[1:]:
            fields = line.split()
            host, port = fields[1].split(":")
            if fields[3] != "0A" or host not in wanted:  # 0A: LISTEN
                continue
            if inodes is None or fields[9] in inodes:
                found.append(f"{wanted[host]}:{int(port, 16)}")
    return found


def _socket_inodes(pids: set[int]) -> set[str]:
    found: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        found.add(link[8:-1])
    return found


class MemberProc:
    """One ``python -m apps.member`` process; a thread reads its JSON events."""

    def __init__(self, member_id: str, host: str, leader: str, max_accounts: int, logs: str):
        self.member_id, self.host = member_id, host
        self.events: list[dict[str, Any]] = []
        self.up: dict[str, Any] = {}
        self.ports: set[str] = set()  # host:port its processes listened on (seen at the end)
        self.stderr_path = os.path.join(logs, f"{member_id}.err")
        argv = [
            *("-m", "apps.member", "--leader", leader, "--bind", host),
            *("--member-id", member_id, "--max-accounts", str(max_accounts)),
            *("--secret-env", SECRET_ENV, "--log-level", "WARNING"),
        ]
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, *argv],
                env=dict(os.environ),  # SECRET_ENV is set in this process (MemberSet.secure)
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,  # its own process group, as a service manager would
            )
        self._reader = threading.Thread(target=self._read, name=f"member-{member_id}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))

    def wait_up(self, deadline: float) -> None:
        """Wait for its ``up`` event.

        Raises:
            EngineError: it exited or did not say ``up`` in time (with its stderr's tail).
        """
        while not self.up:
            self.up = next((e for e in list(self.events) if e.get("event") == "up"), {})
            if self.up:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise EngineError(f"member {self.member_id} did not start: {self.stderr_tail()}")
            time.sleep(_POLL_S)

    def stderr_tail(self, size: int = 800) -> str:
        """The end of what it logged (its stderr goes to a file in the run's directory)."""
        try:
            with open(self.stderr_path, errors="replace") as fh:
                return fh.read()[-size:].strip()
        except OSError:
            return ""

    def pids(self) -> set[int]:
        """Its command and every process of its actor system that it reported or forked."""
        found = {self.proc.pid, *self.up.get("pids", ())}
        admin = self.up.get("admin_pid")
        if admin:
            found |= _engine_procs.descendants(admin)
        return found

    def _groups(self) -> set[int]:
        """Its command's process group and its actor system's (the admin's session)."""
        groups = {self.proc.pid}
        with contextlib.suppress(ProcessLookupError):
            if self.up.get("admin_pid"):
                groups.add(os.getpgid(self.up["admin_pid"]))
        return groups

    def signal_groups(self, signum: int) -> set[int]:
        """Send ``signum`` to :meth:`_groups`; return the pids they held (as :meth:`pids`)."""
        pids = self.pids()
        for group in self._groups():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signum)
        return pids

    def kill(self) -> set[int]:
        """SIGKILL its command's process group and its actor system's; return their pids."""
        pids = self.pids()
        self.ports |= set(listening((self.host,), of=pids))
        self.signal_groups(signal.SIGKILL)
        for pid in pids:  # any process that changed groups
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def reap(self) -> None:
        """Collect its command's exit status and its reader thread (after it ended)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(GONE_TIMEOUT_S)
        self._reader.join(GONE_TIMEOUT_S)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class MemberSet:
    """The run's members: the secret, the leader's admin port, start, replace, close.

    Args:
        count: members kept running (a killed one is replaced by a new one).
        max_accounts: each member's ``--max-accounts``.
        bind: the leader's address (the engine's ``bind_address``).
        admin_port: the leader's admin port (None: a free one, fixed for the run).
    """

    def __init__(
        self, count: int, max_accounts: int, *, bind: str, admin_port: int | None = None
    ) -> None:
        self.count = count
        self.max_accounts = max_accounts
        self.bind = bind
        self.admin_port = admin_port or free_port(bind)
        self.live: list[MemberProc] = []
        self.all: list[MemberProc] = []
        self.hosts = tuple(f"127.0.0.{FIRST_HOST + k}" for k in range(count))
        self._logs = tempfile.mkdtemp(prefix="wae-loadrun-members-")  # 0700
        self._previous = os.environ.get(SECRET_ENV)
        self._pids: set[int] = set()

    def secure(self, cfg: EngineConfig) -> EngineConfig:
        """A fresh secret in :data:`SECRET_ENV`, and ``cfg`` reading its key from there."""
        os.environ[SECRET_ENV] = secrets.token_urlsafe(48)
        return dataclasses.replace(
            cfg, transport_auth=True, transport_secret_env=SECRET_ENV, transport_secret_file=""
        )

    def start_all(self, engine: Any) -> dict[str, int]:
        """Start every member and wait until the supervisor counts them all up.

        Raises:
            EngineError: a member did not start, or they did not all join in time.
        """
        for host in self.hosts:
            self.start_one(host)
        deadline = time.monotonic() + UP_TIMEOUT_S
        for member in self.live:
            member.wait_up(deadline)
        if not self.wait_joined(engine, self.count, deadline):
            raise EngineError(
                f"the engine did not count {self.count} members up within {UP_TIMEOUT_S:g} s "
                "(is 127.0.0.2 reachable? every 127.0.0.0/8 address is on Linux's loopback)"
            )
        return {m.member_id: m.proc.pid for m in self.live}

    def start_one(self, host: str) -> MemberProc:
        """Start one more member on ``host`` with a new id (``m1``, ``m2``, ...)."""
        member = MemberProc(
            f"m{len(self.all) + 1}",
            host,
            f"{self.bind}:{self.admin_port}",
            self.max_accounts,
            self._logs,
        )
        self.all.append(member)
        self.live.append(member)
        return member

    def wait_joined(self, engine: Any, up: int, deadline: float) -> bool:
        """Wait until the engine's supervisor counts ``up`` members up (or ``deadline``)."""
        while engine.stats().counters.get("supervisor.members_up", 0) < up:
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL_S)
        return True

    def rotate(self, member: MemberProc) -> None:
        """Put ``member`` last: the next fault takes the member harmed longest ago."""
        self.live.remove(member)
        self.live.append(member)

    def killed(self, member: MemberProc, pids: set[int]) -> None:
        """Book a member killed (its pids are checked at :meth:`close`)."""
        self.live.remove(member)
        self._pids |= pids

    def close(self) -> dict[str, Any]:
        """Stop the live members (SIGTERM), kill what is left; say what outlived them."""
        for member in self.live:
            pids = member.pids()  # its account actors too: its admin's children, while it lives
            self._pids |= pids
            member.ports |= set(listening((member.host,), of=pids))
            with contextlib.suppress(ProcessLookupError):
                member.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for member in self.live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                member.proc.wait(max(0.0, deadline - time.monotonic()))
        for member in self.all:
            self._pids |= member.kill() if member.proc.poll() is None else member.pids()
            member.reap()
        left = procs.wait_gone(self._pids, timeout_s=GONE_TIMEOUT_S)
        ours = {p for m in self.all for p in m.ports}
        ports = sorted(set(listening(tuple(sorted({m.host for m in self.all})))) & ours)
        if self._previous is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = self._previous
        failed = {
            m.member_id: m.stderr_tail()
            for m in self.all
            if m.proc.returncode not in (0, -signal.SIGKILL)
        }
        shutil.rmtree(self._logs, ignore_errors=True)
        return {
            "pids": sorted(self._pids),
            "leftover_pids": sorted(left),
            "ports": sorted(ours),
            "leftover_ports": ports,
            "failed": failed,  # member id -> the end of its stderr
        }

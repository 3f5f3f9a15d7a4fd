"""Starting, measuring and stopping the benchmark's server processes, and proving them gone.

Each server is ``python -m apps.bench.serve KIND`` in a session of its own, with the run's
secrets and a marker in its environment. Thespian's admin detaches into a session of its
own, so the engine's actor processes are not the gateway's descendants: they are found by
that marker, which every process forked from the gateway inherits. :meth:`Servers.close`
stops each server with SIGTERM (the gateway then shuts its engine down), waits for every
marked process to end, SIGKILLs what is left after the deadline and says which.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from apps.bench.serve import APP_SECRET_ENV, VERIFY_TOKEN_ENV
from apps.loadrun.procs import wait_gone

__all__ = ["Server", "Servers", "cpu_seconds", "processes_with"]

_ROOT = str(Path(__file__).resolve().parents[2])
_MARK_ENV = "BENCH_GATEWAY_MARK"  # not WAE_*: the engine refuses unknown WAE_ variables
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 120.0
"""How long a server may take to listen (the gateway starts an engine first)."""
STOP_TIMEOUT_S = 60.0
"""How long a server may take to exit after SIGTERM (the engine's shutdown is 10 s)."""


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of ``pid`` so far, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2 :].split()  # the name may hold spaces: skip past it
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


@dataclass
class Server:
    """One running server: its process, port and processes by role.

    Attributes:
        kind: ``gateway`` or ``bare``.
        proc: the server's process.
        port: where it listens on 127.0.0.1.
        roles: pids by role: ``gateway`` or ``bare`` (the server process), and for the
            gateway its engine's ``router``, ``ai_pool``, ``account``, ``supervisor``, and
            ``engine`` (every process of its actor system).
    """

    kind: str
    proc: subprocess.Popen[bytes]
    port: int
    roles: dict[str, list[int]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> dict[int, float]:
        """CPU seconds so far of each of the server's processes that is still alive."""
        pids = {p for pids in self.roles.values() for p in pids}
        return {p: s for p in pids if (s := cpu_seconds(p)) is not None}

    def cpu_by_role(self, before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
        """CPU seconds by role between two :meth:`cpu` readings (processes alive at both).

        ``other`` is the engine's processes with no role (its admin and logger).
        """
        seen: set[int] = set()
        out: dict[str, float] = {}
        for role, pids in self.roles.items():
            if role != "engine":
                out[role] = sum(after[p] - before[p] for p in pids if p in before and p in after)
                seen.update(pids)
        rest = [p for p in self.roles.get("engine", []) if p not in seen]
        if rest:
            out["other"] = sum(after[p] - before[p] for p in rest if p in before and p in after)
        return out


class Servers:
    """The run's servers; :meth:`start` each, then :meth:`close` (idempotent).

    Args:
        directory: the run's private directory (the gateway's store, the servers' logs).
        secret: the app secret both servers check signatures with.
    """

    def __init__(self, directory: str, secret: str) -> None:
        self.directory = directory
        self.mark = uuid.uuid4().hex
        self.env = {
            **os.environ,
            APP_SECRET_ENV: secret,
            VERIFY_TOKEN_ENV: uuid.uuid4().hex,
            _MARK_ENV: self.mark,
            # Thespian's own log goes in the run's directory, removed with it.
            "THESPLOG_FILE": os.path.join(directory, "thespian.log"),
            "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])),
        }
        self.running: list[Server] = []
        self.exit_codes: dict[str, int | None] = {}
        self.left: set[int] = set()
        self._logs: list[IO[bytes]] = []

    def start(self, kind: str, *extra: str) -> Server:
        """Start ``python -m apps.bench.serve kind`` and wait until it listens.

        Raises:
            RuntimeError: it exited or did not listen within :data:`START_TIMEOUT_S`
                (the message ends with its log's last lines).
        """
        log = open(os.path.join(self.directory, f"{kind}.log"), "wb")  # noqa: SIM115
        self._logs.append(log)
        cmd = [sys.executable, "-m", "apps.bench.serve", kind, "--dir", self.directory, *extra]
        proc = subprocess.Popen(
            cmd,
            cwd=self.directory,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # a Ctrl-C of the benchmark reaches it as our SIGTERM
        )
        server = Server(kind, proc, 0)
        self.running.append(server)
        line = _first_line(proc, START_TIMEOUT_S)
        if not line:
            raise RuntimeError(f"the {kind} server did not start:\n{self.log_tail(kind)}")
        hello = json.loads(line)
        server.port = int(hello["port"])
        server.roles = {role: list(pids) for role, pids in hello["roles"].items()}
        return server

    def marked(self) -> set[int]:
        """Every live process that carries this run's marker (the servers and their engine)."""
        return processes_with(f"{_MARK_ENV}={self.mark}".encode())

    def close(self) -> set[int]:
        """SIGTERM each server, wait for it, then for every marked process to be gone.

        Returns:
            The pids that were still alive after the deadlines (SIGKILLed), empty when all
            ended by themselves. Exit codes are in :attr:`exit_codes`.
        """
        for server in self.running:
            with contextlib.suppress(ProcessLookupError):
                server.proc.send_signal(signal.SIGTERM)
        for server in self.running:
            try:
                self.exit_codes[server.kind] = server.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                self.exit_codes[server.kind] = server.proc.wait(STOP_TIMEOUT_S)
                self.left.add(server.pid)
            if server.proc.stdout is not None:
                server.proc.stdout.close()
        # The engine's processes end with its shutdown; its lifeline ends them otherwise.
        self.left |= wait_gone(self.marked(), timeout_s=10.0)
        self.running.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        return self.left

    def log_tail(self, kind: str, lines: int = 20) -> str:
        """The last lines of a server's log (stderr), for an error message."""
        path = os.path.join(self.directory, f"{kind}.log")
        with contextlib.suppress(OSError), open(path, "rb") as fh:
            return "\n".join(fh.read().decode(errors="replace").splitlines()[-lines:])
        return ""


def _first_line(proc: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """The first line ``proc`` prints, or b"" when it exits or the deadline passes first."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    data = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                return b""
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:  # it exited
                return b""
            data += chunk
    return data.split(b"\n", 1)[0]


def processes_with(needle: bytes) -> set[int]:
    """Live processes (not this one) whose environment holds the entry ``needle``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            # A process gone meanwhile, or not ours to read, is not one of them.
            with contextlib.suppress(OSError), open(f"/proc/{entry}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    found.add(int(entry))
    return found

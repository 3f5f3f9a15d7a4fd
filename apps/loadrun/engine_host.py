"""The engine host: one ``Engine`` in a child process of the load runner (``--crash-every``).

To SIGKILL a whole engine (the process that embeds it and every actor process) and start
it again on the same intake store, the runner cannot embed the engine itself: it runs
``python -m apps.loadrun.host_main FD`` in a session of its own (see
:class:`apps.loadrun.hosted.HostedEngine`), ``FD`` being its end of a socketpair. The host
reads one :class:`HostSetup`, starts the engine, adds the providers and the accounts (a
recovered account's messages are admitted again then), answers ``("ready", info)``, and
serves requests ``(op, kwargs)`` one at a time, each answered ``("ok", value)`` or
``("err", kind, text)``:

- ``submit_many(messages)``, ``outcomes(timeout, max_items)``, ``stats()``: the ``Engine``'s;
- ``pids()``: every process of its actor system (what must be gone after a kill);
- ``shutdown()``: the engine's ordered shutdown, answered with the report and the pids;
  outcomes can still be collected after it;
- ``exit()``: answer, then exit 0.

The host's actor processes are tied to it by the engine's lifeline (they exit within
~100 ms of a SIGKILL of the host). Its end of the socketpair is closed in every process
it forks, so the runner reads end-of-file as soon as the host itself is gone. When the
runner goes away (end-of-file on the channel), the host shuts its engine down and exits.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actors import ConfigError, Engine, EngineConfig, EngineError
from actors.logging import configure_logging
from actors.runtime import procs
from protocols import ProviderSpec, Scalar

from . import hostwire
from .runlog import attach_file

__all__ = ["HostSetup", "main"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostSetup:
    """What a host needs to start its engine; sent as the channel's first frame."""

    config: EngineConfig
    base: str
    admin_port: int | None = None
    seed: int = 1
    providers: tuple[ProviderSpec, ...] = ()
    accounts: tuple[tuple[str, str, dict[str, Scalar]], ...] = ()  # (id, transport, options)
    log_path: str | None = None
    log_level: str = "WARNING"


def _admin_pid(engine: Engine) -> int | None:
    try:
        return engine.stats().admin_pid
    except EngineError:  # stopped, or the supervisor is busy
        return None


def _intake_counters(engine: Engine) -> dict[str, int]:
    # What this engine recovered from the store at start (and re-admitted with its accounts).
    try:
        counters = engine.stats().counters
    except EngineError:
        return {}
    return {k: int(v) for k, v in counters.items() if k.startswith("intake.")}


def _system_pids(engine: Engine) -> list[int]:
    pids = set(engine.pids)
    admin = _admin_pid(engine)
    if admin:
        pids |= procs.descendants(admin)
    return sorted(pids)


def _start(setup: HostSetup) -> Engine:
    engine = Engine(setup.config, base=setup.base, admin_port=setup.admin_port, seed=setup.seed)
    engine.start()
    try:
        for spec in setup.providers:
            result = engine.add_provider(spec)
            if not result.ok:
                raise EngineError(f"provider {spec.name!r}: {result.detail or result.error}")
        for account_id, transport, options in setup.accounts:
            engine.add_account(account_id, transport=transport, options=options)
    except BaseException:
        engine.shutdown()
        raise
    return engine


def _serve(sock: socket.socket, engine: Engine) -> None:
    ops: dict[str, Any] = {
        "submit_many": engine.submit_many,
        "outcomes": engine.outcomes,
        "stats": engine.stats,
        "pids": lambda: _system_pids(engine),
        "shutdown": lambda: (engine.shutdown(), sorted(engine.pids)),
    }
    while True:
        try:
            op, kwargs = hostwire.recv(sock)
            if op == "exit":
                hostwire.send(sock, ("ok", None))
                return
            reply: tuple[Any, ...]
            try:
                reply = ("ok", ops[op](**kwargs))
            except Exception as exc:
                reply = ("err", type(exc).__name__, str(exc))
            hostwire.send(sock, reply)
        except hostwire.ChannelClosedError:
            return  # the runner is gone: nobody will collect anything (main shuts down)


def main(argv: Sequence[str] | None = None) -> int:
    """Host one engine on the channel whose file descriptor is ``argv[0]``; the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m apps.loadrun.host_main FD", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(args[0]))
    sock.set_inheritable(False)
    # Forked actor processes must not keep the channel open: the runner reads end-of-file
    # when this process dies only if no other process holds its end.
    os.register_at_fork(after_in_child=sock.close)
    try:
        setup = hostwire.recv(sock, timeout_s=60.0)
    except (hostwire.ChannelClosedError, TimeoutError):
        return 2
    if not isinstance(setup, HostSetup):
        print(f"engine host: expected a HostSetup, got {type(setup).__name__}", file=sys.stderr)
        return 2
    if setup.log_path:
        attach_file(setup.log_path, setup.log_level)
    else:  # run() called without the command line's log file: stderr at the run's level
        configure_logging(level=setup.log_level)
    t0 = time.monotonic()
    try:
        engine = _start(setup)
    except Exception as exc:
        kind = "ConfigError" if isinstance(exc, ConfigError) else type(exc).__name__
        with contextlib.suppress(hostwire.ChannelClosedError):
            hostwire.send(sock, ("err", kind, str(exc)))
        return 1
    try:
        info = {
            "pids": _system_pids(engine),
            "admin_pid": _admin_pid(engine),
            "intake": _intake_counters(engine),
            "start_s": time.monotonic() - t0,
        }
        hostwire.send(sock, ("ready", info))
        _serve(sock, engine)
    except hostwire.ChannelClosedError:
        pass  # the runner went away before it heard we were ready
    finally:
        engine.shutdown()  # idempotent; a no-op after the runner's own shutdown
        sock.close()
    return 0

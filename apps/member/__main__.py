"""``python -m apps.member --leader HOST:PORT --bind ADDR --member-id ID --secret-env NAME``.

Starts a convention member: an actor system of its own, listening on ``--bind`` (127.0.0.1
unless told; give it the host's VPN address), that joins the engine's actor system at
``--leader`` with the shared transport secret (required) and hosts account actors placed
on it. It prints one JSON line per event on stdout (``up``, ``joined``, ``left``, ``down``)
and logs to stderr, and runs until SIGTERM or SIGINT: then its actor system leaves the
convention and shuts down, and no process of it is left. Exit status: 0 after that, 1
when the system did not start or its admin died (the member then kills its other
processes), 2 for bad options, a bad config, no secret or missing dependencies.

Order matters: the dependencies are checked first (one line, not a traceback), then the
options and the secret, then logging is configured and the system is started (forking its
processes) before the signal handlers are installed, so that the forked admin keeps the
default ones. Only the standard library and :mod:`apps.deps` are imported before the check.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from apps.deps import CORE, CORE_INSTALL, require

__all__ = ["main"]


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a wa-actor-engine convention member: an actor system that joins "
        "the engine's (the leader) and hosts account actors.",
    )
    parser.add_argument(
        "--leader", required=True, help="the leader's admin, HOST:PORT (the engine's admin port)"
    )
    parser.add_argument(
        "--member-id", required=True, help="this member's id, unique in the convention"
    )
    parser.add_argument(
        "--bind",
        help="address this member's ports listen on and advertise (default: the config's "
        "bind_address, 127.0.0.1); never every interface unless you say 0.0.0.0",
    )
    parser.add_argument(
        "--admin-port", type=int, default=0, help="this member's admin port (default: any free)"
    )
    parser.add_argument(
        "--max-accounts",
        type=int,
        help="account actors this member hosts at most (default: max_instances)",
    )
    parser.add_argument("--config", help="TOML file with an [engine] table (WAE_* apply too)")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--secret-env", help="environment variable holding the shared secret")
    secret.add_argument("--secret-file", help="file (mode 0600) holding the shared secret")
    parser.add_argument("--log-level", default="INFO", help="loguru level (default INFO)")
    parser.add_argument("--json-logs", action="store_true", help="log JSON lines")
    return parser


def _emit(event: dict[str, Any]) -> None:
    print(json.dumps(event, sort_keys=True), flush=True)


def main(argv: Sequence[str] | None = None, *, prog: str = "wae-member") -> int:
    """Run a member until SIGTERM or SIGINT; return the exit status."""
    args = _parser(prog).parse_args(argv)
    try:
        require(prog, CORE, CORE_INSTALL)
    except SystemExit as exc:
        return int(exc.code or 2)

    from loguru import logger

    from actors.errors import ConfigError, EngineError
    from actors.logging import configure_logging
    from actors.runtime.convention import parse_leader
    from apps.member.run import Member, MemberSetup, member_config

    configure_logging(level=args.log_level, json=args.json_logs)
    log = logger.bind(actor="member")
    try:
        config = member_config(
            args.config, bind=args.bind, secret_env=args.secret_env, secret_file=args.secret_file
        )
        max_accounts = config.max_instances if args.max_accounts is None else args.max_accounts
        setup = MemberSetup(
            config=config,
            leader=parse_leader(args.leader),
            member_id=args.member_id,
            max_accounts=max_accounts,
            admin_port=args.admin_port,
        )
        member = Member(setup, _emit)
        member.start()  # forks the system: before the handlers below
    except (ConfigError, ValueError) as exc:
        log.error("bad configuration: {}", exc)
        return 2
    except EngineError as exc:
        log.error("the member did not start: {}", exc)
        return 1
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        served = member.watch(stop)  # False: its admin died
    finally:
        member.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if served else 1


if __name__ == "__main__":
    sys.exit(main(prog="python -m apps.member"))

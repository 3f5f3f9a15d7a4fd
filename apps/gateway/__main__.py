"""``python -m apps.gateway --config gateway.toml`` (or ``--demo``): run the webhook gateway.

Order matters: the dependencies are checked (one line saying what to install, not a
traceback, when aiohttp is missing), the config and the secrets are checked, logging is
configured, and the engine is started (forking its actor processes) before the event loop
or any thread exists. SIGTERM or SIGINT stops accepting connections, lets requests in
progress finish, shuts the engine down and logs its ``ShutdownReport``.

``--demo`` needs no config: the gateway runs against a fake Graph API and a fake OpenAI
server on 127.0.0.1 with made-up secrets, and prints how to send it a signed webhook
(:mod:`apps.gateway.demo`).

Only the standard library and :mod:`apps.deps` are imported before the check, so that
this module loads whatever is installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from apps.deps import CORE, HTTP, HTTP_INSTALL, require

if TYPE_CHECKING:
    from apps.gateway.config import GatewayConfig

__all__ = ["main"]


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="WhatsApp Cloud API webhook gateway with an embedded wa-actor-engine.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--config", help="TOML file: [gateway], [engine], [[accounts]], ...")
    mode.add_argument(
        "--demo",
        action="store_true",
        help="no config: run against a fake Graph API and a fake OpenAI server on 127.0.0.1 "
        "with made-up secrets, and print how to send a signed webhook with curl",
    )
    parser.add_argument("--host", help="listen address (overrides [gateway] host)")
    parser.add_argument(
        "--port",
        type=int,
        help="listen port, 0 for any (overrides [gateway] port; --demo: 8080 if free, else any)",
    )
    parser.add_argument(
        "--admin-port",
        type=int,
        help="the engine's Thespian admin port, where members join (--config only; "
        "overrides [gateway] admin_port; 0: any free port)",
    )
    parser.add_argument("--log-level", default="INFO", help="loguru level (default INFO)")
    parser.add_argument("--json-logs", action="store_true", help="log JSON lines")
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = "wae-gateway") -> int:
    """Run the gateway; returns the exit status.

    Returns:
        0 after a clean stop, 1 when the engine did not start or the port could not be
        bound, 2 for bad options, a bad config or missing dependencies.
    """
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.demo and args.admin_port is not None:
        parser.error("--admin-port needs --config (the demo's engine picks its own)")
    try:
        require(prog, (*CORE, *HTTP), HTTP_INSTALL)
    except SystemExit as exc:
        return int(exc.code or 2)
    return _run_demo(args) if args.demo else _run_config(args)


def _run_config(args: argparse.Namespace) -> int:
    from loguru import logger

    from actors.errors import ConfigError, EngineError
    from actors.logging import configure_logging
    from apps.gateway.app import Gateway, start_engine
    from apps.gateway.config import load_gateway_config, resolve_secrets
    from apps.gateway.serve import run

    configure_logging(level=args.log_level, json=args.json_logs)
    log = logger.bind(actor="gateway")
    try:
        config = load_gateway_config(args.config)
        if args.admin_port is not None:  # validated like the file's key
            config = _with_admin_port(config, args.admin_port)
        secrets = resolve_secrets(config)
    except ConfigError as exc:
        log.error("bad configuration: {}", exc)
        return 2
    host = args.host if args.host is not None else config.host
    port = args.port if args.port is not None else config.port
    try:
        engine = start_engine(config)  # forks actor processes: before any thread
    except EngineError as exc:
        log.error("the engine did not start: {}", exc)
        return 1
    return run(Gateway(config, engine, secrets, shutdown_engine=True), host, port)


def _with_admin_port(config: GatewayConfig, admin_port: int) -> GatewayConfig:
    """``config`` with ``--admin-port``; its error names the option, not the dataclass."""
    from actors.errors import ConfigError

    try:
        return dataclasses.replace(config, admin_port=admin_port)
    except ConfigError as exc:
        where = "--admin-port overrides [gateway]"
        raise ConfigError(str(exc).replace("GatewayConfig", where, 1)) from None


def _run_demo(args: argparse.Namespace) -> int:
    from loguru import logger

    from actors.errors import EngineError
    from actors.logging import configure_logging
    from apps.gateway.app import Gateway
    from apps.gateway.config import resolve_secrets
    from apps.gateway.demo import Demo, pick_port
    from apps.gateway.serve import run

    configure_logging(level=args.log_level, json=args.json_logs)
    host = args.host if args.host is not None else "127.0.0.1"
    demo = Demo(host, pick_port(host, args.port))
    try:
        try:
            engine, config = demo.start()  # the engine first, then the fakes' threads
        except EngineError as exc:
            logger.bind(actor="gateway").error("the engine did not start: {}", exc)
            return 1
        gateway = Gateway(config, engine, resolve_secrets(config), shutdown_engine=True)

        def show(listen_host: str, listen_port: int) -> None:
            print(demo.instructions(listen_host, listen_port), flush=True)

        return run(gateway, config.host, config.port, on_listening=show)
    finally:
        demo.close()  # after the engine's shutdown: calls in flight could finish


if __name__ == "__main__":
    sys.exit(main(prog="python -m apps.gateway"))

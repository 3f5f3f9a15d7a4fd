"""``python -m apps.gateway --config gateway.toml``: run the reference webhook gateway.

Order matters: the config and the secrets are checked, logging is configured, and the
engine is started (forking its actor processes) before the event loop or any thread
exists. SIGTERM or SIGINT stops accepting connections, lets requests in progress finish,
shuts the engine down and logs its ``ShutdownReport``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from aiohttp import web
from loguru import logger

from actors.errors import ConfigError, EngineError
from actors.logging import configure_logging
from apps.gateway.app import Gateway, start_engine
from apps.gateway.config import load_gateway_config, resolve_secrets

__all__ = ["main", "serve"]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(gateway: Gateway, host: str, port: int, stop: asyncio.Event | None = None) -> None:
    """Serve ``gateway`` on ``host:port`` until ``stop`` is set or SIGTERM/SIGINT arrives."""
    log = logger.bind(actor="gateway")
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    runner = gateway.runner()
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, stop.set)
        addresses = ", ".join(f"{a[0]}:{a[1]}" for a in runner.addresses)
        log.info("gateway listening on {}", addresses)
        await stop.wait()
        log.info("gateway stopping: no new connections, then the engine shuts down")
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        await runner.cleanup()  # stops the sites, finishes requests, runs the app's cleanup


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wae-gateway",
        description="WhatsApp Cloud API webhook gateway with an embedded wa-actor-engine.",
    )
    parser.add_argument("--config", required=True, help="TOML file: [gateway], [engine], ...")
    parser.add_argument("--host", help="listen address (overrides [gateway] host)")
    parser.add_argument("--port", type=int, help="listen port, 0 for any (overrides port)")
    parser.add_argument("--log-level", default="INFO", help="loguru level (default INFO)")
    parser.add_argument("--json-logs", action="store_true", help="log JSON lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gateway; returns the exit status (0 after a clean stop, 2 for bad config)."""
    args = _parser().parse_args(argv)
    configure_logging(level=args.log_level, json=args.json_logs)
    log = logger.bind(actor="gateway")
    try:
        config = load_gateway_config(args.config)
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
    gateway = Gateway(config, engine, secrets, shutdown_engine=True)
    try:
        asyncio.run(serve(gateway, host, port))
    except OSError as exc:  # e.g. the port is taken
        log.error("the gateway could not serve on {}:{}: {}", host, port, exc)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 130
    finally:
        with contextlib.suppress(EngineError):
            engine.shutdown()  # idempotent; covers a failure before the app's cleanup ran
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Serving a :class:`Gateway` until SIGTERM or SIGINT: the server side of ``wae-gateway``.

SIGTERM or SIGINT stops accepting connections, lets requests in progress finish, and
runs the app's cleanup (which shuts the engine down and logs its ``ShutdownReport``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from aiohttp import web
from loguru import logger

from actors.errors import EngineError
from apps.gateway.app import Gateway

__all__ = ["run", "serve"]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Listening = Callable[[str, int], None]
"""Called with the address and port once the server listens (port 0 resolved)."""


async def serve(
    gateway: Gateway,
    host: str,
    port: int,
    stop: asyncio.Event | None = None,
    *,
    on_listening: Listening | None = None,
) -> None:
    """Serve ``gateway`` on ``host:port`` until ``stop`` is set or SIGTERM/SIGINT arrives.

    Args:
        gateway: the gateway to serve (its engine already started).
        host, port: where to listen; port 0 takes any free port.
        stop: an event that ends the serving when set (signals set it too).
        on_listening: told the address and port the server listens on, once it does.

    Raises:
        OSError: the address could not be bound (the port is taken, say).
    """
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
        if on_listening is not None:
            first = runner.addresses[0]
            on_listening(str(first[0]), int(first[1]))
        await stop.wait()
        log.info("gateway stopping: no new connections, then the engine shuts down")
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        await runner.cleanup()  # stops the sites, finishes requests, runs the app's cleanup


def run(gateway: Gateway, host: str, port: int, *, on_listening: Listening | None = None) -> int:
    """Serve ``gateway`` in a new event loop until a signal; shut its engine down in any case.

    Returns:
        0 after a clean stop, 1 when the address could not be bound, 130 for a Ctrl-C that
        came before the signal handlers were installed.
    """
    try:
        asyncio.run(serve(gateway, host, port, on_listening=on_listening))
    except OSError as exc:  # e.g. the port is taken
        logger.bind(actor="gateway").error(
            "the gateway could not serve on {}:{}: {}", host, port, exc
        )
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        with contextlib.suppress(EngineError):
            gateway.engine.shutdown()  # idempotent; covers a failure before the app's cleanup
    return 0

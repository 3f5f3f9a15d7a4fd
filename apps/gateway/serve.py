"""Serving a :class:`Gateway` until SIGTERM or SIGINT: the server side of ``wae-gateway``.

SIGTERM or SIGINT stops accepting connections, lets requests in progress finish, and
runs the app's cleanup (which shuts the engine down and logs its ``ShutdownReport``).
Connections go through the gateway's guard (read deadlines, the connection cap); the
open-file limit is raised for the cap first, or the cap lowered to fit it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from loguru import logger

from actors.errors import EngineError
from apps.gateway.app import Gateway
from apps.gateway.guard import fit_fd_limit

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
    gateway.guard.max_connections = fit_fd_limit(gateway.config.max_connections)
    runner = gateway.runner()
    await runner.setup()
    try:
        await gateway.site(runner, host, port).start()
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, stop.set)
        addresses = ", ".join(f"{a[0]}:{a[1]}" for a in runner.addresses)
        config = gateway.config
        log.info(
            "gateway listening on {} (at most {} connections; deadlines: headers {:g} s, "
            "body {:g} s, keep-alive {:g} s)",
            addresses,
            gateway.guard.max_connections,
            config.header_timeout_s,
            config.body_timeout_s,
            config.keepalive_timeout_s,
        )
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

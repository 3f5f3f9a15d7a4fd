"""The two servers of the gateway benchmark, each run as ``python -m apps.bench.serve KIND``.

``gateway`` is the real gateway, started by the code ``wae-gateway`` runs
(:func:`~apps.gateway.app.start_engine`, :class:`~apps.gateway.app.Gateway`,
:func:`~apps.gateway.serve.run`): an embedded engine on ``multiprocTCPBase``,
:data:`NUMBERS` numbers on the loopback transport and the instant ``echo`` provider.
``bare`` is an aiohttp handler that checks the same ``X-Hub-Signature-256`` with the same
function (:func:`~apps.gateway.signature.signature_problem`) and answers 200: what HTTP
and the signature alone cost, the ceiling the gateway is measured against.

Each runs in a process of its own, so that it has its own interpreter and event loop as in
production, and its CPU can be read (and profiled) apart from the client's. Once it
listens, it prints one JSON line on stdout: ``{"port": ..., "roles": {...}}`` (the
gateway's engine processes by role, read from ``Engine.stats()`` before any thread
exists). SIGTERM or SIGINT stops it; the gateway then shuts its engine down.

The app secret and verify token come from :data:`APP_SECRET_ENV` and
:data:`VERIFY_TOKEN_ENV`; the engine's config from the defaults and ``WAE_*`` variables,
with its files (intake store, dead letters) in the directory given by ``--dir``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from actors.config import EngineConfig
from actors.errors import EngineError
from actors.logging import configure_logging
from apps.gateway.app import Gateway, start_engine
from apps.gateway.config import AccountEntry, GatewayConfig, resolve_secrets
from apps.gateway.serve import run
from apps.gateway.signature import HEADER, signature_problem
from protocols import ProviderSpec

__all__ = [
    "APP_SECRET_ENV",
    "NUMBERS",
    "VERIFY_TOKEN_ENV",
    "bare_app",
    "gateway_config",
    "main",
    "numbers",
]

APP_SECRET_ENV = "BENCH_WHATSAPP_APP_SECRET"
VERIFY_TOKEN_ENV = "BENCH_WHATSAPP_VERIFY_TOKEN"
"""Where the servers read the run's made-up secrets (not ``WAE_*``: those are config keys)."""
NUMBERS = 3
"""WhatsApp numbers (accounts) the gateway serves by default."""
_HOST = "127.0.0.1"


def numbers(count: int = NUMBERS) -> list[tuple[str, str]]:
    """``(account_id, phone_number_id)`` of each benchmark number, in order."""
    return [(f"bench-{i + 1}", f"1000000000{i + 1:05d}") for i in range(count)]


def gateway_config(directory: str, count: int = NUMBERS) -> GatewayConfig:
    """The gateway's config: loopback numbers, the instant echo provider, files in ``directory``."""
    engine = EngineConfig.load(  # defaults and WAE_* variables; the files stay in directory
        dead_letter_path=os.path.join(directory, "dead-letters.bin"),
        intake_path=os.path.join(directory, "intake", "intake.db"),
    )
    accounts = tuple(
        AccountEntry(account_id=account, phone_number_id=phone, transport="loopback")
        for account, phone in numbers(count)
    )
    echo = ProviderSpec(name="echo", kind="echo", priority=1)
    return GatewayConfig(
        host=_HOST,
        port=0,
        verify_token_env=VERIFY_TOKEN_ENV,
        app_secret_env=APP_SECRET_ENV,
        base="multiprocTCPBase",
        engine=engine,
        accounts=accounts,
        providers=(echo,),
    )


def _announce(port: int, roles: dict[str, list[int]]) -> None:
    print(json.dumps({"port": port, "roles": roles}), flush=True)


def _serve_gateway(directory: str, count: int) -> int:
    config = gateway_config(directory, count)
    try:
        engine = start_engine(config)  # forks the actor processes: before any thread
    except EngineError as exc:
        print(f"the engine did not start: {exc}", file=sys.stderr)
        return 1
    roles: dict[str, list[int]] = {}
    for actor in engine.stats().actors:
        if actor.pid is not None:
            roles.setdefault(actor.role, []).append(actor.pid)
    roles["engine"] = sorted(engine.pids)  # every process of its actor system
    gateway = Gateway(config, engine, resolve_secrets(config), shutdown_engine=True)
    return run(
        gateway,
        config.host,
        config.port,
        on_listening=lambda _host, port: _announce(port, {"gateway": [os.getpid()], **roles}),
    )


def bare_app(secret: bytes) -> web.Application:
    """An aiohttp app whose ``POST /webhook`` checks the signature and answers 200 (or 401)."""

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        if signature_problem(secret, body, request.headers.get(HEADER)) is not None:
            return web.Response(status=401, text="bad signature")
        return web.json_response({"accepted": 1})

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    return app


async def _bare(secret: bytes) -> None:
    # As the gateway's runner: no access log, the body as sent.
    runner = web.AppRunner(bare_app(secret), access_log=None, auto_decompress=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        await web.TCPSite(runner, _HOST, 0).start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        _announce(int(runner.addresses[0][1]), {"bare": [os.getpid()]})
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the gateway or the bare handler until SIGTERM; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m apps.bench.serve")
    parser.add_argument("kind", choices=("gateway", "bare"))
    parser.add_argument("--dir", required=True, help="where the gateway's engine keeps files")
    parser.add_argument("--numbers", type=int, default=NUMBERS)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    configure_logging(level=args.log_level)
    if args.kind == "gateway":
        return _serve_gateway(args.dir, args.numbers)
    asyncio.run(_bare(os.environ[APP_SECRET_ENV].encode("utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

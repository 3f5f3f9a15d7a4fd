"""The gateway's HTTP side: an aiohttp application around an embedded :class:`Engine`.

The gateway reaches the engine through its asyncio face, :class:`AsyncEngine`: every
engine call runs on ONE dedicated engine thread (the event loop never blocks; webhooks,
outcome collection, health and metrics take turns on that thread), and webhooks that
arrive while a submission is in flight share the next ``submit_many`` (one intake commit
for all of them, no timer). The engine must be started before that thread exists (and
before the loop starts its own executor): on ``multiprocTCPBase`` it forks actor
processes from this process, and forking a process that runs threads is unsafe.

Build it from a config object (tests do) or a file (``python -m apps.gateway``)::

    engine = start_engine(config)                  # before any thread
    gateway = Gateway(config, engine, resolve_secrets(config), shutdown_engine=True)
    runner = gateway.runner()                      # an aiohttp AppRunner for gateway.app
    await runner.setup(); await gateway.site(runner, host, port).start()  # not web.TCPSite:
    # gateway.site puts every connection under the guard (read deadlines, the cap)
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from loguru import logger

from actors.engine import Engine
from actors.engine.aio_engine import AsyncEngine
from actors.errors import EngineError
from apps.gateway.config import GatewayConfig, GatewaySecrets
from apps.gateway.delivery import DeliveryStatus
from apps.gateway.desk import DeliveryDesk, DeliveryListener, DeliverySubscription
from apps.gateway.guard import ConnectionGuard, GuardedSite
from apps.gateway.health import health_report
from apps.gateway.metrics import GatewayMetrics, SubmitTimes
from apps.gateway.outcomes import OutcomeCollector
from apps.gateway.receipts import ReadReceipts
from apps.gateway.sampled import SampledLog
from apps.gateway.signature import signature_problem
from apps.gateway.webhook import (
    PayloadError,
    SubmitSummary,
    WebhookBatch,
    decode_payload,
    parse_payload,
    summarize,
)
from protocols import Accepted, Rejected, ShutdownReport, StatsReply

__all__ = ["Gateway", "start_engine"]

SIGNATURE_HEADER = "X-Hub-Signature-256"
_READ_CHUNK = 64 * 1024


def start_engine(config: GatewayConfig, *, seed: int | None = None) -> Engine:
    """Start an engine on ``config.base`` with the config's providers and accounts.

    Its admin, where members join, is on ``config.admin_port`` (0: a free one, logged).
    Call it before starting any thread (see the module docstring).

    Raises:
        EngineError: a provider or an account was refused (the engine is shut down).
    """
    admin_port = config.admin_port or None  # None: the engine picks a free port
    engine = Engine(config.engine, base=config.base, admin_port=admin_port, seed=seed).start()
    try:
        add_edges(engine, config)
    except BaseException:
        engine.shutdown()
        raise
    return engine


def add_edges(engine: Engine, config: GatewayConfig) -> None:
    """Add the config's providers, then its accounts (each with its share of the number's
    throughput left after read receipts: :meth:`GatewayConfig.account_options`).

    Raises:
        EngineError: a provider or an account was refused.
    """
    for spec in config.providers:
        result = engine.add_provider(spec)
        if not result.ok:
            raise EngineError(f"provider {spec.name!r} refused: {result.detail or result.error}")
    for account in config.accounts:
        engine.add_account(
            account.account_id,
            transport=account.transport,
            options=config.account_options(account),
        )


class Gateway:
    """The webhook gateway: routes, the engine's asyncio face, the outcome collector.

    Args:
        config: the gateway config (accounts give the phone_number_id mapping).
        engine: a started engine; the gateway never starts it.
        secrets: the verify token and app secret.
        shutdown_engine: shut the engine down when the app is cleaned up (the gateway
            owns it); False leaves that to the caller (tests that share an engine).

    Attributes:
        app: the aiohttp application.
        aio: the engine's asyncio face (its thread ends at the app's cleanup).
        metrics: the gateway's Prometheus registry (``/metrics``).
        counters: the gateway's own counters (``metrics.counters``).
        guard: the read deadlines and the connection cap (for sites from :meth:`site`).
        report: the engine's ``ShutdownReport`` once the gateway shut it down.
    """

    def __init__(
        self,
        config: GatewayConfig,
        engine: Engine,
        secrets: GatewaySecrets,
        *,
        shutdown_engine: bool = False,
    ) -> None:
        self.config = config
        self.engine = engine
        self.metrics = GatewayMetrics()
        self.counters = self.metrics.counters
        self.guard = ConnectionGuard.for_config(config, self.counters)
        self.metrics.track_connections(lambda: len(self.guard))
        # Submit times of accepted messages, for the latency histogram; bounded like the
        # engine's own ledger (messages in flight plus uncollected outcomes).
        self._submitted = SubmitTimes(
            config.engine.capacity + config.engine.max_uncollected_outcomes
        )
        self.report: ShutdownReport | None = None
        self._secrets = secrets
        self._accounts = config.account_map
        self._shutdown_engine = shutdown_engine
        # No thread exists until the first call: creating it here is fork-safe. Webhooks
        # that arrive while a submission is in flight share the next one; no more than
        # the engine could hold at once wait for it (past that: 503, Retry-After).
        self.aio = AsyncEngine(engine=engine, max_waiting_messages=config.engine.capacity)
        self._collector: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._sampled = SampledLog()
        self.log = logger.bind(actor="gateway")
        self.deliveries = DeliveryDesk(self._accounts, self.counters, self._log_sampled)
        self._outcomes = OutcomeCollector(
            lambda: self.aio.outcome_batches(config.outcome_wait_s),
            wait_s=config.outcome_wait_s,
            metrics=self.metrics,
            submitted=self._submitted,
            deliveries=self.deliveries,
            sampled=self._sampled,
            log=self.log,
        )
        self.receipts = ReadReceipts.for_config(
            config,
            self.counters,
            # The text holds server text: an argument, never a format string.
            lambda key, text: self._log_sampled(key, "warning", "{}", text),
        )
        self.app = self._make_app()

    def _make_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.max_body_bytes, middlewares=[self.guard.middleware]
        )
        app.router.add_get("/webhook", self._handshake)
        app.router.add_post("/webhook", self._webhook)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    # --- delivery reports (the application's side) -------------------------------------------

    def subscribe_deliveries(self, callback: DeliveryListener) -> DeliverySubscription:
        """Call ``callback`` with each new :class:`DeliveryStatus` of a reply (sent,
        delivered, read, failed with its error code and title), on the event loop.

        Raises:
            ListenerLimitError: the gateway already has 50 delivery listeners.
        """
        return self.deliveries.subscribe(callback)

    def delivery_status(self, message_id: str) -> DeliveryStatus | None:
        """The furthest status WhatsApp reported for the reply to ``message_id``, if any."""
        return self.deliveries.book.latest(message_id)

    def _log_sampled(self, key: str, level: str, text: str, /, *args: object) -> None:
        if n := self._sampled.should_log(key):
            self.log.log(level.upper(), text + " ({} so far)", *args, n)

    def runner(self, **kwargs: Any) -> web.AppRunner:
        """An ``AppRunner`` for :attr:`app` with the gateway's server settings."""
        # The signature covers the bytes as sent: never inflate a compressed body first.
        kwargs.setdefault("auto_decompress", False)
        kwargs.setdefault("shutdown_timeout", 5.0)
        kwargs.setdefault("access_log", None)
        # aiohttp's keep-alive timer (recent releases also close a connection that never
        # sends a request with it) is a backstop: past both deadlines of the guard.
        cfg = self.config
        kwargs.setdefault(
            "keepalive_timeout", max(cfg.keepalive_timeout_s, cfg.header_timeout_s) + 1
        )
        return web.AppRunner(self.app, **kwargs)

    def site(self, runner: web.BaseRunner, host: str, port: int) -> GuardedSite:
        """A TCP site for ``runner`` (set up) on ``host:port``, through :attr:`guard`."""
        return GuardedSite(runner, host, port, self.guard)

    # --- lifecycle ------------------------------------------------------------------------

    async def _on_startup(self, app: web.Application) -> None:
        self._stop = asyncio.Event()
        await self.receipts.open()
        self._collector = asyncio.create_task(self._outcomes.run(self._stop), name="wae-outcomes")
        self.log.info(
            "gateway up: {} accounts, engine on {}", len(self._accounts), self.engine.base
        )

    async def _on_cleanup(self, app: web.Application) -> None:
        self._stopping = True
        if self._stop is not None:
            self._stop.set()  # a failing collector gives up instead of retrying
        try:
            await self.receipts.close()
            if self._shutdown_engine:
                self.report = await self.aio.shutdown()
                # The collector ends by itself after the outcomes the shutdown left.
                await self._collector_done()
                self._log_report(self.report)
        finally:
            # A shared engine runs on: the collector ends after its current poll, whose
            # outcomes it records (none is dropped); then the engine thread ends.
            await self.aio.aclose()
            await self._collector_done()

    async def _collector_done(self) -> None:
        if self._collector is not None:
            await self._collector

    def _log_report(self, report: ShutdownReport) -> None:
        stages = ", ".join(
            f"{s.name} {s.seconds:.3f} s (drained {s.drained}, abandoned {s.abandoned})"
            for s in report.stages
        )
        self.log.info(
            "engine shut down in {:.3f} s: {}; {} messages abandoned",
            report.total_s,
            stages,
            len(report.abandoned),
        )

    # --- handlers -------------------------------------------------------------------------

    async def _handshake(self, request: web.Request) -> web.Response:
        """``GET /webhook``: echo ``hub.challenge`` when the verify token matches."""
        query = request.query
        token = query.get("hub.verify_token", "").encode("utf-8", "replace")
        expected = self._secrets.verify_token.encode("utf-8")
        # Compare even when the mode is wrong, so timing says nothing about the token.
        token_ok = hmac.compare_digest(token, expected)
        if query.get("hub.mode") != "subscribe" or not token_ok:
            self.counters.inc("handshakes", result="forbidden")
            if n := self._sampled.should_log("handshake refused"):
                self.log.warning("webhook handshake refused from {} ({} so far)", request.remote, n)
            return web.Response(status=403, text="forbidden")
        self.counters.inc("handshakes", result="ok")
        self.log.info("webhook handshake accepted")
        return web.Response(text=query.get("hub.challenge", ""), content_type="text/plain")

    def _answer(self, status: int, body: Any, *, retry: bool = False) -> web.Response:
        self.counters.inc("webhooks", code=str(status))
        headers = {"Retry-After": str(self.config.retry_after_s)} if retry else None
        if isinstance(body, str):
            return web.Response(status=status, text=body, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The body, or None once it passes ``max_body_bytes`` (nothing more is read).

        Raises:
            ConnectionError: the connection was lost (or closed by the guard: the body
                missed its deadline) before the body was read.
        """
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return None
        body = bytearray()
        while chunk := await request.content.read(_READ_CHUNK):
            body += chunk
            if len(body) > limit:
                return None
        self.guard.body_read(request)
        return bytes(body)

    async def _webhook(self, request: web.Request) -> web.Response:
        """``POST /webhook``: 413, 401, 400, then submit and answer 200 or 503."""
        try:
            body = await self._read_body(request)
        except ConnectionError:  # nobody is left to answer: the guard counted a stall
            return web.Response(status=408, text="request timeout")
        if body is None:
            if n := self._sampled.should_log("body too large"):
                limit = self.config.max_body_bytes
                self.log.warning("webhook body over {} bytes refused ({} so far)", limit, n)
            return self._answer(413, "body too large")
        problem = signature_problem(
            self._secrets.app_secret, body, request.headers.get(SIGNATURE_HEADER)
        )
        if problem is not None:
            self.counters.inc("signature_failures", why=problem)
            if n := self._sampled.should_log(f"signature {problem}"):
                self.log.warning(
                    "webhook signature {} from {} ({} so far)", problem, request.remote, n
                )
            return self._answer(401, "bad signature")
        try:
            doc = decode_payload(body)
        except PayloadError as exc:
            if n := self._sampled.should_log("bad payload"):
                self.log.warning("webhook payload refused ({} so far): {}", n, exc)
            return self._answer(400, "bad payload")
        batch = parse_payload(doc, self._accounts, self.config.fallback_replies)
        self._count_batch(batch)
        self.deliveries.take(batch, time.time())
        summary = SubmitSummary()
        if batch.messages:
            started = self._submitted.start(
                (m.message_id for m in batch.messages), time.monotonic()
            )
            try:
                results = await self.aio.submit_many(batch.messages)
            except Exception as exc:  # the engine is unavailable: WhatsApp will redeliver
                self._submitted.cancel(started)
                self.counters.inc("engine_errors", call="submit_many")
                if n := self._sampled.should_log("submit failed"):
                    self.log.error("submitting messages failed ({} so far): {}", n, exc)
                return self._answer(503, {"error": "engine unavailable"}, retry=True)
            summary = summarize(results)
            self._count_results(results)
            self.receipts.mark_accepted(batch.messages, results)
            # Only what this call noted and the engine did not accept: a refused redelivery
            # of a message in flight keeps the first submission's time.
            self._submitted.cancel(
                started - {r.message_id for r in results if isinstance(r, Accepted)}
            )
        answer = {"accepted": summary.accepted, "rejected": summary.rejected, "items": batch.counts}
        return self._answer(summary.http_status, answer, retry=summary.retry)

    def _count_batch(self, batch: WebhookBatch) -> None:
        for kind, n in batch.counts.items():
            if n:
                self.counters.inc("messages", n, kind=kind)
        for status, n in batch.statuses.items():
            self.counters.inc("statuses", n, status=status)
        for phone_id in batch.unknown_phone_ids:
            if self._sampled.should_log(f"phone {phone_id}"):
                self.log.warning("webhook for phone_number_id {!r}: no account has it", phone_id)
        if batch.problems and self._sampled.should_log("payload problems"):
            self.log.warning("webhook items skipped: {}", "; ".join(batch.problems))

    def _count_results(self, results: Iterable[Accepted | Rejected]) -> None:
        for result in results:
            if isinstance(result, Accepted):
                self.counters.inc("submissions", result="accepted", reason="")
                continue
            self.counters.inc("submissions", result="rejected", reason=result.reason)
            if result.reason == "duplicate":
                continue  # redeliveries are expected: counted, not logged
            if n := self._sampled.should_log(f"reject {result.reason}"):
                self.log.bind(message_id=result.message_id, reason=result.reason).warning(
                    "message {} rejected {} ({} so far): {}",
                    result.message_id,
                    result.reason,
                    n,
                    result.detail,
                )

    async def _engine_stats(self) -> StatsReply | None:
        if self._stopping:
            return None
        try:
            return await self.aio.stats()
        except Exception:  # not running, or not answering: reported as down
            self.counters.inc("engine_errors", call="stats")
            return None

    async def _healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: each number's state; 503 when the engine is down or no number
        can send (:mod:`apps.gateway.health`)."""
        stats = await self._engine_stats()
        status, body = health_report(stats, self._accounts, self.deliveries.numbers)
        return web.json_response(body, status=status)

    async def _metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the engine's stats and the gateway's metrics, for Prometheus."""
        stats = await self._engine_stats()
        body, content_type = self.metrics.exposition(stats, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

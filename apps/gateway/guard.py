"""Shedding slow clients: deadlines for headers, bodies and idle keep-alive, and a cap.

aiohttp has no deadline for reading a request's headers (its ``keepalive_timeout`` closes
a connection that never completes a request only in recent releases, and only after that
long), and none for its body: a client that sends half a request and stalls holds a
socket, a file descriptor and a handler for as long as it likes, and enough of them keep
everyone else out. The guard sits between the listening socket and aiohttp:

- :class:`GuardedSite` listens like ``web.TCPSite`` but wraps each connection's protocol
  (:class:`_Connection`, a proxy in front of aiohttp's ``RequestHandler``), so the guard
  sees every connection open and close, and the first byte of each request;
- :meth:`ConnectionGuard.middleware` sees a request's headers complete (the handler
  starts) and its end; :meth:`ConnectionGuard.body_read` sees its body complete;
- :class:`~apps.gateway.connections.ConnectionTable` (pure) keeps the phases and deadlines;
  one timer, armed for the earliest deadline, closes the connections that miss theirs.

A connection that misses a deadline is aborted (no lingering for a client that stalls) and
counted in ``wae_gateway_connections_closed_total{reason}``; a connection refused at the
cap gets a 503 and is counted there too (``reason="refused"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web
from loguru import logger

from apps.gateway.config import GatewayConfig
from apps.gateway.connections import ConnectionTable, Phase, fd_budget
from apps.gateway.metrics import GatewayCounters

__all__ = ["ConnectionGuard", "GuardedSite", "fit_fd_limit"]

ProtocolFactory = Callable[[], asyncio.Protocol]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CLOSE_REASON: dict[Phase, str] = {
    "head": "header_timeout",
    "body": "body_timeout",
    "idle": "idle_timeout",
    "busy": "",  # busy connections have no deadline
}


class _Connection(asyncio.Protocol):
    """One client connection: a proxy in front of aiohttp's protocol, made on admission."""

    __slots__ = ("_guard", "_inner", "_server", "transport")

    def __init__(self, guard: ConnectionGuard, server: ProtocolFactory) -> None:
        self._guard = guard
        self._server = server
        self._inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream server's is one
        if self._guard._admit(self):
            self._inner = self._server()
            self._inner.connection_made(self.transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._guard._data(self)
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard._lost(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def abort(self) -> None:
        """Close at once: a client that stalls gets no lingering close."""
        if self.transport is not None:
            self.transport.abort()


class ConnectionGuard:
    """The connection cap and the read deadlines of one gateway.

    Args:
        counters: where closes and refusals are counted.
        max_connections: the most client connections open at once.
        header_timeout_s: from a connection's start (or the first byte of a later request
            on it) to the end of the request's headers.
        body_timeout_s: from the end of the headers to the end of the body.
        keepalive_timeout_s: how long an answered connection may wait for its next request.
        retry_after_s: the ``Retry-After`` of the 503 a refused connection gets.
    """

    def __init__(
        self,
        counters: GatewayCounters,
        *,
        max_connections: int,
        header_timeout_s: float,
        body_timeout_s: float,
        keepalive_timeout_s: float,
        retry_after_s: int,
    ) -> None:
        self._table: ConnectionTable[_Connection] = ConnectionTable(
            max_connections=max_connections,
            head_s=header_timeout_s,
            body_s=body_timeout_s,
            idle_s=keepalive_timeout_s,
        )
        self._counters = counters
        self._by_transport: dict[asyncio.BaseTransport, _Connection] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._refusal = (
            "HTTP/1.1 503 Service Unavailable\r\n"
            f"Retry-After: {retry_after_s}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        self._log = logger.bind(actor="gateway")
        self._refused_logged = 0

    @classmethod
    def for_config(cls, config: GatewayConfig, counters: GatewayCounters) -> ConnectionGuard:
        """The guard of a gateway with ``config`` (its deadlines, cap and Retry-After)."""
        return cls(
            counters,
            max_connections=config.max_connections,
            header_timeout_s=config.header_timeout_s,
            body_timeout_s=config.body_timeout_s,
            keepalive_timeout_s=config.keepalive_timeout_s,
            retry_after_s=config.retry_after_s,
        )

    def __len__(self) -> int:
        """The client connections open now (refused ones are never counted)."""
        return len(self._table)

    @property
    def max_connections(self) -> int:
        """The cap (lowered by :func:`fit_fd_limit` when descriptors are short)."""
        return self._table.max_connections

    @max_connections.setter
    def max_connections(self, value: int) -> None:
        self._table.max_connections = value

    def count(self, phase: Phase) -> int:
        """How many open connections are in ``phase`` (``head``, ``body``, ``busy``, ``idle``)."""
        return self._table.count(phase)

    def factory(self, server: ProtocolFactory) -> ProtocolFactory:
        """The protocol factory for ``loop.create_server``: ``server``'s, guarded."""
        return lambda: _Connection(self, server)

    # --- what the request side tells the guard ----------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Headers complete: the deadline becomes the body's (or none); then idle again."""
        conn = self._by_transport.get(request.transport) if request.transport else None
        if conn is None:  # served without a GuardedSite (or already closed)
            return await handler(request)
        self._enter(conn, "body" if request.body_exists else "busy")
        try:
            return await handler(request)
        finally:
            # A body left unread keeps its deadline while aiohttp drains it; else idle.
            if not request.body_exists or request.content.is_eof():
                self._enter(conn, "idle")

    def body_read(self, request: web.Request) -> None:
        """The handler has read the whole body: no deadline while the gateway works."""
        conn = self._by_transport.get(request.transport) if request.transport else None
        if conn is not None:
            self._enter(conn, "busy")

    # --- what the connections tell the guard -------------------------------------------------

    def _admit(self, conn: _Connection) -> bool:
        loop = asyncio.get_running_loop()
        admission = self._table.admit(conn, loop.time())
        if not admission.admitted:
            self._refuse(conn)
            return False
        if admission.shed is not None:
            self._counters.inc("connections_closed", reason="shed")
            admission.shed.abort()
        assert conn.transport is not None
        self._by_transport[conn.transport] = conn
        self._arm(self._table.next_deadline())
        return True

    def _refuse(self, conn: _Connection) -> None:
        self._counters.inc("connections_closed", reason="refused")
        self._refused_logged += 1
        n = self._refused_logged
        if n <= 10 or n % 1000 == 0:
            self._log.warning(
                "connection refused: {} open, every one busy with a request ({} so far)",
                len(self._table),
                n,
            )
        assert conn.transport is not None
        conn.transport.write(self._refusal)
        conn.transport.close()

    def _data(self, conn: _Connection) -> None:
        if self._table.phase(conn) == "idle":
            self._enter(conn, "head")  # a later request's first byte starts its clock

    def _lost(self, conn: _Connection) -> None:
        self._table.forget(conn)
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)

    def _enter(self, conn: _Connection, phase: Phase) -> None:
        self._arm(self._table.enter(conn, phase, asyncio.get_running_loop().time()))

    # --- the one timer -----------------------------------------------------------------------

    def _arm(self, deadline: float | None) -> None:
        if deadline is None or (self._timer is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = asyncio.get_running_loop().call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        for conn, phase in self._table.expired(now):
            reason = _CLOSE_REASON[phase]
            self._counters.inc("connections_closed", reason=reason)
            conn.abort()
        self._arm(self._table.next_deadline())

    def stop(self) -> None:
        """Cancel the timer (the server is stopping; aiohttp closes the connections)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard`.

    Like ``web.TCPSite(runner, host, port)``: ``runner.addresses`` lists it and
    ``runner.cleanup()`` stops it.

    Args:
        runner: a set-up runner (``runner.setup()`` done).
        host, port: where to listen; port 0 takes any free port.
        guard: the guard every connection goes through.
        backlog: the listen backlog: bursts of connections wait there to be accepted.
    """

    __slots__ = ("_guard", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        """Listen; raises ``OSError`` when the address cannot be bound."""
        await super().start()
        server = self._runner.server
        assert server is not None  # BaseSite's constructor checked it
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.factory(server), self._host, self._port, backlog=self._backlog
        )

    async def stop(self) -> None:
        self._guard.stop()
        await super().stop()


def fit_fd_limit(max_connections: int) -> int:
    """Raise this process's open-file limit for ``max_connections``; return the cap that fits.

    See :func:`apps.gateway.connections.fd_budget`. Logs a warning when the cap had to be
    lowered.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target, cap = fd_budget(max_connections, soft, hard, infinity=resource.RLIM_INFINITY)
    if target != soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft_now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_now != target:  # the raise was refused: fit the cap to what there is
        _, cap = fd_budget(max_connections, soft_now, soft_now, infinity=resource.RLIM_INFINITY)
    if cap < max_connections:
        logger.bind(actor="gateway").warning(
            "max_connections {} lowered to {}: the open-file limit is {} (raise it with "
            "ulimit -n or LimitNOFILE=)",
            max_connections,
            cap,
            soft_now,
        )
    return cap

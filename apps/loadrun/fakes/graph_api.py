"""A fake WhatsApp Cloud API (Graph API): real HTTP on loopback, in a thread.

Used by the tests (through ``tests.fakes.graph_api``) and by the load runner's
``--edges fake``.

Usage::

    with FakeGraphAPI(token="t0k") as graph:
        graph.program(Behaviour.graph_error(131056), times=2)  # next 2 calls: pair rate
        graph.program(Behaviour(latency_s=0.2))                 # every later call: slow 200
        ...  # point the transport's api_base at graph.base_url
        assert graph.requests[0].bearer_ok

It serves ``POST /{version}/{phone_number_id}/messages`` on ``127.0.0.1`` and a free port
with aiohttp.web, on an event loop in a background thread, and answers like Graph: 200
``{"messages":[{"id":"wamid.FAKE<n>"}]}``, or ``{"error":{...}}`` with a code. A request
whose bearer token is not the expected one gets 401 with code 190, as from Graph.
A mark-as-read request (``{"status": "read", "message_id": ...}``, with or without a
``typing_indicator``; :attr:`Received.kind` ``"read"``) is answered ``{"success": true}``
and programmed apart: ``program(..., reads=True)``; sends never use up its script.
``GET /received`` lists the sends kept, as JSON, and the read requests apart (the
gateway's ``--demo`` points at it).

Which :class:`Behaviour` answers a call (of its kind), first match wins:

1. one programmed with ``times=N`` for the call's recipient (``to``), until used N times;
2. one programmed with ``times=N`` for any recipient, until used N times;
3. the standing one programmed for the recipient (``times=None``);
4. the standing default (``Behaviour()``: an immediate success unless reprogrammed).

Bounds: ``requests`` keeps the last ``max_requests`` received; a hanging call is released
when the fake closes or after ``max_hang_s``; ``close`` stops the server, releases every
hanging call and joins the thread, so no port or thread outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["Behaviour", "FakeGraphAPI", "Received"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Behaviour:
    """How the fake answers one call.

    Attributes:
        latency_s: wait this long before answering (server side).
        status: the HTTP status.
        error_code: answer a Graph error object with this code (and ``error_subcode``,
            and ``message`` instead of ``fake Graph error <code>``).
        retry_after: a ``Retry-After`` header to add.
        body: a raw body to send instead of the usual JSON (e.g. ``b"not json"``).
        hang: never answer (the call is released only when the fake closes).
        cut_body: announce the full body's length, send half of it, close the connection.
    """

    latency_s: float = 0.0
    status: int = 200
    error_code: int | None = None
    error_subcode: int | None = None
    message: str | None = None
    retry_after: str | None = None
    body: bytes | None = None
    hang: bool = False
    cut_body: bool = False

    @classmethod
    def graph_error(cls, code: int, *, status: int = 400, **more: Any) -> Behaviour:
        """A Graph error answer: ``{"error":{"code": code, ...}}`` with HTTP ``status``."""
        return cls(status=status, error_code=code, **more)


@dataclass(frozen=True, slots=True)
class Received:
    """One request the fake received.

    ``headers`` has no ``Authorization`` value; ``bearer_ok`` says whether it carried the
    expected ``Bearer <token>``. ``body`` is the parsed JSON (None if it was not JSON) and
    ``to`` its recipient field (``to``, else ``recipient``).
    """

    path: str
    headers: dict[str, str]
    bearer_ok: bool
    body: Any
    to: str | None

    @property
    def kind(self) -> str:
        """``"read"`` for a mark-as-read request (typing indicator or not), else ``"message"``."""
        return _kind_of(self.body)


def _kind_of(body: Any) -> str:
    return "read" if isinstance(body, dict) and body.get("status") == "read" else "message"


@dataclass(slots=True)
class _Scripted:
    behaviour: Behaviour
    left: int


@dataclass(slots=True)
class _Program:
    default: Behaviour = field(default_factory=Behaviour)
    per_to: dict[str, Behaviour] = field(default_factory=dict)
    scripted_any: deque[_Scripted] = field(default_factory=deque)
    scripted_to: dict[str, deque[_Scripted]] = field(default_factory=dict)

    def pick(self, to: str | None) -> Behaviour:
        for queue in (self.scripted_to.get(to or ""), self.scripted_any):
            if queue:
                head = queue[0]
                head.left -= 1
                if head.left <= 0:
                    queue.popleft()
                return head.behaviour
        return self.per_to.get(to or "", self.default)


class FakeGraphAPI:
    """A Graph API stand-in on ``127.0.0.1``; a context manager (or ``start``/``close``).

    Args:
        token: the bearer token calls must carry (others get 401/190); None accepts any.
        max_requests: how many received requests ``requests`` keeps (the most recent).
        max_hang_s: the longest a ``hang`` call is held before it is dropped.
    """

    def __init__(
        self,
        *,
        token: str | None = "test-token",
        max_requests: int = 10_000,
        max_hang_s: float = 60.0,
    ) -> None:
        self.token = token
        self.max_hang_s = max_hang_s
        self._received: deque[Received] = deque(maxlen=max_requests)
        self._program = _Program()
        self._reads = _Program()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._count = 0
        self._in_flight = 0
        self._peak = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeGraphAPI:
        """Start serving; ``base_url`` is set when this returns."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fake-graph-api", daemon=True)
        self._thread.start()
        try:
            port = asyncio.run_coroutine_threadsafe(self._serve(), loop).result(10)
        except BaseException:
            self.close()
            raise
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def close(self) -> None:
        """Release hanging calls, stop the server and join its thread. Idempotent."""
        loop, thread, self._loop = self._loop, self._thread, None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            if not thread.is_alive():
                loop.close()

    def __enter__(self) -> FakeGraphAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- programming and inspection ------------------------------------------------------------

    def program(
        self,
        behaviour: Behaviour,
        *,
        times: int | None = None,
        to: str | None = None,
        reads: bool = False,
    ) -> None:
        """Answer with ``behaviour``: the next ``times`` calls, or from now on (None).

        ``to`` limits it to calls for that recipient (digits, as in the request body).
        Scripted entries queue behind each other in the order they were programmed.
        ``reads`` programs the mark-as-read requests instead of the sends.
        """
        with self._lock:
            program = self._reads if reads else self._program
            if times is None:
                if to is None:
                    program.default = behaviour
                else:
                    program.per_to[to] = behaviour
            elif times > 0:
                scripted = _Scripted(behaviour, times)
                if to is None:
                    program.scripted_any.append(scripted)
                else:
                    program.scripted_to.setdefault(to, deque()).append(scripted)

    @property
    def requests(self) -> list[Received]:
        """The requests received (the last ``max_requests``), oldest first."""
        with self._lock:
            return list(self._received)

    @property
    def request_count(self) -> int:
        """Requests received since start, including those no longer in ``requests``."""
        with self._lock:
            return self._count

    @property
    def in_flight(self) -> int:
        """Requests being handled now (received, not yet answered)."""
        with self._lock:
            return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        """The most requests handled at once since start."""
        with self._lock:
            return self._peak

    # -- on the server's loop --------------------------------------------------------------------

    async def _serve(self) -> int:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{version}/{phone_number_id}/messages", self._handle)
        app.router.add_get("/received", self._list_received)
        # A short shutdown grace: hanging calls are released first, so none needs long.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def _stop(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _list_received(self, request: web.Request) -> web.Response:
        """``GET /received``: the requests kept (path, recipient, JSON body), oldest first."""
        with self._lock:
            kept = [{"path": r.path, "to": r.to, "body": r.body} for r in self._received]
            count = self._count
        sends = [r for r in kept if _kind_of(r["body"]) == "message"]
        reads = [r for r in kept if _kind_of(r["body"]) == "read"]
        doc = {"count": count, "received": sends, "read_requests": reads}
        text = json.dumps(doc, indent=2) + "\n"
        return web.Response(text=text, content_type="application/json")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
        try:
            return await self._answer(request)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        to = (body.get("to") or body.get("recipient")) if isinstance(body, dict) else None
        to = to if isinstance(to, str) else None
        kind = _kind_of(body)
        bearer_ok = (
            self.token is None or request.headers.get("Authorization") == f"Bearer {self.token}"
        )
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        with self._lock:
            self._count += 1
            self._received.append(Received(request.path, headers, bearer_ok, body, to))
            program = self._reads if kind == "read" else self._program
            behaviour = program.pick(to) if bearer_ok else None
        if behaviour is None:
            return _graph_error(Behaviour.graph_error(190, status=401))
        if behaviour.latency_s > 0:
            await asyncio.sleep(behaviour.latency_s)
        if behaviour.hang:
            assert self._release is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.max_hang_s)
            return web.Response(status=503, text="released")
        if behaviour.error_code is not None:
            return _graph_error(behaviour)
        payload = behaviour.body
        if payload is None and kind == "read":
            payload = b'{"success": true}'
        if payload is None:
            wamid = f"wamid.FAKE{next(self._ids)}"
            payload = json.dumps(
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": wamid}],
                }
            ).encode()
        headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
        if behaviour.cut_body:
            return await _cut_short(request, behaviour.status, payload)
        return web.Response(
            status=behaviour.status, body=payload, content_type="application/json", headers=headers
        )


def _graph_error(behaviour: Behaviour) -> web.Response:
    error: dict[str, Any] = {
        "message": behaviour.message or f"fake Graph error {behaviour.error_code}",
        "type": "OAuthException",
        "code": behaviour.error_code,
        "fbtrace_id": "FakeTrace",
    }
    if behaviour.error_subcode is not None:
        error["error_subcode"] = behaviour.error_subcode
    headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
    return web.json_response({"error": error}, status=behaviour.status, headers=headers)


async def _cut_short(request: web.Request, status: int, payload: bytes) -> web.StreamResponse:
    """Promise ``len(payload)`` bytes, send half, then drop the connection."""
    response = web.StreamResponse(status=status)
    response.content_type = "application/json"
    response.content_length = len(payload)
    await response.prepare(request)
    await response.write(payload[: len(payload) // 2])
    transport = request.transport
    if transport is not None:
        transport.close()
    return response

"""A fake OpenAI-compatible Chat Completions server: real HTTP on loopback, in a thread.

Used by the tests (through ``tests.fakes.openai_api``) and by the load runner's
``--edges fake``.

Usage::

    monkeypatch.setenv("OPENAI_KEY", DEFAULT_API_KEY)
    with FakeOpenAI(latency_s=0.2) as fake:  # 127.0.0.1, a free port
        options = {"base_url": fake.base_url, "model": "m", "api_key_env": "OPENAI_KEY"}
        fake.fail(429, retry_after="30")  # the next request gets a 429
        fake.hang(times=None)  # then every request hangs, until fake.clear()
        ...
        fake.requests[-1].messages, fake.requests[-1].bearer_ok, fake.peak

Every request to ``POST /v1/chat/completions`` is recorded (bounded), checked for the
bearer key (a mismatch gets OpenAI's 401), then answered by the first programmed fault
still due, else after ``latency_s`` by a completion whose text is ``reply(messages)``.
Faults (each for the next ``times`` requests, ``None`` for every request until
:meth:`FakeOpenAI.clear`): :meth:`~FakeOpenAI.fail` (a status, optionally with
``Retry-After``), :meth:`~FakeOpenAI.hang`, :meth:`~FakeOpenAI.truncate` (a body cut short
of its Content-Length), :meth:`~FakeOpenAI.not_json`, :meth:`~FakeOpenAI.empty_body`,
:meth:`~FakeOpenAI.empty_choices`, :meth:`~FakeOpenAI.null_content`, :meth:`~FakeOpenAI.huge`.

``in_flight``/``peak`` count the requests being handled (hung ones included until their
client goes away). Stopping releases every waiting handler, so stop is quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["DEFAULT_API_KEY", "FakeOpenAI", "Messages", "RecordedRequest", "default_reply"]

DEFAULT_API_KEY = "sk-fake-0123456789abcdef"
Messages = list[dict[str, Any]]


def default_reply(messages: Messages) -> str:
    """``reply to: <last user text>``."""
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return f"reply to: {users[-1] if users else ''}"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it (``body`` is None when it was not JSON)."""

    model: Any
    messages: Messages
    max_tokens: Any
    temperature: Any
    bearer_ok: bool
    body: dict[str, Any] | None


@dataclass(slots=True)
class _Fault:
    kind: str
    times: int | None  # None: until clear()
    status: int = 200
    retry_after: str | None = None
    size: int = 0
    chunked: bool = False


class FakeOpenAI:
    """The server; a context manager (``start`` on enter, ``stop`` on exit).

    Args:
        api_key: the bearer key requests must carry (None: no check).
        reply: the completion text for the messages received.
        latency_s: delay before each answer (settable while running).
        usage: include the ``usage`` block (settable while running).
        max_records: how many requests :attr:`requests` keeps (the newest).
    """

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_API_KEY,
        reply: Callable[[Messages], str] = default_reply,
        latency_s: float = 0.0,
        usage: bool = True,
        max_records: int = 10_000,
    ) -> None:
        self.api_key = api_key
        self.reply = reply
        self.latency_s = latency_s
        self.usage = usage
        self.in_flight = 0
        self.peak = 0
        self.request_count = 0  # every request ever received, beyond max_records too
        self._records: deque[RecordedRequest] = deque(maxlen=max_records)
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the ``base_url`` option for the provider."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        """Start serving on a free loopback port."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fake-openai", daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._serve(), loop).result(10)
        return self

    def stop(self) -> None:
        """Release waiting handlers, close the server, stop and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- programming ---------------------------------------------------------------------

    def fail(self, status: int, *, times: int | None = 1, retry_after: str | None = None) -> None:
        """Answer ``status`` with an OpenAI error body (and ``Retry-After`` if given)."""
        self._push(_Fault("status", times, status=status, retry_after=retry_after))

    def hang(self, *, times: int | None = 1) -> None:
        """Never answer (until the client gives up or the server stops)."""
        self._push(_Fault("hang", times))

    def truncate(self, *, times: int | None = 1) -> None:
        """Send half of a completion body, then close the connection."""
        self._push(_Fault("truncate", times))

    def not_json(self, *, times: int | None = 1) -> None:
        """Answer 200 with an HTML body."""
        self._push(_Fault("not_json", times))

    def empty_body(self, *, times: int | None = 1) -> None:
        """Answer 200 with a JSON content type and no body at all."""
        self._push(_Fault("empty_body", times))

    def empty_choices(self, *, times: int | None = 1) -> None:
        """Answer 200 with ``"choices": []``."""
        self._push(_Fault("empty_choices", times))

    def null_content(self, *, times: int | None = 1) -> None:
        """Answer 200 with ``choices[0].message.content = null``."""
        self._push(_Fault("null_content", times))

    def huge(self, size: int, *, times: int | None = 1, chunked: bool = False) -> None:
        """Answer a valid completion of about ``size`` bytes (chunked: no Content-Length)."""
        self._push(_Fault("huge", times, size=size, chunked=chunked))

    def clear(self) -> None:
        """Forget every programmed fault."""
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """The newest ``max_records`` requests, oldest first (a snapshot)."""
        with self._lock:
            return list(self._records)

    def reset_peak(self) -> None:
        """Start measuring ``peak`` again from the current ``in_flight``."""
        self.peak = self.in_flight

    def _push(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.popleft()
            return fault

    # -- server --------------------------------------------------------------------------

    async def _serve(self) -> int:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=8 << 20)
        app.router.add_post("/v1/chat/completions", self._handle)
        # handler_cancellation: a handler ends when its client hangs up (hung ones too).
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self._runner = runner
        return int(runner.addresses[0][1])

    async def _shutdown(self) -> None:
        assert self._stopping is not None
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` (forever when negative), cut short when the server stops."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), None if seconds < 0 else seconds)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self._respond(request)
        finally:
            self.in_flight -= 1

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        doc = body if isinstance(body, dict) else {}
        presented = request.headers.get("Authorization", "")
        bearer_ok = self.api_key is None or presented == f"Bearer {self.api_key}"
        messages = doc.get("messages")
        with self._lock:
            self.request_count += 1
            self._records.append(
                RecordedRequest(
                    model=doc.get("model"),
                    messages=messages if isinstance(messages, list) else [],
                    max_tokens=doc.get("max_tokens"),
                    temperature=doc.get("temperature"),
                    bearer_ok=bearer_ok,
                    body=body if isinstance(body, dict) else None,
                )
            )
        if not bearer_ok:
            # Like OpenAI, the message quotes the key presented: clients must not log it.
            return _error(401, f"Incorrect API key provided: {presented}", "invalid_api_key")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' is required", "invalid_request")
        fault = self._take_fault()
        if fault is not None and fault.kind == "hang":
            await self._pause(-1)
            return _error(503, "server stopping", "stopping")
        await self._pause(self.latency_s)
        if fault is None:
            return web.json_response(self._completion(doc, self.reply(messages)))
        return await self._faulty(request, fault, doc)

    async def _faulty(
        self, request: web.Request, fault: _Fault, doc: dict[str, Any]
    ) -> web.StreamResponse:
        kind = fault.kind
        if kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return _error(fault.status, f"fake status {fault.status}", "fake", headers)
        if kind == "not_json":
            return web.Response(text="<html>502 upstream sadness</html>", content_type="text/html")
        if kind == "empty_body":
            return web.Response(body=b"", content_type="application/json")
        if kind == "empty_choices":
            return web.json_response({"id": "chatcmpl-fake", "choices": []})
        if kind == "null_content":
            return web.json_response(self._completion(doc, None))
        full = json.dumps(self._completion(doc, "x" * fault.size)).encode()
        if kind == "huge" and not fault.chunked:
            return web.Response(body=full, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if kind == "huge":
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(0, len(full), 64 * 1024):
                await resp.write(full[i : i + 64 * 1024])
            await resp.write_eof()
            return resp
        # truncate: promise the whole body, send half, hang up.
        resp.content_length = len(full)
        await resp.prepare(request)
        await resp.write(full[: len(full) // 2])
        assert request.transport is not None
        request.transport.close()
        return resp

    def _completion(self, doc: dict[str, Any], text: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"chatcmpl-fake-{self.request_count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": doc.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
        }
        if self.usage:
            prompt = sum(len(str(m.get("content", "")).split()) for m in doc.get("messages", []))
            completion = len((text or "").split())
            out["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        return out


def _error(
    status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": "fake_error", "code": code}}
    return web.json_response(body, status=status, headers=headers)

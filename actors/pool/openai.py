"""Provider kind ``openai``: OpenAI-compatible Chat Completions over one pooled HTTP session.

Spoken by OpenAI, vLLM, llama.cpp server, Ollama, LM Studio, Groq, OpenRouter and more:
``POST {base_url}/chat/completions``. The provider is sans-IO towards the pool core:
``start`` encodes the request and hands the HTTP call to an :class:`~actors.runtime.aio.AsyncRunner`
loop thread, ``poll`` maps what finished into :class:`ProviderResult`s, and while calls are
in flight ``next_due`` asks to be polled again in ``poll_interval_s``. Policy (options,
context window, result mapping) lives in :mod:`actors.pool._openai_core`, tested without
sockets.

The API key is read once, at construction in the actor process, from the environment
variable that ``api_key_env`` names. It lives only in the session's default headers: it is
never logged, never put in a result or an exception, and this object's repr omits it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
from loguru import logger

from actors.config.envnames import show_env_name
from actors.cores._args import require_int, require_number
from actors.pool._openai_core import (
    DEFAULT_RETRY_AFTER_S,
    DEFAULT_SYSTEM_PROMPT,
    MAX_RETRY_AFTER_S,
    ContextWindow,
    Mapped,
    OpenAIOptions,
    RawResponse,
    Turn,
    build_payload,
    map_exception,
    map_response,
    parse_options,
)
from actors.pool.providers import (
    DEFAULT_MAX_IN_FLIGHT,
    ProviderResult,
    check_can_start,
)
from actors.runtime.aio import AsyncRunner
from protocols import AIRequest, ProviderSpec

__all__ = [
    "DEFAULT_RETRY_AFTER_S",
    "DEFAULT_SYSTEM_PROMPT",
    "MAX_RETRY_AFTER_S",
    "ContextWindow",
    "Mapped",
    "OpenAIOptions",
    "OpenAIProvider",
    "RawResponse",
    "Turn",
    "build_payload",
    "map_exception",
    "map_response",
    "parse_options",
]

DEFAULT_POLL_INTERVAL_S = 0.005
_LOG_EVERY_S = 5.0  # failures are logged at most this often per provider, with a count
_CHUNK = 64 * 1024
_COUNTERS = (
    "calls",  # HTTP calls started
    "ok",  # calls that ended with a reply
    "errors",  # calls that ended in any failure (rate_limited included)
    "rate_limited",  # 429 answers
    "cancelled",  # calls the pool forgot before they ended
    "prompt_tokens",  # as reported by the endpoint's usage block
    "completion_tokens",
)


@dataclass(slots=True, frozen=True)
class _Call:
    key: str  # the runner key: unique per call, so a restarted id never gets an old result
    customer_id: str
    text: str


class OpenAIProvider:
    """One OpenAI-compatible endpoint as a :class:`~actors.pool.providers.Provider`.

    Options (``ProviderSpec.options``): ``base_url`` and ``model`` (required);
    ``api_key_env`` (required unless ``no_auth = true``); ``timeout_s`` (20),
    ``max_tokens`` (256), ``temperature`` (unset), ``system_prompt``, ``context_turns``
    (10), ``context_customers`` (10 000), ``max_response_bytes`` (1 MiB).

    Args:
        spec: the provider's spec (``kind`` is not checked here).
        rng: unused; part of the factory signature.
        max_in_flight: most calls at once; also the HTTP connection pool's limit.
        poll_interval_s: how soon ``next_due`` asks for a poll while calls are in flight.
        clock: epoch seconds, the pool's clock (``next_due`` is on it).
        environ: where ``api_key_env`` is looked up; default ``os.environ``.

    Raises:
        ValueError: bad options (naming provider, option and rule), or the key's
            environment variable is unset or empty (naming the variable).
    """

    __slots__ = (
        "_auth",
        "_calls",
        "_clock",
        "_closed",
        "_context",
        "_last_log",
        "_log",
        "_max",
        "_n",
        "_opts",
        "_poll_s",
        "_runner",
        "_seq",
        "_session",
        "_unlogged",
        "name",
    )

    def __init__(
        self,
        spec: ProviderSpec,
        rng: random.Random,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.name = spec.name
        self._opts = opts = parse_options(spec.name, spec.options)
        self._auth: str | None = None
        if opts.api_key_env is not None:
            key = (os.environ if environ is None else environ).get(opts.api_key_env, "").strip()
            if not key:
                raise ValueError(
                    f"provider {spec.name!r}: environment variable "
                    f"{show_env_name(opts.api_key_env)} "
                    "(option 'api_key_env') is not set or empty"
                )
            self._auth = f"Bearer {key}"
        self._max = require_int("max_in_flight", max_in_flight, minimum=1)
        self._poll_s = require_number(
            "poll_interval_s", poll_interval_s, minimum=0, min_exclusive=True
        )
        self._clock = clock
        self._context = ContextWindow(turns=opts.context_turns, customers=opts.context_customers)
        self._runner: AsyncRunner[RawResponse] = AsyncRunner(
            max_in_flight=self._max,
            name=f"openai-{spec.name}",
            setup=self._open_session,
            teardown=self._close_session,
        )
        self._session: aiohttp.ClientSession | None = None  # used on the runner's loop only
        self._calls: dict[str, _Call] = {}
        self._seq = 0
        self._closed = False
        self._n = dict.fromkeys(_COUNTERS, 0)
        self._log = logger.bind(provider=spec.name, kind="openai")
        self._last_log = -float("inf")
        self._unlogged = 0

    def __repr__(self) -> str:
        o = self._opts
        return f"OpenAIProvider(name={self.name!r}, model={o.model!r}, base_url={o.base_url!r})"

    # -- Provider protocol ---------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Calls started and neither polled nor cancelled."""
        return len(self._calls)

    @property
    def max_in_flight(self) -> int:
        """Most calls in flight at once."""
        return self._max

    @property
    def options(self) -> OpenAIOptions:
        """The validated options (no secret in them: only the variable's name)."""
        return self._opts

    def start(self, request: AIRequest, now: float) -> None:
        """Send ``request`` with the customer's recent turns as context.

        Raises:
            ProviderClosedError: the provider was closed.
            InFlightLimitError: ``max_in_flight`` calls are already in flight.
            ValueError: a call for ``request.message_id`` is already in flight.
        """
        mid = request.message_id
        check_can_start(self.name, mid, closed=self._closed, calls=self._calls, limit=self._max)
        history = self._context.history(request.customer_id)
        body = build_payload(self._opts, history, request.text, context_id=request.context_id)
        self._seq += 1
        key = f"{mid}#{self._seq}"
        self._runner.submit(key, lambda: self._post(body))
        self._calls[mid] = _Call(key, request.customer_id, request.text)
        self._n["calls"] += 1

    def poll(self, now: float) -> list[ProviderResult]:
        """Return the calls finished since the last poll (each exactly once)."""
        return [
            dataclasses.replace(m.result, detail=m.detail) if m.detail else m.result
            for m in self.poll_mapped(now)
        ]

    def poll_mapped(self, now: float) -> list[Mapped]:
        """Like :meth:`poll`, with each failure's detail (what went wrong, never the key)."""
        done: list[Mapped] = []
        for key, outcome in self._runner.poll():
            mid = key.rpartition("#")[0]
            call = self._calls.get(mid)
            if call is None or call.key != key:
                continue  # cancelled, and the runner had finished it already
            del self._calls[mid]
            if isinstance(outcome, BaseException):
                mapped = map_exception(mid, outcome, timeout_s=self._opts.timeout_s)
            else:
                mapped = map_response(mid, outcome, now)
            self._account(call, mapped, now)
            done.append(mapped)
        return done

    def next_due(self) -> float | None:
        """``now + poll_interval_s`` while calls are in flight (their end is unknown)."""
        return self._clock() + self._poll_s if self._calls else None

    def cancel(self, message_id: str) -> bool:
        """Forget the call and cancel its HTTP request; False when none is in flight."""
        call = self._calls.pop(message_id, None)
        if call is None:
            return False
        self._runner.cancel(call.key)
        self._n["cancelled"] += 1
        return True

    def close(self) -> None:
        """Cancel every call, close the HTTP session and stop the loop thread."""
        self._closed = True
        self._calls.clear()
        self._runner.close()

    # -- stats ---------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters since construction (tokens as reported by the endpoint) and gauges."""
        return {
            **self._n,
            "in_flight": len(self._calls),
            "context_customers": len(self._context),
            "context_evictions": self._context.evictions,
        }

    def history(self, customer_id: str) -> tuple[Turn, ...]:
        """The turns the next request for ``customer_id`` will carry as context."""
        return self._context.history(customer_id)

    # -- internals -----------------------------------------------------------------------

    def _account(self, call: _Call, mapped: Mapped, now: float) -> None:
        result, n = mapped.result, self._n
        if result.ok:
            n["ok"] += 1
            n["prompt_tokens"] += result.prompt_tokens
            n["completion_tokens"] += result.completion_tokens
            self._context.record(call.customer_id, call.text, result.text)
            return
        n["errors"] += 1
        n["rate_limited"] += result.error == "rate_limited"
        # A dead endpoint fails thousands of calls a second: log one line per interval,
        # with how many were not logged since.
        if now - self._last_log >= _LOG_EVERY_S:
            more = (
                f" ({self._unlogged} more failures since the last line)" if self._unlogged else ""
            )
            self._log.warning(
                "provider {} call failed: {}: {}{}",
                self.name,
                result.error,
                self._scrub(mapped.detail),
                more,
            )
            self._last_log, self._unlogged = now, 0
        else:
            self._unlogged += 1

    def _scrub(self, text: str) -> str:
        # Defence in depth: details are built without the key, but never let it through.
        if self._auth is not None:
            key = self._auth.removeprefix("Bearer ")
            text = text.replace(key, "***")
        return text

    async def _open_session(self) -> None:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._auth is not None:
            headers["Authorization"] = self._auth
        self._session = aiohttp.ClientSession(
            # One keep-alive pool with room for every call the provider may hold.
            connector=aiohttp.TCPConnector(limit=self._max),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self._opts.timeout_s),
            raise_for_status=False,
        )

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        # getaddrinfo threads of the default executor must not outlive the provider.
        await asyncio.get_running_loop().shutdown_default_executor()

    async def _post(self, body: bytes) -> RawResponse:
        """One HTTP call; reads at most ``max_response_bytes`` of the body."""
        session = self._session
        assert session is not None, "the runner's setup opens the session before any call"
        limit = self._opts.max_response_bytes
        async with session.post(self._opts.url, data=body, allow_redirects=False) as resp:
            status, retry_after = resp.status, resp.headers.get("Retry-After")
            if resp.content_length is not None and resp.content_length > limit:
                return RawResponse(status, b"", retry_after, over_limit=limit)
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > limit:
                    # Leaving the block unread closes this connection: read no further.
                    return RawResponse(status, b"", retry_after, over_limit=limit)
                chunks.append(chunk)
            return RawResponse(status, b"".join(chunks), retry_after)

"""Read receipts with a typing indicator: the gateway marks each accepted message read.

For every message the engine accepted on a ``cloud_api`` number, the gateway posts
Meta's mark-as-read request (typing-indicators page of the Cloud API docs) to that
number's ``/messages`` endpoint, with the number's own token::

    {"messaging_product": "whatsapp", "status": "read", "message_id": "<wamid>",
     "typing_indicator": {"type": "text"}}

The customer sees blue ticks and "typing..." while the AI works (until the reply is sent,
or 25 s). Fire-and-forget: each request is a task on the gateway's event loop with its
own aiohttp session, never awaited by the webhook, and the engine's reply path does not
know of it: a read request that fails, hangs or is skipped changes nothing else.

Why here and not in the account: the account sees a message only as a reply, seconds
later, and telling it earlier would put a new message kind on the engine's hot path. The
read requests still count in the number's rate budget: the gateway gives the engine
``throughput_per_s * (1 - read_receipt_share)`` for replies and keeps the rest as a token
bucket for read requests (:meth:`GatewayConfig.account_options`). A read request that
finds no token is skipped (``throttled``), never queued: under load, replies keep their
whole share and the receipts give way.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import aiohttp

from actors.account._cloud_options import parse_options
from actors.account._cloud_policy import TokenBucket, parse_graph_error
from apps.gateway.config import GatewayConfig
from apps.gateway.metrics import GatewayCounters
from protocols import Accepted, InboundMessage, Rejected

__all__ = ["ReadReceipts"]

_MAX_IN_FLIGHT = 256  # read requests at once, over all numbers; more are skipped as busy
_TIMEOUT_S = 10.0  # the longest a read request may take (the indicator lasts 25 s)
_BODY_LIMIT = 64 * 1024

Warn = Callable[[str, str], None]
"""``(key, text)``: log ``text``, sampled by ``key``."""


@dataclass(slots=True)
class _Number:
    url: str
    token: str
    bucket: TokenBucket
    timeout_s: float


class ReadReceipts:
    """The read-receipt sender of one gateway: a token bucket per number, one session.

    Args:
        numbers: phone_number_id -> where and how to send its read requests.
        phones: account id -> phone_number_id (for :meth:`mark_accepted`).
        typing: add the typing indicator to each request.
        counters: the gateway's counters (``read_receipts{result}``).
        warn: where failures are logged (sampled by the caller).
    """

    def __init__(
        self,
        numbers: Mapping[str, _Number],
        *,
        typing: bool,
        counters: GatewayCounters,
        warn: Warn,
        phones: Mapping[str, str] | None = None,
    ) -> None:
        self._numbers = dict(numbers)
        self._phone_of = dict(phones or {})
        self._typing = typing
        self._counters = counters
        self._warn = warn
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def for_config(
        cls,
        config: GatewayConfig,
        counters: GatewayCounters,
        warn: Warn,
        environ: Mapping[str, str] | None = None,
    ) -> ReadReceipts:
        """One sender per ``cloud_api`` number when ``read_receipts`` is on (else none).

        A number whose options the transport would refuse (no token, say) gets none: the
        engine refuses that account with the reason, and the gateway says nothing more.
        """
        numbers: dict[str, _Number] = {}
        environ = os.environ if environ is None else environ
        for entry in config.accounts if config.read_receipts else ():
            rate = config.read_budget_per_s(entry)
            if rate <= 0:
                continue
            try:
                options, token = parse_options(entry.account_id, entry.engine_options, environ)
            except ValueError:
                continue
            numbers[entry.phone_number_id] = _Number(
                url=options.url,
                token=token,
                bucket=TokenBucket(rate, max(1.0, rate)),
                timeout_s=min(options.timeout_s, _TIMEOUT_S),
            )
        phones = {entry.account_id: entry.phone_number_id for entry in config.accounts}
        return cls(
            numbers, typing=config.typing_indicator, counters=counters, warn=warn, phones=phones
        )

    def __repr__(self) -> str:  # no token in any repr
        return f"ReadReceipts(numbers={sorted(self._numbers)}, typing={self._typing})"

    @property
    def numbers(self) -> frozenset[str]:
        """The phone_number_ids whose messages are marked read."""
        return frozenset(self._numbers)

    @property
    def in_flight(self) -> int:
        """Read requests started and not finished."""
        return len(self._tasks)

    async def open(self) -> None:
        """Open the HTTP session (on the loop that will use it); a no-op without numbers."""
        if self._numbers and self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=_MAX_IN_FLIGHT)
            )

    async def close(self) -> None:
        """Cancel the requests in flight and close the session. Idempotent."""
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def mark_accepted(
        self, messages: Iterable[InboundMessage], results: Iterable[Accepted | Rejected]
    ) -> None:
        """Mark each message the engine accepted (it will be answered) on its number."""
        accepted = {r.message_id for r in results if isinstance(r, Accepted)}
        for message in messages:
            phone = self._phone_of.get(message.account_id)
            if phone is not None and message.message_id in accepted:
                self.mark(phone, message.message_id)

    def mark(self, phone_number_id: str, message_id: str) -> None:
        """Mark ``message_id`` read on ``phone_number_id`` (with the indicator); never waits.

        Skipped when the number has no sender, when ``_MAX_IN_FLIGHT`` requests already
        run (``busy``), or when the number's read budget has no token (``throttled``).
        """
        number = self._numbers.get(phone_number_id)
        if number is None or self._session is None:
            return
        if len(self._tasks) >= _MAX_IN_FLIGHT:
            self._counters.inc("read_receipts", result="busy")
            return
        if not number.bucket.take(time.monotonic()):
            self._counters.inc("read_receipts", result="throttled")
            return
        task = asyncio.create_task(self._post(self._session, number, message_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, session: aiohttp.ClientSession, number: _Number, mid: str) -> None:
        payload: dict[str, object] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": mid,
        }
        if self._typing:
            payload["typing_indicator"] = {"type": "text"}
        headers = {"Authorization": f"Bearer {number.token}", "Content-Type": "application/json"}
        try:
            async with session.post(
                number.url,
                data=json.dumps(payload).encode(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=number.timeout_s),
            ) as response:
                body = await response.content.read(_BODY_LIMIT)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._failed("no answer", f"{type(exc).__name__}")
            return
        if 200 <= status < 300:
            self._counters.inc("read_receipts", result="sent")
            return
        graph = parse_graph_error(body)
        why = graph.describe() if graph is not None else "no Graph error object"
        self._failed(f"http {status}", f"HTTP {status}: {why.replace(number.token, '[redacted]')}")

    def _failed(self, key: str, detail: str) -> None:
        self._counters.inc("read_receipts", result="failed")
        self._warn(
            f"read receipt {key}", f"read receipt failed (the reply is unaffected): {detail}"
        )

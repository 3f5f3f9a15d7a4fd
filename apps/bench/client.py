"""The benchmark's client: signed webhooks over keep-alive HTTP, the same code for both targets.

:class:`WebhookMaker` makes well-formed Cloud API webhooks (one text message each, built
by the replay tool's :func:`~apps.replay.gateway.webhook_payload`), each with a new
message id, from customers in turn across the numbers, signed with
:func:`~apps.gateway.signature.sign`. :func:`drive` keeps ``concurrency`` requests in
flight for a while and counts every answer by status. :func:`gateway_books` reads the
gateway's ``/metrics`` (messages in flight, outcomes collected), to wait for the engine to
finish what a level left before the next one starts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from apps.gateway.signature import HEADER, sign
from apps.loadrun.tracker import LatencyHistogram
from apps.replay.gateway import webhook_payload
from protocols import InboundMessage

__all__ = ["GatewayBooks", "LevelResult", "WebhookMaker", "drive", "gateway_books"]

REQUEST_TIMEOUT_S = 30.0
"""Longest wait for one answer; a level ends at most this long after its duration."""


class WebhookMaker:
    """Signed webhooks, each with one text message and a message id never used before.

    Customers take turns (webhook ``n`` comes from customer ``n % customers``), so with
    many customers no one of them comes near the per-recipient rate limit, and the numbers
    take turns too.

    Args:
        secret: the app secret.
        numbers: ``(account_id, phone_number_id)`` of each number.
        customers: how many distinct senders.
        run_id: part of every message id, so that no two runs share one.
    """

    def __init__(
        self, secret: str, numbers: Sequence[tuple[str, str]], customers: int, run_id: str
    ) -> None:
        self._secret = secret.encode("utf-8")
        self._numbers = list(numbers)
        self._customers = customers
        self._run_id = run_id
        self.made = 0

    def next(self) -> tuple[bytes, dict[str, str]]:
        """The next webhook's body and headers."""
        n = self.made
        self.made += 1
        account_id, phone_id = self._numbers[n % len(self._numbers)]
        message = InboundMessage(
            account_id=account_id,
            customer_id=f"+1555{n % self._customers:07d}",
            message_id=f"wamid.bench.{self._run_id}.{n}",
            text=f"hello {n}",
        )
        doc = webhook_payload(phone_id, [message], timestamp=int(time.time()))
        body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", HEADER: sign(self._secret, body)}
        return body, headers


@dataclass
class LevelResult:
    """What one target answered at one concurrency.

    Attributes:
        answers: answers by HTTP status (``"200"``), or by the client error's name.
        accepted: the sum of ``accepted`` in the JSON answers of the 200s.
        seconds: from the first request to the last answer.
        latency: request to answer, every answer with a status.
    """

    target: str
    concurrency: int
    answers: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    seconds: float = 0.0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    @property
    def ok(self) -> int:
        return self.answers["200"]

    @property
    def failed(self) -> dict[str, int]:
        """Every answer that was not a 200, by status or error."""
        return {k: v for k, v in sorted(self.answers.items()) if k != "200"}

    @property
    def rate(self) -> float:
        """200s per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def ms(self, point: float) -> float:
        return self.latency.percentiles([point])[0] * 1000


async def drive(
    url: str, maker: WebhookMaker, target: str, concurrency: int, duration_s: float
) -> LevelResult:
    """Keep ``concurrency`` webhooks in flight to ``url`` for ``duration_s``; count answers.

    No request starts after ``duration_s``; those in flight are waited for (each at most
    :data:`REQUEST_TIMEOUT_S`), so this ends within ``duration_s`` plus that.
    """
    result = LevelResult(target, concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + duration_s

        async def one_connection() -> None:
            while time.perf_counter() < deadline:
                body, headers = maker.next()
                sent = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as answer:
                        data = await answer.read()
                        status = answer.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    result.answers[type(exc).__name__] += 1
                    await asyncio.sleep(0.01)  # a server that is gone must not make a spin
                    continue
                result.latency.add(time.perf_counter() - sent)
                result.answers[str(status)] += 1
                if status == 200:
                    result.accepted += _accepted(data)

        await asyncio.gather(*(one_connection() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def _accepted(data: bytes) -> int:
    try:
        value = json.loads(data).get("accepted", 0)
    except (ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) else 0


@dataclass(frozen=True)
class GatewayBooks:
    """The gateway's ``/metrics`` at one moment: what the engine holds, what it answered."""

    in_flight: int
    outcomes: dict[str, int]

    @property
    def collected(self) -> int:
        return sum(self.outcomes.values())


async def gateway_books(base_url: str) -> GatewayBooks:
    """Read ``/metrics``: ``wae_in_flight`` and ``wae_gateway_outcomes_total`` by status."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(base_url + "/metrics") as answer,
    ):
        text = await answer.text()
    in_flight = 0
    outcomes: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "wae_in_flight":
                in_flight = int(sample.value)
            elif sample.name == "wae_gateway_outcomes_total":
                outcomes[sample.labels.get("status", "")] += int(sample.value)
    return GatewayBooks(in_flight, dict(outcomes))

"""Transport ``cloud_api``: replies sent through the WhatsApp Cloud API (Meta Graph API).

Each reply becomes ``POST {api_base}/{version}/{phone_number_id}/messages`` with the bearer
token read from the environment variable named by ``token_env``. The transport keeps the
sans-IO shape of :class:`~actors.account.transports.Transport`: ``start`` never waits, the
HTTP calls run on an :class:`~actors.runtime.aio.AsyncRunner` loop thread over one pooled
keep-alive ``aiohttp.ClientSession``, and ``poll`` collects what finished.

Sends pass a token bucket (``throughput_per_s``, a burst of one second's worth); a send
that finds no token waits here in a FIFO of at most ``max_in_flight``. The per-recipient
pair rate is the account core's rate log, not this module's.

How an answer ends a send (``_cloud_policy.classify``):

================================================  ====================  ==============
answer                                            reason                retry_after
================================================  ====================  ==============
2xx with ``{"messages":[{"id": "wamid..."}]}``    (ok)                  -
2xx with any other body (sent or not: unknown)    ``transport_error``   backoff
Graph code 131056 (pair rate), 130429 (rate)      ``rate_limited``      backoff [1]_
HTTP 429 without one of those codes               ``rate_limited``      backoff [1]_
Graph code 131047 (24 h window closed)            ``outside_window``    -
Graph code 190 (token)                            ``account_auth`` [2]_ -
HTTP 5xx, connection error, timeout, cut body     ``transport_error``   backoff [1]_
other status with Graph code N                    ``api_error:N``       -
other status without a Graph error object         ``api_error:http_S``  -
================================================  ====================  ==============

.. [1] ``backoff_min_s * 2**(n-1)`` for the message's n-th retryable failure, capped at
   ``backoff_max_s``; a longer ``Retry-After`` header wins (read by
   :func:`~actors.cores.retry_after.parse_retry_after`, capped at an hour). The account
   core re-queues the reply when that still fits its deadline.
.. [2] The transport then fails: this and every later send end ``account_auth`` at once,
   with no HTTP call, and one error line is logged (account and code, never the token).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
from collections import OrderedDict
from collections.abc import Mapping

import aiohttp
from loguru import logger

from actors.account._cloud_options import parse_options
from actors.account._cloud_policy import Backoff, HttpOutcome, TokenBucket, classify, clean_text
from actors.account.transports import SendResult
from actors.runtime.aio import AsyncRunner
from protocols import OutboundReply, Reason, Scalar
from protocols.chat import is_bsuid

__all__ = ["CloudApiTransport", "recipient_fields"]

_BODY_LIMIT = 64 * 1024  # a Graph answer is a few hundred bytes; more is not Graph
_ATTEMPT_MEMORY = 10_000  # messages whose retry count is remembered (LRU)


def recipient_fields(customer_id: str) -> dict[str, str]:
    """Who a send goes to, in Meta's send-message body.

    A phone number goes in ``to``, as digits. A business-scoped user id (a sender whose
    number WhatsApp withholds, ``US.1349...``) goes in ``recipient`` and ``to`` is left
    out, as Meta's business-scoped user id page describes the send API; this is the one
    place to change should that field turn out otherwise.
    """
    if is_bsuid(customer_id):
        return {"recipient": customer_id}
    return {"to": customer_id.lstrip("+")}


class CloudApiTransport:
    """Send an account's replies through the WhatsApp Cloud API.

    Args:
        account_id: the account this number belongs to (named in errors and logs).
        options: ``phone_number_id`` (digits, required), ``token_env`` (the name of the
            environment variable holding the access token, required), ``api_base``
            (default ``https://graph.facebook.com``), ``version`` (``v21.0``),
            ``throughput_per_s`` (80: Meta's default per number), ``timeout_s`` (10, per
            HTTP call), ``max_in_flight`` (256: HTTP calls at once, pooled connections, and
            sends waiting for a token), ``backoff_min_s`` (0.5), ``backoff_max_s`` (30),
            ``poll_interval_s`` (0.005: how often the actor polls while calls run),
            ``quote_replies`` (False: True quotes the customer's message in the reply,
            ``context.message_id``).
        rng: unused (the factory signature); backoff has no jitter, see ``Backoff``.

    Raises:
        ValueError: an unknown option, a bad value (naming account, key and rule), or a
            ``token_env`` variable that is unset or empty (naming the variable).
    """

    __slots__ = (
        "_account_id",
        "_attempts",
        "_backoff",
        "_bucket",
        "_closed",
        "_counts",
        "_failure",
        "_http",
        "_log",
        "_max_in_flight",
        "_now",
        "_poll_interval_s",
        "_quote",
        "_ready",
        "_runner",
        "_session",
        "_timeout_s",
        "_token",
        "_token_env",
        "_url",
        "_waiting",
    )

    kind = "cloud_api"

    def __init__(self, account_id: str, options: Mapping[str, Scalar], rng: random.Random) -> None:
        del rng  # accepted for the factory signature only
        config, token = parse_options(account_id, options, os.environ)
        self._token = token
        self._token_env = config.token_env
        self._account_id = account_id
        self._url = config.url
        self._timeout_s = config.timeout_s
        self._quote = config.quote_replies
        self._poll_interval_s = config.poll_interval_s
        self._max_in_flight = config.max_in_flight
        self._backoff = Backoff(config.backoff_min_s, config.backoff_max_s)
        rate = config.throughput_per_s
        self._bucket = TokenBucket(rate, max(1.0, rate))  # burst: one second's worth
        self._session: aiohttp.ClientSession | None = None
        self._runner: AsyncRunner[HttpOutcome] = AsyncRunner(
            max_in_flight=self._max_in_flight,
            name=f"cloud_api:{account_id}",
            setup=self._open,
            teardown=self._shut,
        )
        self._waiting: OrderedDict[str, OutboundReply] = OrderedDict()  # FIFO for tokens
        self._ready: dict[str, SendResult] = {}  # ended without an HTTP call, not yet polled
        self._http: set[str] = set()  # message ids with an HTTP call on the runner
        self._attempts: OrderedDict[str, int] = OrderedDict()  # retryable failures so far
        self._failure = ""
        self._closed = False
        self._now = float("-inf")
        self._log = logger.bind(account=account_id, transport="cloud_api")
        self._counts = dict.fromkeys(
            ("http_calls", "sent", "failed", "retryable", "throttled", "queue_full", "peak_http"),
            0,
        )

    def __repr__(self) -> str:  # spelled out so that no field (the token) can slip in
        return f"CloudApiTransport(account={self._account_id!r}, url={self._url!r})"

    # -- the Transport interface ---------------------------------------------------------

    def start(self, reply: OutboundReply, now: float) -> None:
        """Begin sending ``reply``: now if a token and a connection are free, else queued.

        Raises:
            ValueError: ``reply.message_id`` is already in flight (a caller bug).
            RuntimeError: the transport was closed.
        """
        self._advance(now)
        message_id = reply.message_id
        if self._closed:
            raise RuntimeError(f"account {self._account_id!r}: cloud_api transport is closed")
        if message_id in self._waiting or message_id in self._ready or message_id in self._http:
            raise ValueError(
                f"account {self._account_id!r}: message {message_id!r} is already in flight"
            )
        if self._failure:
            self._ready[message_id] = self._auth_result(message_id)
            return
        if not self._waiting and self._has_room() and self._bucket.take(self._now):
            self._submit(reply)
            return
        if len(self._waiting) >= self._max_in_flight:
            # Full: hand the reply back to the core with the time the queue ahead needs.
            wait = (len(self._waiting) + 1) / self._bucket.rate
            self._counts["queue_full"] += 1
            self._ready[message_id] = SendResult(
                message_id=message_id,
                ok=False,
                reason=Reason.RATE_LIMITED.value,
                detail=f"{len(self._waiting)} sends already wait for the throughput limit",
                retry_after=wait,
            )
            return
        self._counts["throttled"] += 1
        self._waiting[message_id] = reply

    def poll(self, now: float) -> list[SendResult]:
        """Return the sends that ended since the last poll; start queued ones that may go."""
        self._advance(now)
        if self._closed:
            return []
        results = list(self._ready.values())
        self._ready.clear()
        for message_id, outcome in self._runner.poll():
            self._http.discard(message_id)
            results.append(self._finish(message_id, outcome))
        if self._failure:
            results += [self._auth_result(message_id) for message_id in self._waiting]
            self._waiting.clear()
        self._pump()
        return results

    def next_due(self) -> float | None:
        """Return when to poll: now for ended sends, soon while calls run, else a token."""
        if self._closed:
            return None
        if self._ready:
            return self._now
        due: float | None = None
        if self._runner.in_flight:
            due = self._now + self._poll_interval_s
        if self._waiting and self._has_room():
            token_at = self._bucket.next_available(self._now)
            due = token_at if due is None else min(due, token_at)
        return due

    def cancel(self, message_id: str) -> bool:
        """Abandon the send of ``message_id`` (an HTTP call already sent may still land)."""
        self._attempts.pop(message_id, None)
        if self._waiting.pop(message_id, None) is not None:
            return True
        if self._ready.pop(message_id, None) is not None:
            return True
        self._http.discard(message_id)
        return self._runner.cancel(message_id)

    def close(self) -> None:
        """Abandon every send, close the HTTP pool and stop the loop thread. Idempotent."""
        self._closed = True
        self._waiting.clear()
        self._ready.clear()
        self._http.clear()
        self._runner.close()

    @property
    def in_flight(self) -> int:
        """Sends started and not yet returned by :meth:`poll` or cancelled."""
        return len(self._waiting) + len(self._ready) + self._runner.in_flight

    # -- state ---------------------------------------------------------------------------

    @property
    def failed(self) -> bool:
        """True once the API refused the token (code 190); every send now fails at once."""
        return bool(self._failure)

    @property
    def failure(self) -> str:
        """Why the transport failed ("" when it has not), without the token."""
        return self._failure

    def stats(self) -> dict[str, int]:
        """Counters since construction and current gauges.

        ``http_calls`` started, ``sent`` (2xx with a message id), ``failed`` (final
        failures), ``retryable`` (failures handed back with ``retry_after``), ``throttled``
        (sends that waited for a token), ``queue_full`` (sends refused because the token
        queue was full), ``in_http`` / ``peak_http`` (HTTP calls at once) and ``waiting``.
        """
        return {**self._counts, "in_http": self._runner.in_flight, "waiting": len(self._waiting)}

    # -- internals -------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        if now > self._now:
            self._now = now

    def _has_room(self) -> bool:
        return self._runner.in_flight < self._max_in_flight

    def _pump(self) -> None:
        """Start queued sends, oldest first, while a connection slot and a token are free."""
        while self._waiting and self._has_room() and self._bucket.take(self._now):
            _, reply = self._waiting.popitem(last=False)
            self._submit(reply)

    def _submit(self, reply: OutboundReply) -> None:
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            **recipient_fields(reply.customer_id),
            "type": "text",
            "text": {"body": reply.text},
        }
        if self._quote:
            # The reply quotes the customer's message: our message id is its wamid.
            payload["context"] = {"message_id": reply.message_id}
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._runner.submit(reply.message_id, functools.partial(self._post, body))
        self._http.add(reply.message_id)
        self._counts["http_calls"] += 1
        self._counts["peak_http"] = max(self._counts["peak_http"], self._runner.in_flight)

    def _finish(self, message_id: str, outcome: HttpOutcome | BaseException) -> SendResult:
        if isinstance(outcome, BaseException):
            # _post catches what aiohttp raises; anything else is a bug worth a log line.
            self._log.error("cloud_api send failed unexpectedly: {}", type(outcome).__name__)
            outcome = HttpOutcome(status=None, error=f"unexpected {type(outcome).__name__}")
        attempt = self._attempts.get(message_id, 0) + 1
        verdict = classify(
            outcome, attempt=attempt, backoff=self._backoff, now=self._now, secret=self._token
        )
        if verdict.retry_after is not None:
            self._attempts[message_id] = attempt
            self._attempts.move_to_end(message_id)
            if len(self._attempts) > _ATTEMPT_MEMORY:
                self._attempts.popitem(last=False)
            self._counts["retryable"] += 1
        else:
            self._attempts.pop(message_id, None)
            self._counts["sent" if verdict.ok else "failed"] += 1
        if verdict.auth_failed and not self._failure:
            self._failure = verdict.detail
            self._log.error(
                "account {} failed: the Cloud API refused the access token in ${} (code 190); "
                "every send now fails 'account_auth' until the token is replaced and the "
                "account is added again. {}",
                self._account_id,
                self._token_env,
                verdict.detail,
            )
        if not verdict.ok and verdict.retry_after is not None:
            self._log.debug("send {} will be retried: {}", message_id, verdict.detail)
        return SendResult(
            message_id=message_id,
            ok=verdict.ok,
            reason=verdict.reason,
            detail=verdict.detail,
            retry_after=verdict.retry_after,
            wamid=verdict.wamid,
            maybe_sent=verdict.maybe_sent,
        )

    def _auth_result(self, message_id: str) -> SendResult:
        return SendResult(
            message_id=message_id,
            ok=False,
            reason="account_auth",
            detail=f"account {self._account_id!r} failed earlier: {self._failure}",
        )

    # -- on the runner's loop --------------------------------------------------------------

    async def _open(self) -> None:
        # Built on the loop that uses it: an aiohttp session is bound to its loop.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_in_flight),
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            headers={"Authorization": f"Bearer {self._token}"},
        )

    async def _shut(self) -> None:
        if self._session is not None:
            await self._session.close()
        # aiohttp resolves host names in the loop's default executor; join its threads so
        # that none outlives close().
        await asyncio.get_running_loop().shutdown_default_executor()

    async def _post(self, body: bytes) -> HttpOutcome:
        session = self._session
        assert session is not None, "the runner's setup opens the session"
        status: int | None = None
        retry_after: str | None = None
        try:
            async with session.post(
                self._url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                payload = bytearray()
                while len(payload) <= _BODY_LIMIT:  # each round reads >= 1 byte or ends
                    chunk = await response.content.read(_BODY_LIMIT + 1 - len(payload))
                    if not chunk:
                        break
                    payload += chunk
                if len(payload) > _BODY_LIMIT:
                    error = f"body longer than {_BODY_LIMIT} bytes"
                    return HttpOutcome(status=status, retry_after=retry_after, error=error)
                return HttpOutcome(status=status, body=bytes(payload), retry_after=retry_after)
        except TimeoutError:
            error = (
                f"no complete answer within timeout_s={self._timeout_s:g}s; the message may "
                "or may not have been sent"
            )
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except OSError as exc:  # e.g. a reset surfacing outside aiohttp's wrappers
            error = f"{type(exc).__name__}: {exc}"
        return HttpOutcome(status=status, retry_after=retry_after, error=clean_text(error))

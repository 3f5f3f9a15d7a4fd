"""The ``cloud_api`` transport's policy, with no I/O: error mapping, backoff, token bucket.

Everything here is a pure function or a small class that takes the time as an argument,
so the whole policy is tested from tables without a socket. ``cloud_api.py`` performs the
HTTP calls and hands each answer (or failure) to :func:`classify`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from actors.cores._args import require_number
from actors.cores.retry_after import parse_retry_after

__all__ = [
    "AUTH_CODES",
    "MAX_RETRY_AFTER_S",
    "OUTSIDE_WINDOW_CODES",
    "RATE_CODES",
    "Backoff",
    "GraphError",
    "HttpOutcome",
    "TokenBucket",
    "Verdict",
    "classify",
    "clean_text",
    "parse_graph_error",
]

RATE_CODES = frozenset({131056, 130429})
"""Pair rate limit (131056) and number throughput (130429): the same send succeeds later."""
OUTSIDE_WINDOW_CODES = frozenset({131047})
"""Re-engagement required: the 24 h customer service window is closed; retrying cannot help."""
AUTH_CODES = frozenset({190})
"""The access token expired or is invalid: every later send would fail the same way."""
MAX_RETRY_AFTER_S = 3600.0
"""Longest ``Retry-After`` honoured. A wait past the message's deadline fails it anyway;
the cap keeps a broken header from turning into an absurd wait in a report."""

_DETAIL_LIMIT = 400  # characters of server text kept in a detail: enough to diagnose
_WAMID_LIMIT = 128  # a protocol id's limit (protocols.MAX_ID_LEN); Graph's are ~60
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class GraphError:
    """The ``error`` object of a Graph API answer (fields as Graph names them)."""

    code: int
    message: str = ""
    type: str = ""
    error_subcode: int | None = None
    fbtrace_id: str = ""

    def describe(self) -> str:
        """``Graph error 131056 (OAuthException, subcode 2494055): <message> [fbtrace X]``."""
        kind = ", ".join(
            part
            for part in (
                self.type,
                f"subcode {self.error_subcode}" if self.error_subcode is not None else "",
            )
            if part
        )
        text = f"Graph error {self.code}" + (f" ({kind})" if kind else "")
        if self.message:
            text += f": {self.message}"
        if self.fbtrace_id:
            text += f" [fbtrace_id {self.fbtrace_id}]"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpOutcome:
    """What one HTTP attempt produced, reduced to what the mapping needs.

    Attributes:
        status: the HTTP status, or None when no response arrived (connection refused,
            reset, timeout before the headers).
        body: the response body as read (possibly cut short when ``error`` is set).
        retry_after: the raw ``Retry-After`` header, if any.
        error: a description of the failure that interrupted the call ("" when none):
            with ``status`` None nothing was answered; with a status the body broke off.
    """

    status: int | None
    body: bytes = b""
    retry_after: str | None = None
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """How a send ended, before it is tied to a message id.

    ``retry_after`` is set exactly when the same send may succeed later; ``auth_failed``
    says the account's token is unusable (code 190) and the transport must stop sending.
    ``wamid`` is the id Graph gave a sent message ("" when it is not a usable id);
    ``maybe_sent`` says a failed attempt may have reached WhatsApp all the same (no
    answer, or a 2xx cut short or unreadable): every other failure is a refusal.
    """

    ok: bool
    reason: str = ""
    detail: str = ""
    retry_after: float | None = None
    auth_failed: bool = False
    wamid: str = ""
    maybe_sent: bool = False


class Backoff:
    """Exponential backoff per message: ``min_s * 2**(attempt-1)``, capped at ``max_s``.

    No jitter on purpose: retries pass through the transport's token bucket again, which
    already spreads a crowd of messages that failed together.

    Raises:
        ValueError: ``min_s`` not > 0, or ``max_s`` < ``min_s``.
    """

    __slots__ = ("max_s", "min_s")

    def __init__(self, min_s: float, max_s: float) -> None:
        self.min_s = require_number("backoff_min_s", min_s, minimum=0, min_exclusive=True)
        self.max_s = require_number("backoff_max_s", max_s, minimum=self.min_s)

    def delay(self, attempt: int) -> float:
        """Return the wait before retry number ``attempt`` (1 for the first failure)."""
        if attempt < 1:
            raise ValueError(f"attempt must be an int >= 1, got {attempt!r}")
        # Exponents past 64 are capped anyway; stopping there avoids an overflow.
        return min(self.max_s, self.min_s * 2.0 ** min(attempt - 1, 64))


class TokenBucket:
    """Sends per second with a burst: ``rate`` tokens a second, at most ``burst`` saved.

    The bucket starts full. The clock is injected (``now`` in seconds, any origin); a
    ``now`` earlier than one seen before counts as the latest one, so a clock step back
    never mints tokens.

    Raises:
        ValueError: ``rate`` not > 0 or ``burst`` < 1.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    # Tokens accrue as float sums (k * 1/rate); without this slack the k-th token would
    # sometimes arrive a rounding error after its exact time.
    _EPSILON = 1e-9

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = require_number("rate", rate, minimum=0, min_exclusive=True)
        self.burst = require_number("burst", burst, minimum=1)
        self._tokens = self.burst
        self._last = -math.inf

    def _refill(self, now: float) -> None:
        if self._last == -math.inf:
            self._last = now
        elif now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now

    def take(self, now: float) -> bool:
        """Take one token if one is available at ``now``; return whether it was."""
        self._refill(now)
        if self._tokens >= 1.0 - self._EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def next_available(self, now: float) -> float:
        """Return the earliest time a token is available (``now`` when one is)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        if missing <= self._EPSILON:
            return max(now, self._last)
        return self._last + missing / self.rate

    def tokens(self, now: float) -> float:
        """Return the tokens available at ``now`` (fractional)."""
        self._refill(now)
        return self._tokens


def parse_graph_error(body: bytes) -> GraphError | None:
    """Return the Graph ``error`` object in ``body``, or None when there is none."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    subcode = error.get("error_subcode")
    if isinstance(subcode, bool) or not isinstance(subcode, int):
        subcode = None
    return GraphError(
        code=code,
        message=_str_field(error.get("message")),
        type=_str_field(error.get("type")),
        error_subcode=subcode,
        fbtrace_id=_str_field(error.get("fbtrace_id")),
    )


def _str_field(value: object) -> str:
    return value if isinstance(value, str) else ""


def _message_id(body: bytes) -> str | None:
    """The ``wamid`` of a success body ``{"messages":[{"id": ...}]}``, or None."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        return None
    wamid = messages[0].get("id")
    return wamid if isinstance(wamid, str) and wamid else None


def clean_text(text: str, *, secret: str = "", limit: int = _DETAIL_LIMIT) -> str:
    """Make server or exception text safe for a report: secret redacted, short, valid UTF-8.

    A ``DeliveryReport`` refuses text that cannot be encoded (a lone surrogate from a JSON
    escape would crash the account actor), so such characters become ``?``.
    """
    if secret:
        text = text.replace(secret, "[redacted]")
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.encode("utf-8", "replace").decode("utf-8")


def classify(
    outcome: HttpOutcome, *, attempt: int, backoff: Backoff, now: float, secret: str = ""
) -> Verdict:
    """Map one HTTP attempt to a verdict (the table is in the module docs of ``cloud_api``).

    Args:
        outcome: what the attempt produced.
        attempt: the number this failure would have among the message's retryable
            failures (1 for the first), which sets the backoff.
        backoff: the backoff policy.
        now: epoch seconds, to judge a ``Retry-After`` HTTP-date.
        secret: text to redact from details (the access token).
    """

    def retry(reason: str, detail: str, *, maybe_sent: bool = False) -> Verdict:
        wait = backoff.delay(attempt)
        # No default: without a usable header the backoff alone decides.
        asked = parse_retry_after(outcome.retry_after, now=now, cap_s=MAX_RETRY_AFTER_S)
        if asked is not None and asked > wait:
            wait = asked
        detail = f"{detail}; retry in {wait:g}s (attempt {attempt})"
        return Verdict(
            ok=False,
            reason=reason,
            detail=clean_text(detail, secret=secret),
            retry_after=wait,
            maybe_sent=maybe_sent,
        )

    def fail(reason: str, detail: str, *, auth: bool = False) -> Verdict:
        detail = clean_text(detail, secret=secret)
        return Verdict(ok=False, reason=reason, detail=detail, auth_failed=auth)

    status = outcome.status
    if status is None:
        # A timeout may have sent it: a send with no answer still counts as one.
        error = outcome.error or "unknown error"
        return retry("transport_error", f"no HTTP response: {error}", maybe_sent=True)
    if outcome.error:
        # The status line arrived but the body broke off: the verdict inside is unknown.
        ok_status = 200 <= status < 300
        maybe = "; the message may or may not have been sent" if ok_status else ""
        detail = f"HTTP {status}, body cut short ({outcome.error}){maybe}"
        return retry("transport_error", detail, maybe_sent=ok_status)
    graph = parse_graph_error(outcome.body)
    if graph is not None:
        where = f"HTTP {status}: {graph.describe()}"
        if graph.code in AUTH_CODES:
            return fail("account_auth", where, auth=True)
        if graph.code in RATE_CODES:
            return retry("rate_limited", where)
        if graph.code in OUTSIDE_WINDOW_CODES:
            return fail("outside_window", where)
    if status >= 500:
        return retry("transport_error", graph.describe() if graph else f"HTTP {status}")
    if 200 <= status < 300:
        wamid = _message_id(outcome.body)
        if wamid is not None and graph is None:
            usable = len(wamid) <= _WAMID_LIMIT and _CONTROL.search(wamid) is None
            return Verdict(
                ok=True,
                detail=clean_text(f"sent as {wamid}", secret=secret),
                wamid=wamid if usable else "",
            )
        snippet = outcome.body[:80].decode("utf-8", "replace")
        return retry(
            "transport_error",
            f"HTTP {status} with an unparsable body {snippet!r}: "
            "the message may or may not have been sent",
            maybe_sent=True,
        )
    if status == 429:
        # Plain HTTP throttling (a proxy, or Graph without an error object).
        return retry("rate_limited", f"HTTP 429{': ' + graph.describe() if graph else ''}")
    if graph is not None:
        return fail(f"api_error:{graph.code}", f"HTTP {status}: {graph.describe()}")
    return fail(f"api_error:http_{status}", f"HTTP {status} without a Graph error object")

"""The ``openai`` provider's pure policy: options, context window, request body, result mapping.

Nothing here does I/O. :mod:`actors.pool.openai` wraps these pieces around one pooled
aiohttp session; tests drive them directly, with no socket.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from actors.config.envnames import show_env_name
from actors.cores._args import require_int, require_number
from actors.cores.retry_after import parse_retry_after
from actors.pool.providers import ProviderResult
from protocols import MAX_TEXT_LEN, Scalar

__all__ = [
    "DEFAULT_RETRY_AFTER_S",
    "DEFAULT_SYSTEM_PROMPT",
    "MAX_RETRY_AFTER_S",
    "ContextWindow",
    "Mapped",
    "OpenAIOptions",
    "RawResponse",
    "Turn",
    "build_payload",
    "map_exception",
    "map_response",
    "parse_options",
    "user_content",
]

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly and clearly."
DEFAULT_RETRY_AFTER_S = 1.0
"""Cooldown of a 429 that carries no usable ``Retry-After``: a 429 always benches a little."""
MAX_RETRY_AFTER_S = 3600.0
"""Longest ``Retry-After`` honoured: a broken header must not bench a provider for days."""

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KNOWN = (
    "api_key_env",
    "base_url",
    "context_customers",
    "context_turns",
    "max_response_bytes",
    "max_tokens",
    "model",
    "no_auth",
    "system_prompt",
    "temperature",
    "timeout_s",
)

Turn = tuple[str, str]
"""One context entry: (role, text), role ``user`` or ``assistant``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAIOptions:
    """Validated options of one ``openai`` provider (see :func:`parse_options`)."""

    base_url: str
    model: str
    api_key_env: str | None = None
    no_auth: bool = False
    timeout_s: float = 20.0
    max_tokens: int = 256
    temperature: float | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    context_turns: int = 10
    context_customers: int = 10_000
    max_response_bytes: int = 1 << 20

    @property
    def url(self) -> str:
        """The Chat Completions endpoint."""
        return f"{self.base_url}/chat/completions"


def parse_options(provider: str, options: Mapping[str, Scalar]) -> OpenAIOptions:
    """Validate a ``ProviderSpec.options`` mapping for kind ``openai``.

    Raises:
        ValueError: an unknown key, a missing required key, or a value outside its rule;
            the message names the provider, the option and the rule.
    """
    where = f"provider {provider!r}: option"
    for key in options:
        if key not in _KNOWN:
            raise ValueError(
                f"provider {provider!r}: unknown option {key!r} for kind 'openai' "
                f"(known: {', '.join(_KNOWN)})"
            )

    def text(key: str, *, required: bool, rule: str) -> str | None:
        value = options.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            got = "missing" if value is None else f"got {value!r}"
            raise ValueError(f"{where} {key!r} is required: {rule}, {got}")
        return value.strip()

    base_url = text("base_url", required=True, rule="an http(s) URL like https://api.openai.com/v1")
    assert base_url is not None
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(
            f"{where} 'base_url' must start with http:// or https://, got {base_url!r}"
        )
    model = text("model", required=True, rule="a model name")
    no_auth = options.get("no_auth", False)
    if not isinstance(no_auth, bool):
        raise ValueError(f"{where} 'no_auth' must be true or false, got {no_auth!r}")
    env = text("api_key_env", required=not no_auth, rule="the environment variable of the key")
    if env is not None and no_auth:
        raise ValueError(f"{where} 'api_key_env' must not be set with no_auth = true")
    if env is not None and not _ENV_NAME_RE.fullmatch(env):
        raise ValueError(
            f"{where} 'api_key_env' must be an environment variable name, got {show_env_name(env)}"
        )
    prompt = options.get("system_prompt", DEFAULT_SYSTEM_PROMPT)
    if not isinstance(prompt, str):
        raise ValueError(f"{where} 'system_prompt' must be a string, got {prompt!r}")
    temperature = options.get("temperature")
    return OpenAIOptions(
        base_url=base_url.rstrip("/"),
        model=model or "",
        api_key_env=env,
        no_auth=no_auth,
        timeout_s=require_number(
            f"{where} 'timeout_s'", options.get("timeout_s", 20.0), minimum=0, min_exclusive=True
        ),
        max_tokens=require_int(f"{where} 'max_tokens'", options.get("max_tokens", 256), minimum=1),
        temperature=None
        if temperature is None
        else require_number(f"{where} 'temperature'", temperature, minimum=0, maximum=2),
        system_prompt=prompt,
        context_turns=require_int(
            f"{where} 'context_turns'", options.get("context_turns", 10), minimum=0
        ),
        context_customers=require_int(
            f"{where} 'context_customers'", options.get("context_customers", 10_000), minimum=0
        ),
        max_response_bytes=require_int(
            f"{where} 'max_response_bytes'", options.get("max_response_bytes", 1 << 20), minimum=1
        ),
    )


class ContextWindow:
    """Each customer's last ``turns`` turns, for at most ``customers`` customers.

    A least-recently-used map of bounded deques: reading or recording a customer makes it
    the most recent, and recording a new customer past the bound evicts the least recent
    one. Memory is bounded by ``customers * turns`` entries whatever the traffic.
    """

    __slots__ = ("_by_customer", "_customers", "_turns", "evictions")

    def __init__(self, *, turns: int, customers: int) -> None:
        self._turns = require_int("turns", turns, minimum=0)
        self._customers = require_int("customers", customers, minimum=0)
        self._by_customer: OrderedDict[str, deque[Turn]] = OrderedDict()
        self.evictions = 0
        """Customers dropped to make room for a newer one."""

    def __len__(self) -> int:
        return len(self._by_customer)

    def history(self, customer_id: str) -> tuple[Turn, ...]:
        """The customer's recent turns, oldest first (empty for a customer not kept)."""
        turns = self._by_customer.get(customer_id)
        if turns is None:
            return ()
        self._by_customer.move_to_end(customer_id)
        return tuple(turns)

    def record(self, customer_id: str, user_text: str, reply_text: str) -> None:
        """Append one exchange to the customer's window; evict the LRU customer if over."""
        if self._turns == 0 or self._customers == 0:
            return
        turns = self._by_customer.get(customer_id)
        if turns is None:
            turns = self._by_customer[customer_id] = deque(maxlen=self._turns)
            while len(self._by_customer) > self._customers:
                self._by_customer.popitem(last=False)
                self.evictions += 1
        else:
            self._by_customer.move_to_end(customer_id)
        turns.append(("user", user_text))
        turns.append(("assistant", reply_text))


def user_content(text: str, context_id: str = "") -> str:
    """The user message for ``text``: a reply to an earlier message says so on a first line.

    WhatsApp's ``context.id`` names the message the customer replied to (often one of
    ours: the buttons they tapped, the answer they quote). A Chat Completions request
    has no field for it, so it is a short marker line the model can read, e.g.
    ``[in reply to message wamid.HBgL...]``; the gateway has already marked the kind of
    message in ``text`` (``[button reply] ...``).
    """
    return f"[in reply to message {context_id}]\n{text}" if context_id else text


def build_payload(
    opts: OpenAIOptions, history: Sequence[Turn], text: str, *, context_id: str = ""
) -> bytes:
    """The JSON request body: system prompt, the customer's turns, then ``text``.

    Args:
        opts: the provider's options (model, system prompt, limits).
        history: the customer's recent turns, oldest first.
        text: the customer's message as the AI reads it (kind-marked by the gateway).
        context_id: the message it replies to, or ""; see :func:`user_content`.
    """
    messages: list[dict[str, str]] = []
    if opts.system_prompt:
        messages.append({"role": "system", "content": opts.system_prompt})
    messages += [{"role": role, "content": content} for role, content in history]
    messages.append({"role": "user", "content": user_content(text, context_id)})
    body: dict[str, Any] = {
        "model": opts.model,
        "messages": messages,
        "max_tokens": opts.max_tokens,
    }
    if opts.temperature is not None:
        body["temperature"] = opts.temperature
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class RawResponse:
    """What the HTTP call saw: status, body, ``Retry-After``, and a size overrun.

    ``over_limit`` is the ``max_response_bytes`` the body went past (reading stopped
    there and ``body`` is not parsed), or None when the body fit.
    """

    status: int
    body: bytes = b""
    retry_after: str | None = None
    over_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Mapped:
    """A provider result plus the sentence that says what went wrong (empty when ok)."""

    result: ProviderResult
    detail: str = ""


def _fail(message_id: str, error: str, detail: str, retry_after: float | None = None) -> Mapped:
    result = ProviderResult(message_id=message_id, ok=False, error=error, retry_after=retry_after)
    return Mapped(result, detail)


def _count(usage: object, key: str) -> int:
    # Usage is optional (llama.cpp and some proxies omit it): anything odd counts as 0.
    if isinstance(usage, dict):
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0


def _api_error(body: bytes) -> str:
    """The short ``type``/``code`` of an OpenAI error body; never its free-text message.

    Error messages may quote the credentials sent (OpenAI's 401 names part of the key).
    """
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    parts = [f"{k}={error[k]}" for k in ("type", "code") if isinstance(error.get(k), str | int)]
    return (" (" + ", ".join(parts) + ")")[:120] if parts else ""


def map_response(message_id: str, raw: RawResponse, now: float) -> Mapped:
    """Turn one HTTP response into a provider result (``now``: epoch seconds, for dates).

    200 with a non-empty ``choices[0].message.content`` is ok (cut to ``MAX_TEXT_LEN``,
    token usage when present); 429 is ``rate_limited`` with ``retry_after``; 5xx, other
    non-4xx statuses, oversize, malformed or empty bodies are ``provider_error``; any other
    4xx is ``api_error:<status>``.
    """
    status = raw.status
    if status == 429:
        wait = parse_retry_after(
            raw.retry_after, now=now, cap_s=MAX_RETRY_AFTER_S, default=DEFAULT_RETRY_AFTER_S
        )
        return _fail(message_id, "rate_limited", f"HTTP 429: retry after {wait:g} s", wait)
    if 400 <= status < 500:
        return _fail(message_id, f"api_error:{status}", f"HTTP {status}{_api_error(raw.body)}")
    if status != 200:
        what = "server error" if 500 <= status < 600 else "unexpected status"
        return _fail(message_id, "provider_error", f"HTTP {status} {what}")
    if raw.over_limit is not None:
        detail = f"response body over max_response_bytes ({raw.over_limit})"
        return _fail(message_id, "provider_error", detail)
    try:
        doc = json.loads(raw.body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both
        return _fail(message_id, "provider_error", "malformed JSON body")
    choices = doc.get("choices") if isinstance(doc, dict) else None
    if not isinstance(choices, list) or not choices:
        return _fail(message_id, "provider_error", "no choices in the response")
    first = choices[0]
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str) or not content.strip():
        return _fail(message_id, "provider_error", "empty or missing choices[0].message.content")
    text = content[:MAX_TEXT_LEN]
    if not text.isascii():
        # JSON may carry lone surrogates, which no UTF-8 message can hold.
        text = text.encode("utf-8", "replace").decode("utf-8")
    usage = doc.get("usage")
    result = ProviderResult(
        message_id=message_id,
        ok=True,
        text=text,
        prompt_tokens=_count(usage, "prompt_tokens"),
        completion_tokens=_count(usage, "completion_tokens"),
    )
    return Mapped(result)


def map_exception(message_id: str, exc: BaseException, *, timeout_s: float) -> Mapped:
    """Turn a failed HTTP call into ``provider_error`` with a detail naming the failure.

    The detail holds the exception's type and, for client errors, its message (host, port,
    OS error), never ``repr``: aiohttp's request info in a repr carries the request headers.
    """
    name = type(exc).__name__
    if isinstance(exc, TimeoutError):
        detail = f"no response within timeout_s ({timeout_s:g} s)"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        detail = f"response body cut short or malformed ({name})"
    elif isinstance(exc, aiohttp.ClientConnectionError):
        detail = f"connection error ({name}: {str(exc)[:160]})"
    elif isinstance(exc, aiohttp.ClientError):
        detail = f"HTTP client error ({name}: {str(exc)[:160]})"
    else:
        detail = f"unexpected error ({name})"
    return _fail(message_id, "provider_error", detail)

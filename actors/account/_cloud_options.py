"""The ``cloud_api`` transport's options: validated with no I/O and no aiohttp."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from actors.config.envnames import show_env_name
from actors.cores._args import require_int, require_number
from protocols import Scalar

__all__ = ["DEFAULT_THROUGHPUT_PER_S", "OPTION_KEYS", "CloudOptions", "parse_options"]

OPTION_KEYS = (
    "api_base",
    "backoff_max_s",
    "backoff_min_s",
    "max_in_flight",
    "phone_number_id",
    "poll_interval_s",
    "quote_replies",
    "throughput_per_s",
    "timeout_s",
    "token_env",
    "version",
)
"""Every option ``cloud_api`` knows; any other key is refused."""

DEFAULT_THROUGHPUT_PER_S = 80.0
"""Sends per second per number when ``throughput_per_s`` is not given: Meta's default."""

_DIGITS = re.compile(r"[0-9]{1,32}")
_VERSION = re.compile(r"v[0-9]{1,3}\.[0-9]{1,3}")
# At most 64 characters: a Graph token (~200) pasted here by mistake fails this check, and
# the error never shows the value, so the token cannot leak through it.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudOptions:
    """Validated ``cloud_api`` options (defaults in ``CloudApiTransport``'s docstring)."""

    url: str
    token_env: str
    throughput_per_s: float
    timeout_s: float
    max_in_flight: int
    backoff_min_s: float
    backoff_max_s: float
    poll_interval_s: float
    quote_replies: bool = False


def parse_options(
    account_id: str, options: Mapping[str, Scalar], environ: Mapping[str, str]
) -> tuple[CloudOptions, str]:
    """Validate ``options`` and read the access token from ``environ``.

    Returns:
        The options and the token. The token is returned apart so that it never sits in
        a dataclass whose repr could be logged.

    Raises:
        ValueError: an unknown key, or a bad or missing value, naming the account, the key
            and the rule (``token_env``: the variable, never a value that may be a token).
    """
    where = f"account {account_id!r}: cloud_api option"
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        hint = " (secrets go in an environment variable named by token_env)"
        raise ValueError(
            f"account {account_id!r}: unknown cloud_api option {unknown[0]!r} "
            f"(known: {', '.join(OPTION_KEYS)})" + (hint if "token" in unknown[0] else "")
        )
    phone_number_id = _matching(where, options, "phone_number_id", _DIGITS, "digits")
    token_env = options.get("token_env")
    if not isinstance(token_env, str) or _ENV_NAME.fullmatch(token_env) is None:
        raise ValueError(
            f"{where} token_env is required and must be the NAME of the environment "
            "variable that holds the access token (letters, digits, _; at most 64 "
            "characters); the value is not shown in case it is the token itself"
        )
    api_base = options.get("api_base", "https://graph.facebook.com")
    if not isinstance(api_base, str) or not api_base.startswith(("http://", "https://")):
        raise ValueError(f"{where} api_base must be an http:// or https:// URL, got {api_base!r}")
    version = _matching(where, options, "version", _VERSION, "like 'v21.0'", default="v21.0")
    backoff_min_s = _positive(where, options, "backoff_min_s", 0.5)
    parsed = CloudOptions(
        url=f"{api_base.rstrip('/')}/{version}/{phone_number_id}/messages",
        token_env=token_env,
        throughput_per_s=_positive(where, options, "throughput_per_s", DEFAULT_THROUGHPUT_PER_S),
        timeout_s=_positive(where, options, "timeout_s", 10.0),
        max_in_flight=require_int(
            f"{where} max_in_flight", options.get("max_in_flight", 256), minimum=1
        ),
        backoff_min_s=backoff_min_s,
        backoff_max_s=require_number(
            f"{where} backoff_max_s", options.get("backoff_max_s", 30.0), minimum=backoff_min_s
        ),
        poll_interval_s=_positive(where, options, "poll_interval_s", 0.005),
        quote_replies=_flag(where, options, "quote_replies"),
    )
    token = environ.get(token_env, "")
    if not token:
        raise ValueError(
            f"account {account_id!r}: environment variable {show_env_name(token_env)} (cloud_api "
            "option token_env) is not set or empty; it must hold the access token"
        )
    return parsed, token


def _flag(where: str, options: Mapping[str, Scalar], key: str) -> bool:
    """Return option ``key`` (default False) if it is a bool."""
    value = options.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{where} {key} must be true or false, got {value!r}")
    return value


def _positive(where: str, options: Mapping[str, Scalar], key: str, default: float) -> float:
    """Return option ``key`` (or ``default``) if it is a finite number > 0."""
    value = options.get(key, default)
    return require_number(f"{where} {key}", value, minimum=0, min_exclusive=True)


def _matching(
    where: str,
    options: Mapping[str, Scalar],
    key: str,
    pattern: re.Pattern[str],
    rule: str,
    *,
    default: str | None = None,
) -> str:
    """Return option ``key`` as a str matching ``pattern`` (an int is taken as its digits)."""
    if key not in options and default is None:
        raise ValueError(f"{where} {key} is required ({rule})")
    value = options.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ValueError(f"{where} {key} must be {rule}, got {value!r}")
    return value

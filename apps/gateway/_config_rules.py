"""The rules of the gateway's config: one check per ``[gateway]`` key, account and table.

Kept apart from :mod:`apps.gateway.config` (which reads the file and holds the dataclasses)
so each rule lives in one place, shared by the dataclasses' own validation and the file
loader. Every error names where (the dataclass, or the file and table), the key and the
rule, and never echoes what may be a secret.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Protocol

from actors.config import BASES
from actors.errors import ConfigError
from apps.gateway.inbound import FALLBACK_KINDS
from protocols import MAX_TEXT_LEN, AccountSpec, Scalar, ValidationError

__all__ = [
    "FALLBACKS",
    "GATEWAY_KEYS",
    "TRANSPORT_KINDS",
    "check_account",
    "check_admin_port",
    "check_fallbacks",
    "check_gateway_key",
    "check_unique",
    "rule_error",
    "unknown_key",
]


class AccountEntry(Protocol):
    """What the rules read of an account (``apps.gateway.config.AccountEntry``)."""

    @property
    def account_id(self) -> str: ...
    @property
    def transport(self) -> str: ...
    @property
    def phone_number_id(self) -> str: ...
    @property
    def options(self) -> dict[str, Scalar]: ...


TRANSPORT_KINDS = ("loopback", "cloud_api")
GATEWAY_KEYS = (
    "host",
    "port",
    "verify_token_env",
    "app_secret_env",
    "max_body_bytes",
    "retry_after_s",
    "base",
    "admin_port",
    "outcome_wait_s",
    "header_timeout_s",
    "body_timeout_s",
    "keepalive_timeout_s",
    "max_connections",
    "read_receipts",
    "typing_indicator",
    "read_receipt_share",
    "quote_replies",
)
FALLBACKS = "fallback_replies"  # a sub-table of [gateway], checked on its own
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PHONE_ID = re.compile(r"[0-9]{1,32}")
_FLAG_KEYS = ("read_receipts", "typing_indicator", "quote_replies")
_TIMEOUT_KEYS = ("header_timeout_s", "body_timeout_s", "keepalive_timeout_s")
_NO_ADMIN = "simpleSystemBase"  # the base that runs in the caller's thread, with no admin


def rule_error(where: str, key: str, value: Any, rule: str) -> ConfigError:
    """``<where> <key> = <value>: must be <rule>``, the value cut to 60 characters."""
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return ConfigError(f"{where} {key} = {shown}: must be {rule}")


def check_gateway_key(key: str, value: Any, where: str) -> None:
    """Check one ``[gateway]`` key's value on its own (see :func:`check_admin_port` too).

    Raises:
        ConfigError: the value breaks the key's rule; a ``*_env`` value is never shown.
    """
    kind = type(value)
    if key == "host":
        ok, rule = kind is str and bool(value.strip()), "a non-empty string"
    elif key in ("port", "admin_port"):
        ok, rule = kind is int and 0 <= value <= 65535, "an integer from 0 to 65535"
        rule += " (0: any free port)"
    elif key in ("verify_token_env", "app_secret_env"):
        rule = "an environment variable name ([A-Za-z_][A-Za-z0-9_]*), not the secret itself"
        ok = kind is str and _ENV_NAME.fullmatch(value) is not None
    elif key == "max_body_bytes":
        ok, rule = kind is int and value >= 1024, "an integer >= 1024"
    elif key == "retry_after_s":
        ok, rule = kind is int and 1 <= value <= 86400, "an integer from 1 to 86400 (seconds)"
    elif key == "base":
        ok, rule = value in BASES, f"one of {', '.join(map(repr, BASES))}"
    elif key in _TIMEOUT_KEYS:
        ok = kind in (int, float) and 0 < value <= 3600
        rule = "a number > 0 and <= 3600 (seconds)"
    elif key == "max_connections":
        ok, rule = kind is int and 1 <= value <= 1_000_000, "an integer from 1 to 1000000"
    elif key in _FLAG_KEYS:
        ok, rule = kind is bool, "true or false"
    elif key == "read_receipt_share":
        ok = kind in (int, float) and 0 < value <= 0.5
        rule = "a number > 0 and <= 0.5 (the part of each number's throughput_per_s)"
    else:  # outcome_wait_s
        ok = kind in (int, float) and 0 < value <= 1
        rule = "a number > 0 and <= 1 (seconds)"
    if not ok:
        if key.endswith("_env"):
            # A wrong value here is often the secret itself, pasted in: never echo it.
            value = f"<{len(value) if isinstance(value, str) else type(value).__name__} hidden>"
        raise rule_error(where, key, value, rule)


def check_admin_port(admin_port: int, base: str, where: str) -> None:
    """A fixed admin port needs a base that runs an admin (members join the leader there).

    Raises:
        ConfigError: ``admin_port`` is set with ``base = "simpleSystemBase"``.
    """
    if admin_port and base == _NO_ADMIN:
        rule = f"0 or left out with base = {_NO_ADMIN!r}, which runs no Thespian admin"
        raise rule_error(where, "admin_port", admin_port, rule)


def check_fallbacks(table: Any, where: str) -> None:
    """Check ``[gateway.fallback_replies]``: known kinds, each a non-empty bounded text."""
    if not isinstance(table, dict):
        raise ConfigError(f'{where} {FALLBACKS} must be a table of kind = "reply text"')
    for kind, text in table.items():
        if kind not in FALLBACK_KINDS:
            close = difflib.get_close_matches(str(kind), FALLBACK_KINDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{where} {FALLBACKS}: {kind!r} is not a kind the AI cannot read "
                f"(one of {', '.join(FALLBACK_KINDS)}){hint}"
            )
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_LEN:
            rule = f"a non-empty string of at most {MAX_TEXT_LEN} characters"
            raise rule_error(where, f"{FALLBACKS}.{kind}", text, rule)


def check_account(entry: AccountEntry, where: str) -> None:
    """Check one account: its transport, its number, and what the engine would refuse."""
    if entry.transport not in TRANSPORT_KINDS:
        rule = f"one of {', '.join(map(repr, TRANSPORT_KINDS))}"
        raise rule_error(where, "transport", entry.transport, rule)
    if type(entry.phone_number_id) is not str or not _PHONE_ID.fullmatch(entry.phone_number_id):
        raise rule_error(where, "phone_number_id", entry.phone_number_id, "a string of digits")
    given = entry.options.get("phone_number_id", entry.phone_number_id)
    if entry.transport == "cloud_api" and str(given) != entry.phone_number_id:
        rule = f"the account's phone_number_id {entry.phone_number_id!r} (or left out)"
        raise rule_error(where, "options.phone_number_id", given, rule)
    try:
        AccountSpec(account_id=entry.account_id, transport=entry.transport, options=entry.options)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_unique(accounts: tuple[AccountEntry, ...], where: str) -> None:
    """No two accounts share an ``account_id`` or a ``phone_number_id``."""
    for attr in ("account_id", "phone_number_id"):
        seen: set[str] = set()
        for i, entry in enumerate(accounts):
            value = getattr(entry, attr)
            if value in seen:
                raise ConfigError(f"{where} [[accounts]][{i}] {attr} = {value!r}: appears twice")
            seen.add(value)


def unknown_key(key: str, known: tuple[str, ...], where: str) -> ConfigError:
    """``<where>: unknown key 'x'``, with the closest known key as a hint."""
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}{hint}")

"""The gateway's TOML config: the HTTP side, the accounts, the providers, the engine.

One file holds four tables::

    [gateway]            host, port, secrets' variable names, body limit, Retry-After, base,
                         admin port, read deadlines, connection cap, read receipts, quoting
    [gateway.fallback_replies]   kind = "text": replies to messages the AI cannot read
    [engine]             the EngineConfig keys (read by actors.config.build)
    [[accounts]]         account_id, phone_number_id, transport, options
    [[providers]]        name, kind, priority, daily_limit, active, options

Secrets are never in the file: it names the environment variables that hold them, and
:func:`resolve_secrets` reads those. Every error names the file, the key and the rule
(the rules: :mod:`apps.gateway._config_rules`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.account._cloud_options import DEFAULT_THROUGHPUT_PER_S
from actors.config import EngineConfig, build
from actors.config.envnames import show_env_name
from actors.errors import ConfigError
from apps.gateway._config_rules import (
    FALLBACKS,
    GATEWAY_KEYS,
    TRANSPORT_KINDS,
    check_account,
    check_admin_port,
    check_fallbacks,
    check_gateway_key,
    check_unique,
    rule_error,
    unknown_key,
)
from protocols import ProviderSpec, Scalar, ValidationError

__all__ = [
    "TRANSPORT_KINDS",
    "AccountEntry",
    "GatewayConfig",
    "GatewaySecrets",
    "load_gateway_config",
    "resolve_secrets",
]

_TABLES = ("gateway", "engine", "accounts", "providers")
_ACCOUNT_KEYS = ("account_id", "phone_number_id", "transport", "options")
_PROVIDER_KEYS = ("name", "kind", "priority", "daily_limit", "active", "options")


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountEntry:
    """One WhatsApp number: our account id, Meta's phone_number_id, how replies are sent."""

    account_id: str
    phone_number_id: str
    transport: str = "loopback"
    options: dict[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_account(self, "AccountEntry")

    @property
    def engine_options(self) -> dict[str, Scalar]:
        """The transport options for ``add_account``.

        ``cloud_api`` sends from ``phone_number_id`` too: it is filled in from this entry
        so the number that receives and the number that replies cannot differ.
        """
        if self.transport == "cloud_api":
            return {**self.options, "phone_number_id": self.phone_number_id}
        return dict(self.options)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """Everything the gateway needs; construction validates it (``ConfigError``).

    Build it with :func:`load_gateway_config` from a file, or directly (tests do).

    Attributes:
        host, port: where the HTTP server listens (port 0: any free port).
        verify_token_env: the variable holding the webhook verify token.
        app_secret_env: the variable holding the Meta app secret (signature key).
        max_body_bytes: largest webhook body read; a larger one is answered 413.
        retry_after_s: the ``Retry-After`` of a 503 (seconds).
        base: the Thespian base of the embedded engine.
        admin_port: the Thespian admin port of the engine (0: a free port). Fix it to run
            members on other hosts (``scripts/member --leader HOST:admin_port``);
            ``simpleSystemBase`` runs no admin, so it must stay 0 there.
        outcome_wait_s: how long one collection of outcomes waits on the engine thread;
            a webhook may queue behind it, so it is short.
        header_timeout_s: a client must send a request's line and headers within this
            long of connecting (or of the first byte of a later request); else it is closed.
        body_timeout_s: and the body within this long of the headers.
        keepalive_timeout_s: an answered connection kept alive is closed after this long
            without a new request.
        max_connections: the most client connections open at once; past it the one that
            has waited longest on its client is closed to make room (or, when all are
            busy with requests, the new one is refused with a 503).
        read_receipts: mark each accepted message read on its ``cloud_api`` number, as
            soon as the engine accepts it (:mod:`apps.gateway.receipts`).
        typing_indicator: with read receipts, show the customer "typing..." until the
            reply is sent (or 25 s).
        read_receipt_share: the part of each number's ``throughput_per_s`` kept for read
            requests; the engine sends replies with the rest.
        quote_replies: each reply quotes the customer's message (``context.message_id``),
            for ``cloud_api`` numbers that do not set their own ``quote_replies`` option.
        fallback_replies: kind -> a fixed reply for messages of that kind that the AI
            cannot read (``audio``, ``sticker``, ...: :data:`FALLBACK_KINDS`); a kind
            left out is acknowledged and counted, not answered (the default for all).
        engine: the engine's limits.
        accounts, providers: what the engine serves and calls.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    verify_token_env: str = "WHATSAPP_VERIFY_TOKEN"
    app_secret_env: str = "WHATSAPP_APP_SECRET"
    max_body_bytes: int = 3 * 1024 * 1024
    retry_after_s: int = 5
    base: str = "multiprocTCPBase"
    admin_port: int = 0
    outcome_wait_s: float = 0.05
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 15.0
    max_connections: int = 2000
    read_receipts: bool = True
    typing_indicator: bool = True
    read_receipt_share: float = 0.2
    quote_replies: bool = False
    fallback_replies: dict[str, str] = field(default_factory=dict)
    engine: EngineConfig = field(default_factory=EngineConfig)
    accounts: tuple[AccountEntry, ...] = ()
    providers: tuple[ProviderSpec, ...] = ()

    def __post_init__(self) -> None:
        for name in GATEWAY_KEYS:
            check_gateway_key(name, getattr(self, name), "GatewayConfig")
        check_admin_port(self.admin_port, self.base, "GatewayConfig")
        check_fallbacks(self.fallback_replies, "GatewayConfig")
        check_unique(self.accounts, "GatewayConfig")
        names = [p.name for p in self.providers]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"GatewayConfig providers: name {name!r} appears twice")

    @property
    def account_map(self) -> dict[str, str]:
        """phone_number_id -> account_id, for the webhook parser."""
        return {a.phone_number_id: a.account_id for a in self.accounts}

    def read_budget_per_s(self, entry: AccountEntry) -> float:
        """Read requests per second kept for ``entry``'s number (0 without read receipts)."""
        if not self.read_receipts or entry.transport != "cloud_api":
            return 0.0
        return _throughput(entry) * self.read_receipt_share

    def account_options(self, entry: AccountEntry) -> dict[str, Scalar]:
        """The options the engine gets for ``entry``: its ``engine_options``, and for
        ``cloud_api`` the reply share of ``throughput_per_s`` (the read requests use the
        rest) and ``quote_replies`` when the gateway quotes and the account says nothing.
        """
        options = entry.engine_options
        if entry.transport != "cloud_api":
            return options
        if self.read_receipts:
            options["throughput_per_s"] = _throughput(entry) - self.read_budget_per_s(entry)
        if self.quote_replies:
            options.setdefault("quote_replies", True)
        return options


@dataclass(frozen=True, slots=True)
class GatewaySecrets:
    """The secrets read from the environment; ``repr`` never shows them."""

    verify_token: str = field(repr=False)
    app_secret: bytes = field(repr=False)


def resolve_secrets(config: GatewayConfig, env: Mapping[str, str] | None = None) -> GatewaySecrets:
    """Read the verify token and the app secret from the variables the config names.

    Raises:
        ConfigError: a variable is unset or empty; the message names it (never a value).
    """
    env = os.environ if env is None else env
    values = []
    for key in ("verify_token_env", "app_secret_env"):
        var = getattr(config, key)
        value = env.get(var, "")
        if not value:
            raise ConfigError(
                f"environment variable {show_env_name(var)} (named by [gateway] {key}) "
                "is not set or empty"
            )
        values.append(value)
    return GatewaySecrets(verify_token=values[0], app_secret=values[1].encode("utf-8"))


def _throughput(entry: AccountEntry) -> float:
    """The number's configured ``throughput_per_s`` (the transport's default if unset).

    A value the transport would refuse counts as the default here; the engine refuses
    the account with the reason.
    """
    value = entry.options.get("throughput_per_s", DEFAULT_THROUGHPUT_PER_S)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return DEFAULT_THROUGHPUT_PER_S
    return float(value) if 0 < value < 1e9 else DEFAULT_THROUGHPUT_PER_S


# --- reading the file ------------------------------------------------------------------------


def _table(value: Any, where: str, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    for key in value:
        if key not in known:
            raise unknown_key(key, known, where)
    return value


def _array(doc: dict[str, Any], name: str, file: str) -> list[dict[str, Any]]:
    items = doc.get(name, [])
    if not isinstance(items, list):
        raise ConfigError(f"{file}: {name} must be an array of tables ([[{name}]])")
    known = _ACCOUNT_KEYS if name == "accounts" else _PROVIDER_KEYS
    return [_table(item, f"{file} [[{name}]][{i}]", known) for i, item in enumerate(items)]


def _options(value: Any, where: str) -> dict[str, Scalar]:
    table = value if value is not None else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{where} options must be a table")
    for key, item in table.items():
        if not isinstance(item, (str, int, float, bool)):
            raise rule_error(where, f"options.{key}", item, "a string, number or boolean")
    return dict(table)


def _account(item: dict[str, Any], where: str) -> AccountEntry:
    for key in ("account_id", "phone_number_id"):
        if key not in item:
            raise ConfigError(f"{where}: {key} is required")
    phone_id = item["phone_number_id"]
    if type(phone_id) is int and phone_id >= 0:
        phone_id = str(phone_id)  # TOML integers are exact; Meta's ids are digit strings
    try:
        return AccountEntry(
            account_id=item["account_id"],
            phone_number_id=phone_id,
            transport=item.get("transport", "loopback"),
            options=_options(item.get("options"), where),
        )
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("AccountEntry", where, 1)) from None


def _provider(item: dict[str, Any], where: str) -> ProviderSpec:
    for key in ("name", "kind"):
        if key not in item:
            raise ConfigError(f"{where}: {key} is required")
    try:
        return ProviderSpec(
            name=item["name"],
            kind=item["kind"],
            priority=item.get("priority", 0),
            daily_limit=item.get("daily_limit"),
            active=item.get("active", True),
            options=_options(item.get("options"), where),
        )
    except ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_gateway_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Read a gateway config file; the ``[engine]`` table and ``WAE_*`` variables too.

    Raises:
        ConfigError: an unreadable file, an unknown table or key, or a value that breaks
            its rule; the message names the file, the key and the rule.
    """
    file = Path(path).name
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, ValueError) as exc:  # TOMLDecodeError, and tomllib's int digit limit
        raise ConfigError(f"cannot read config file {os.fspath(path)!r}: {exc}") from None
    _table(doc, file, _TABLES)
    section = _table(doc.get("gateway", {}), f"{file} [gateway]", (*GATEWAY_KEYS, FALLBACKS))
    for key, value in section.items():
        if key == FALLBACKS:
            check_fallbacks(value, f"{file} [gateway]")
        else:
            check_gateway_key(key, value, f"{file} [gateway]")
    # Checked here too, so that the error names the [gateway] table like the others.
    if "base" in section:
        check_admin_port(section.get("admin_port", 0), section["base"], f"{file} [gateway]")
    accounts = tuple(
        _account(item, f"{file} [[accounts]][{i}]")
        for i, item in enumerate(_array(doc, "accounts", file))
    )
    if not accounts:
        raise ConfigError(f"{file}: at least one [[accounts]] table is required")
    providers = tuple(
        _provider(item, f"{file} [[providers]][{i}]")
        for i, item in enumerate(_array(doc, "providers", file))
    )
    if not providers:
        raise ConfigError(f"{file}: at least one [[providers]] table is required")
    check_unique(accounts, file)
    engine = build(EngineConfig, table=doc.get("engine"), table_origin=f"{file} [engine]", env=env)
    try:
        return GatewayConfig(**section, engine=engine, accounts=accounts, providers=providers)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("GatewayConfig", file, 1)) from None

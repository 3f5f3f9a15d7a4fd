"""Account and provider management: specs, commands, their results, and account events."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from protocols._schema import (
    Message,
    Scalar,
    check_id,
    check_one_of,
    check_range,
    check_slug,
    check_text,
    message,
)

__all__ = [
    "ACCOUNT_EVENTS",
    "AccountEvent",
    "AccountEventKind",
    "AccountSpec",
    "AddAccount",
    "AddProvider",
    "CommandResult",
    "ProviderSpec",
    "RemoveAccount",
    "RemoveProvider",
]

MAX_OPTIONS = 64
"""Most keys an ``options`` mapping may have (options are settings, not data)."""


def _check_options(msg: Message, options: dict[str, Scalar]) -> None:
    if len(options) > MAX_OPTIONS:
        msg._fail("options", f"must have at most {MAX_OPTIONS} keys, got {len(options)}")
    for key, value in options.items():
        check_id(msg, f"options[{key!r}]", key)
        if isinstance(value, str):
            check_text(msg, f"options[{key!r}]", value, allow_empty=True)


@message("provider_spec")
@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSpec(Message):
    """An AI provider the pool may call.

    ``priority``: higher is preferred. ``daily_limit``: calls per UTC day, None for no
    limit. ``active=False`` keeps the spec but never loads it. ``options`` are the kind's
    settings (for ``echo``: ``latency_s``, ``failure_rate``).
    """

    name: str
    kind: str
    priority: int = 0
    daily_limit: int | None = None
    active: bool = True
    options: dict[str, Scalar] = field(default_factory=dict)

    def _validate(self) -> None:
        check_id(self, "name", self.name)
        check_slug(self, "kind", self.kind)
        if self.daily_limit is not None:
            check_range(self, "daily_limit", self.daily_limit, lo=1)
        _check_options(self, self.options)


@message("account_spec")
@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSpec(Message):
    """A WhatsApp number the engine serves, and the transport that sends its replies."""

    account_id: str
    transport: str = "loopback"
    options: dict[str, Scalar] = field(default_factory=dict)

    def _validate(self) -> None:
        check_id(self, "account_id", self.account_id)
        check_slug(self, "transport", self.transport)
        _check_options(self, self.options)


@message("add_account")
@dataclass(frozen=True, slots=True, kw_only=True)
class AddAccount(Message):
    """Ask the supervisor to start an account actor."""

    spec: AccountSpec


@message("remove_account")
@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveAccount(Message):
    """Ask the supervisor to stop an account; its pending messages end with an outcome."""

    account_id: str

    def _validate(self) -> None:
        check_id(self, "account_id", self.account_id)


@message("add_provider")
@dataclass(frozen=True, slots=True, kw_only=True)
class AddProvider(Message):
    """Ask the AI pool to load (or replace) a provider."""

    spec: ProviderSpec


@message("remove_provider")
@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveProvider(Message):
    """Ask the AI pool to unload a provider."""

    name: str

    def _validate(self) -> None:
        check_id(self, "name", self.name)


@message("command_result")
@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult(Message):
    """The answer to a management command.

    ``error`` is a short code when ``ok`` is False (e.g. ``instance_limit``,
    ``unknown_account``, ``listener_limit``); ``detail`` is the human sentence.
    """

    command: str
    ok: bool
    error: str = ""
    detail: str = ""

    def _validate(self) -> None:
        check_slug(self, "command", self.command)
        if self.ok and self.error:
            self._fail("error", f"must be empty when ok, got {self.error!r}")
        if not self.ok:
            check_slug(self, "error", self.error)
        check_text(self, "detail", self.detail, allow_empty=True)


class AccountEventKind(StrEnum):
    """What can happen to an account, as listeners see it."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RESTARTED = "restarted"
    FAILED = "failed"
    REMOVED = "removed"


ACCOUNT_EVENTS = frozenset(k.value for k in AccountEventKind)


@message("account_event")
@dataclass(frozen=True, slots=True, kw_only=True)
class AccountEvent(Message):
    """A status change of one account, delivered to its listeners."""

    account_id: str
    kind: str
    at: float
    detail: str = ""

    def _validate(self) -> None:
        check_id(self, "account_id", self.account_id)
        check_one_of(self, "kind", self.kind, ACCOUNT_EVENTS)
        check_text(self, "detail", self.detail, allow_empty=True)

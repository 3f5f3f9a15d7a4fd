"""Messages that wire the actors together inside one actor system.

Unlike ``protocols``, these carry Thespian addresses (which only mean something inside the
actor system that made them), so they have no msgpack form and never leave the system.
They are frozen dataclasses so that the TCP base can pickle them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.config import EngineConfig
from protocols import AccountSpec, Outcome, ProviderSpec

Address = Any  # thespian.actors.ActorAddress; kept opaque outside actors/

__all__ = [
    "AccountGone",
    "AccountUp",
    "ActorReport",
    "Address",
    "AskChild",
    "Configure",
    "Configured",
    "Drain",
    "DrainDone",
    "EngineStarted",
    "Forward",
    "PoolUp",
    "RouterLocation",
    "StartEngine",
    "StatsQuery",
    "SupervisorStats",
    "WhereIsRouter",
    "WiringAck",
]


@dataclass(frozen=True, slots=True)
class StartEngine:
    """Facade -> supervisor: create the router and the pool, answer ``EngineStarted``."""

    config: EngineConfig
    base: str
    seed: int


@dataclass(frozen=True, slots=True)
class EngineStarted:
    router: Address
    router_generation: int
    supervisor_pid: int
    admin_pid: int | None


@dataclass(frozen=True, slots=True)
class Configure:
    """Supervisor -> child: everything a (re)started child needs, answered by ``Configured``."""

    role: str
    name: str
    generation: int
    config: EngineConfig
    base: str
    seed: int
    account: AccountSpec | None = None
    providers: tuple[ProviderSpec, ...] = ()
    pool: Address = None
    pool_generation: int = 0
    accounts: tuple[tuple[str, Address, int], ...] = ()
    failed_accounts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Configured:
    role: str
    name: str
    generation: int
    pid: int | None
    ok: bool = True
    error: str = ""


@dataclass(frozen=True, slots=True)
class AccountUp:
    """Supervisor -> router: an account (re)started at ``address``."""

    account_id: str
    address: Address
    generation: int
    restarted: bool
    token: int = 0


@dataclass(frozen=True, slots=True)
class AccountGone:
    """Supervisor -> router: an account crashed (``down``), failed for good, or was removed."""

    account_id: str
    state: str  # "down" | "failed" | "removed"
    token: int = 0


@dataclass(frozen=True, slots=True)
class PoolUp:
    address: Address
    generation: int
    restarted: bool
    failed: bool = False
    token: int = 0


@dataclass(frozen=True, slots=True)
class WiringAck:
    token: int
    ended: int = 0


@dataclass(frozen=True, slots=True)
class WhereIsRouter:
    pass


@dataclass(frozen=True, slots=True)
class RouterLocation:
    address: Address
    generation: int
    up: bool


@dataclass(frozen=True, slots=True)
class AskChild:
    """Facade -> supervisor: deliver ``message`` to one child, which answers the facade."""

    role: str
    name: str
    message: Any


@dataclass(frozen=True, slots=True)
class Forward:
    """Supervisor -> child: handle ``message`` and answer ``reply_to`` directly."""

    message: Any
    reply_to: Address


@dataclass(frozen=True, slots=True)
class StatsQuery:
    token: int


@dataclass(frozen=True, slots=True)
class ActorReport:
    """One actor's answer to ``StatsQuery``."""

    token: int
    role: str
    name: str
    generation: int
    pid: int | None
    depth: int
    capacity: int
    counters: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SupervisorStats:
    reports: tuple[ActorReport, ...]
    children: tuple[tuple[str, str, int, str, int], ...]  # role, name, generation, state, restarts
    counters: dict[str, int]


@dataclass(frozen=True, slots=True)
class Drain:
    """Supervisor -> router: refuse new work; finish or abandon the rest by ``deadline``."""

    deadline: float


@dataclass(frozen=True, slots=True)
class DrainDone:
    drained: int
    abandoned: tuple[str, ...]
    outcomes: tuple[Outcome, ...]

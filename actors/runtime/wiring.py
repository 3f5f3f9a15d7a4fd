"""Messages that wire the actors together inside one actor system.

Unlike ``protocols``, these carry Thespian addresses (which only mean something inside the
actor system that made them), so they have no msgpack form and never leave the system.
They are frozen, keyword-only dataclasses so that the TCP base can pickle them and a call
site names every field. Each is declared with :func:`crosses_processes`, which is also how
the runtime's allowlisted unpickler learns which classes a frame may name: moving a class
moves its entry with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from actors.config import EngineConfig
from protocols import AccountSpec, Outcome, ProviderSpec

Address = Any  # thespian.actors.ActorAddress; kept opaque outside actors/

T = TypeVar("T", bound=type)

_CROSSING: dict[str, type] = {}


def crosses_processes(cls: T) -> T:
    """Declare ``cls`` as a class that actor-system frames may carry between processes.

    The runtime's unpickler admits exactly the declared classes (with the protocol
    messages and Thespian's own); a class not declared is refused on the network.
    """
    _CROSSING[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


def crossing_classes() -> tuple[type, ...]:
    """Every class declared with :func:`crosses_processes` so far (modules imported)."""
    return tuple(_CROSSING.values())


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
    "LeaseAsk",
    "LeaseGrant",
    "LocateRouter",
    "PoolUp",
    "RouterWhereabouts",
    "ShutdownDone",
    "StartEngine",
    "StatsQuery",
    "SupervisorStats",
    "WiringAck",
    "crosses_processes",
    "crossing_classes",
]


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class StartEngine:
    """Facade -> supervisor: create the router and the pool, answer ``EngineStarted``."""

    config: EngineConfig
    base: str
    seed: int


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class EngineStarted:
    router: Address
    router_generation: int
    supervisor_pid: int
    admin_pid: int | None


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
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
    lease_s: float = 0.0  # > 0: an account that sends only while it holds a lease this long
    incarnation: int = 0  # the supervisor's lifetime (random at its start), echoed in LeaseAsk


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class Configured:
    role: str
    name: str
    generation: int
    pid: int | None
    ok: bool = True
    error: str = ""


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class AccountUp:
    """Supervisor -> router: an account (re)started at ``address``."""

    account_id: str
    address: Address
    generation: int
    restarted: bool
    token: int = 0


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class AccountGone:
    """Supervisor -> router: an account crashed (``down``), failed for good, or was removed."""

    account_id: str
    state: Literal["down", "failed", "removed"]  # the router's ACCOUNT event; a str, no enum
    token: int = 0


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseAsk:
    """Account -> supervisor: renew my lease (``actors.cores.lease``); ``ask`` numbers it.

    Answered ``LeaseGrant`` while ``generation`` is the account's current one and
    ``incarnation`` the supervisor's own (``Configure.incarnation``), else with
    ``ActorExitRequest``: a generation the supervisor replaced must not send, nor one a
    supervisor of an earlier lifetime made (generations start at 1 again in a restarted
    leader, whose supervisor may even get the old one's port).
    """

    account_id: str
    generation: int
    ask: int
    incarnation: int = 0


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseGrant:
    """Supervisor -> account: the lease holds ``Configure.lease_s`` from when ``ask`` left."""

    ask: int


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class PoolUp:
    address: Address
    generation: int
    restarted: bool
    failed: bool = False
    token: int = 0


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class WiringAck:
    token: int
    ended: int = 0


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class LocateRouter:
    """Facade -> supervisor: where is the router, and is it alive? Answered ``RouterWhereabouts``.

    Sent when the router did not answer: ``unanswered_s`` is how long generation
    ``generation`` has left the facade's asks unanswered (0 for a plain question). The
    supervisor checks that router's process before it answers, so a router that died
    unnoticed is restarted now, and kills one that stays silent too long while it lives.
    """

    generation: int
    unanswered_s: float = 0.0


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class RouterWhereabouts:
    """Supervisor -> facade: the router's current generation and its child state.

    ``state`` is the child's lifecycle state as a plain string (``"up"``, ``"starting"``,
    ``"down"``, ``"failed"``, ...); ``detail`` says why a ``"failed"`` router was given up.
    """

    address: Address
    generation: int
    state: str
    detail: str = ""


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class AskChild:
    """Facade -> supervisor: deliver ``message`` to one child, which answers the facade."""

    role: str
    name: str
    message: Any


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    """Supervisor -> child: handle ``message`` and answer ``reply_to`` directly."""

    message: Any
    reply_to: Address


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class StatsQuery:
    token: int


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
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


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorStats:
    """Supervisor -> facade: every child's report, the child table, where accounts run.

    ``placement`` maps each placed account to its host: a convention member's id, or
    ``"leader"`` (``actors.supervisor.placement``).
    """

    reports: tuple[ActorReport, ...]
    children: tuple[tuple[str, str, int, str, int], ...]  # role, name, generation, state, restarts
    counters: dict[str, int]
    placement: dict[str, str] = field(default_factory=dict)


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class Drain:
    """Supervisor -> router: refuse new work; finish or abandon the rest by ``deadline``."""

    deadline: float


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class DrainDone:
    drained: int
    abandoned: tuple[str, ...]
    outcomes: tuple[Outcome, ...]


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownDone:
    """Supervisor -> facade: the teardown report and the router's last outcomes."""

    report: Any  # protocols.ShutdownReport
    outcomes: tuple[Outcome, ...]

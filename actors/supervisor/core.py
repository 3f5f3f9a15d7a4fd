"""The supervisor's pure bookkeeping: children, restart decisions, caps, teardown plan."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from actors.config import EngineConfig
from actors.cores.restart import GiveUp, RestartPolicy
from actors.supervisor.lifecycle import CHILD, ChildState
from protocols import AccountSpec, ProviderSpec, StageReport
from protocols import ShutdownReport as Report

__all__ = ["Child", "CrashDecision", "ShutdownPlan", "SupervisorCore"]

STAGES = ("drain", "accounts", "ai_pool", "router")
_STAGE_ROLE = {"accounts": "account", "ai_pool": "ai_pool", "router": "router"}
_RUNNING = frozenset({ChildState.STARTING, ChildState.UP, ChildState.STOPPING})


@dataclass(slots=True)
class Child:
    """One supervised actor: its current generation and state.

    ``state`` moves only through the ``CHILD`` table (``actors.supervisor.lifecycle``), by
    the ``SupervisorCore`` methods below. ``pid`` is its process (multiproc bases), known
    from the fork on and confirmed by its ``Configured``; ``reason`` says why a ``failed``
    child was given up.
    """

    role: str
    name: str
    policy: RestartPolicy
    spec: AccountSpec | None = None
    generation: int = 1
    state: ChildState = ChildState.STARTING
    pid: int | None = None
    restarts: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CrashDecision:
    give_up: bool
    delay_s: float = 0.0
    reason: str = ""


class SupervisorCore:
    """Children and policies; the actor performs what these methods decide."""

    def __init__(self, config: EngineConfig, *, seed: int = 0) -> None:
        self.config = config
        self.children: dict[tuple[str, str], Child] = {}
        self.shutting_down = False
        self._providers: dict[str, ProviderSpec] = {}
        self._rng = random.Random(seed)
        self._counters: Counter[str] = Counter()

    def _policy(self) -> RestartPolicy:
        c = self.config
        return RestartPolicy(
            min_backoff_s=c.restart_min_backoff_s,
            max_backoff_s=c.restart_max_backoff_s,
            factor=c.restart_backoff_factor,
            jitter=c.restart_jitter,
            max_restarts=c.restart_max_restarts,
            period_s=c.restart_period_s,
            reset_after_s=c.restart_reset_after_s,
            rng=self._rng,
        )

    # --- children ---------------------------------------------------------------------------

    def add_child(self, role: str, name: str, *, spec: AccountSpec | None = None) -> Child:
        child = Child(role=role, name=name, policy=self._policy(), spec=spec)
        self.children[(role, name)] = child
        return child

    def accounts(self, state: ChildState | None = None) -> list[Child]:
        """The account children, or those in ``state``."""
        return [
            c
            for c in self.children.values()
            if c.role == "account" and (state is None or c.state is state)
        ]

    def check_add_account(self, account_id: str) -> tuple[str, str] | None:
        """None when the account may be added, else (error code, sentence)."""
        if self.shutting_down:
            return (
                "shutting_down",
                f"cannot add account {account_id!r}: the engine is shutting down",
            )
        if ("account", account_id) in self.children:
            return "account_exists", f"cannot add account {account_id!r}: it already exists"
        if len(self.accounts()) >= self.config.max_instances:
            self._counters["instance_limit_refusals"] += 1
            return (
                "instance_limit",
                f"cannot add account {account_id!r}: instance limit "
                f"({self.config.max_instances}) reached",
            )
        return None

    def remove_child(self, child: Child) -> None:
        self.children.pop((child.role, child.name), None)

    def is_up(self, role: str, name: str | None = None) -> bool:
        child = self.children.get((role, name or role))
        return child is not None and child.state is ChildState.UP

    def child_spawned(self, child: Child, pid: int | None) -> None:
        """The actor of a ``starting`` child was created; ``pid`` is its process, if known."""
        child.pid = pid

    def watched(self) -> list[Child]:
        """The children whose process runs (or should): known pid, starting, up or stopping."""
        return [c for c in self.children.values() if c.pid is not None and c.state in _RUNNING]

    def child_up(self, child: Child, pid: int | None, now: float) -> None:
        """The child answered its Configure: it is up.

        Raises:
            LifecycleError: the child is not ``starting``.
        """
        child.state = CHILD.next(child.state, "configured")
        child.pid = pid if pid is not None else child.pid
        child.policy.started(now)

    def child_refused(self, child: Child) -> None:
        """The child could not configure itself: it is told to exit and forgotten now.

        Raises:
            LifecycleError: the child is not ``starting``.
        """
        child.state = CHILD.next(child.state, "refused")
        self.remove_child(child)

    def child_crashed(self, child: Child, now: float) -> CrashDecision:
        """A child exited unexpectedly: restart it after a delay, or give up.

        Raises:
            LifecycleError: the child is not ``starting`` or ``up`` (checked before the
                restart policy counts the crash).
        """
        child.state = CHILD.next(child.state, "crashed")
        self._counters["crashes"] += 1
        self._counters[f"crashes.{child.role}"] += 1
        decision = child.policy.failed(now)
        if isinstance(decision, GiveUp):
            child.state = CHILD.next(child.state, "gave_up")
            child.reason = decision.reason
            self._counters["gave_up"] += 1
            return CrashDecision(give_up=True, reason=decision.reason)
        child.restarts += 1
        self._counters["restarts"] += 1
        self._counters[f"restarts.{child.role}"] += 1
        return CrashDecision(give_up=False, delay_s=decision.delay_s)

    def respawn(self, child: Child) -> None:
        """Make the next generation of a ``down`` child (the actor creates it).

        Raises:
            LifecycleError: the child is not ``down``.
        """
        child.state = CHILD.next(child.state, "respawned")
        child.generation += 1
        child.pid = None

    def stop_child(self, child: Child) -> bool:
        """Stop a child; True when its actor runs and must be told to exit.

        Raises:
            LifecycleError: the child is already ``stopping`` or ``stopped``.
        """
        child.state = CHILD.next(child.state, "stop")
        return child.state is ChildState.STOPPING

    def child_stopped(self, child: Child) -> None:
        """The actor of a ``stopping`` child exited, as asked.

        Raises:
            LifecycleError: the child is not ``stopping``.
        """
        child.state = CHILD.next(child.state, "exited")

    # --- providers (remembered so that a restarted pool reloads them) -------------------------

    def remember_provider(self, spec: ProviderSpec) -> None:
        if not spec.active:
            # The pool only unloads the name and never loads an inactive spec; kept here, it
            # could push an active provider out, and a restarted pool would lack that one.
            self._providers.pop(spec.name, None)
            return
        self._providers[spec.name] = spec
        if len(self._providers) > self.config.max_providers:
            # Same rule as the selector: keep the highest priorities (bounded memory).
            ranked = sorted(self._providers.values(), key=lambda s: (-s.priority, s.name))
            self._providers = {s.name: s for s in ranked[: self.config.max_providers]}

    def forget_provider(self, name: str) -> None:
        self._providers.pop(name, None)

    def provider_specs(self) -> tuple[ProviderSpec, ...]:
        return tuple(self._providers.values())

    # --- stats ----------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    def child_table(self) -> tuple[tuple[str, str, int, str, int], ...]:
        # Plain strings: the table crosses processes, whose unpickler allows no enum class.
        return tuple(
            (c.role, c.name, c.generation, c.state.value, c.restarts)
            for c in self.children.values()
        )


@dataclass(slots=True)
class ShutdownPlan:
    """The ordered teardown: drain the router, then stop accounts, the pool, the router.

    The drain gets ``drain_timeout_s``; the other stages share what is left of
    ``timeout_s``, each getting half of the remainder except the last, which gets all of it.
    """

    started: float
    timeout_s: float
    drain_timeout_s: float
    stage: str | None = "drain"
    stage_started: float = 0.0
    stage_timer_armed: bool = False
    stages: list[StageReport] = field(default_factory=list)
    abandoned_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.stage_started = self.started

    @property
    def deadline(self) -> float:
        return self.started + self.timeout_s

    @property
    def drain_deadline(self) -> float:
        return self.started + min(self.drain_timeout_s, self.timeout_s)

    def stage_role(self) -> str:
        assert self.stage is not None
        return _STAGE_ROLE[self.stage]

    def stage_deadline(self, now: float) -> float:
        remaining = max(0.0, self.deadline - now)
        last = self.stage == STAGES[-1]
        return now + (remaining if last else remaining / 2)

    def finish_stage(self, name: str, now: float, *, drained: int, abandoned: int) -> None:
        self.stages.append(
            StageReport(
                name=name,
                seconds=max(0.0, now - self.stage_started),
                drained=drained,
                abandoned=abandoned,
            )
        )
        i = STAGES.index(name)
        self.stage = STAGES[i + 1] if i + 1 < len(STAGES) else None
        self.stage_started = now
        self.stage_timer_armed = False

    def report(self, now: float) -> Report:
        return Report(
            stages=tuple(self.stages),
            total_s=max(0.0, now - self.started),
            abandoned=self.abandoned_ids,
        )

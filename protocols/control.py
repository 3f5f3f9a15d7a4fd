"""Control messages: stats queries and the shutdown report."""

from __future__ import annotations

from dataclasses import dataclass, field

from protocols._schema import Message, check_id, check_range, check_slug, message

__all__ = [
    "ActorStats",
    "ShutdownReport",
    "ShutdownRequest",
    "StageReport",
    "StatsReply",
    "StatsRequest",
]


@message("stats_request")
@dataclass(frozen=True, slots=True, kw_only=True)
class StatsRequest(Message):
    """Ask an actor (and, for the supervisor, its children) for stats."""


@message("actor_stats")
@dataclass(frozen=True, slots=True, kw_only=True)
class ActorStats(Message):
    """One actor's line in ``Engine.stats()``: its mailbox depth against its capacity.

        ``depth`` is what the engine holds at that actor (see README "Bounded mailboxes");
        ``state`` is the supervisor's word for it (``up``, ``down``, ``failed``, ...): a child
        that did not answer appears with its state, no pid and capacity 0. ``counters`` are the
        actor's own (its role's core); the pool adds its ``providers`` and their own counters
        (``provider_stats``), an account the reason its transport failed, if it did, and the
    host it runs on (``host``: ``leader`` or a convention member's id).
    """

    role: str
    name: str
    pid: int | None
    depth: int
    capacity: int
    restarts: int = 0
    generation: int = 0
    state: str = "up"
    counters: dict[str, int] = field(default_factory=dict)
    providers: tuple[str, ...] = ()
    provider_stats: dict[str, dict[str, int | float]] = field(default_factory=dict)
    transport_failed: str = ""
    host: str = ""
    """Where an account runs: ``leader`` or the id of the convention member hosting it
    (empty for the other roles, which always run on the leader)."""

    def _validate(self) -> None:
        check_slug(self, "role", self.role)
        check_id(self, "name", self.name)
        check_range(self, "depth", self.depth, lo=0)
        check_range(self, "capacity", self.capacity, lo=0)
        check_range(self, "restarts", self.restarts, lo=0)
        check_range(self, "generation", self.generation, lo=0)
        check_slug(self, "state", self.state)


@message("stats_reply")
@dataclass(frozen=True, slots=True, kw_only=True)
class StatsReply(Message):
    """What ``Engine.stats()`` returns: messages in flight, counters, one entry per actor.

    Counter names are dotted, e.g. ``outcome.failed.no_provider``, ``reject.capacity``,
    ``router.gate.queued``. ``oldest_in_flight_s`` is None when nothing is in flight;
    ``admin_pid`` is None on ``simpleSystemBase``.
    """

    in_flight: int
    counters: dict[str, int] = field(default_factory=dict)
    actors: tuple[ActorStats, ...] = ()
    oldest_in_flight_s: float | None = None
    router_generation: int = 0
    admin_pid: int | None = None
    base: str = ""

    def _validate(self) -> None:
        check_range(self, "in_flight", self.in_flight, lo=0)
        if self.oldest_in_flight_s is not None:
            check_range(self, "oldest_in_flight_s", self.oldest_in_flight_s, lo=0)
        check_range(self, "router_generation", self.router_generation, lo=0)

    def actor(self, role: str, name: str | None = None) -> ActorStats | None:
        """The first entry of ``role`` (named ``name``, if given), or None."""
        return next(
            (a for a in self.actors if a.role == role and (name is None or a.name == name)), None
        )

    def of_role(self, role: str) -> tuple[ActorStats, ...]:
        """Every entry of ``role``, in order (e.g. every ``account``)."""
        return tuple(a for a in self.actors if a.role == role)


@message("shutdown_request")
@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownRequest(Message):
    """Ask the supervisor for an ordered teardown within ``timeout_s``."""

    timeout_s: float
    drain_timeout_s: float

    def _validate(self) -> None:
        check_range(self, "timeout_s", self.timeout_s, lo=0)
        check_range(self, "drain_timeout_s", self.drain_timeout_s, lo=0)


@message("stage_report")
@dataclass(frozen=True, slots=True, kw_only=True)
class StageReport(Message):
    """One teardown stage: how long it took, how many messages it drained or abandoned."""

    name: str
    seconds: float
    drained: int = 0
    abandoned: int = 0

    def _validate(self) -> None:
        check_slug(self, "name", self.name)
        check_range(self, "seconds", self.seconds, lo=0)
        check_range(self, "drained", self.drained, lo=0)
        check_range(self, "abandoned", self.abandoned, lo=0)


@message("shutdown_report")
@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownReport(Message):
    """What ``shutdown()`` did: its stages in order, total time, abandoned message ids."""

    stages: tuple[StageReport, ...]
    total_s: float
    abandoned: tuple[str, ...] = ()

    def _validate(self) -> None:
        check_range(self, "total_s", self.total_s, lo=0)
        for i, message_id in enumerate(self.abandoned):
            check_id(self, f"abandoned[{i}]", message_id)

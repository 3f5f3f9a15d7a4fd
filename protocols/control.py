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
    """One actor's line in ``stats()``: its mailbox depth against its capacity."""

    role: str
    name: str
    pid: int | None
    depth: int
    capacity: int
    restarts: int = 0

    def _validate(self) -> None:
        check_slug(self, "role", self.role)
        check_id(self, "name", self.name)
        check_range(self, "depth", self.depth, lo=0)
        check_range(self, "capacity", self.capacity, lo=0)
        check_range(self, "restarts", self.restarts, lo=0)


@message("stats_reply")
@dataclass(frozen=True, slots=True, kw_only=True)
class StatsReply(Message):
    """Engine stats: messages in flight, counters by name, one entry per actor.

    Counter names are dotted, e.g. ``outcome.failed.no_provider``, ``reject.capacity``.
    """

    in_flight: int
    counters: dict[str, int] = field(default_factory=dict)
    actors: tuple[ActorStats, ...] = ()

    def _validate(self) -> None:
        check_range(self, "in_flight", self.in_flight, lo=0)


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

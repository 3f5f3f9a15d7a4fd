"""The shell shared by the pool and account actors: a sans-IO core that answers the router.

Both take work from the router in batches, hand it to their core, poll the core when it
says something is due, and send everything the turn produced back to the router that
asked last, in one batch, tagged with that router's generation. That batch also
acknowledges the router's batches received so far (``ack``: the router's batch window to
this actor, ``actors.cores.window``); a turn that took work and produced no result sends
the acknowledgement alone, at once, so the router's next batch never waits for a result.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from actors.runtime.base_actor import EngineActor
from actors.runtime.wiring import ActorReport, Address

__all__ = ["RouterServant"]

R = TypeVar("R")


class RouterServant(EngineActor, Generic[R]):
    """An actor whose core's results go back to the router, one batch per turn."""

    def __init__(self) -> None:
        super().__init__()
        self.core: Any = None
        self.router: Address = None
        self.router_generation = 0
        self.outbox: list[R] = []
        self.received_seq = 0  # the router's last batch received (its sequence number)
        self.acked_seq = 0  # the last acknowledged to it

    def from_old_router(self, generation: int) -> bool:
        """A batch from a router older than the one this actor works for: dropped unread.

        Its messages were handed to the newer router, which sends them again; taking the
        batch would point the results back at an address that is gone.
        """
        return generation < self.router_generation

    def take_work(self, sender: Address, generation: int, results: list[R], seq: int = 0) -> None:
        """Remember who asked (results go to the latest router) and keep what is ready."""
        if generation != self.router_generation:  # a new router numbers its batches from 1
            self.received_seq = self.acked_seq = 0
        self.router, self.router_generation = sender, generation
        self.received_seq = max(self.received_seq, seq)
        self.outbox += results

    def batch(self, results: tuple[R, ...], generation: int, ack: int) -> Any:
        """The message that carries results (and the acknowledgement) back to the router."""
        raise TypeError(f"{type(self).__name__} must define batch()")  # pragma: no cover

    def next_wakeup(self) -> float | None:
        return self.core.next_wakeup() if self.core is not None else None

    def on_tick(self, now: float) -> None:
        if self.core is not None:
            self.outbox += self.core.poll(now)

    def after_turn(self, now: float) -> None:
        due = self.received_seq != self.acked_seq
        if (self.outbox or due) and self.router is not None:
            self.send(
                self.router,
                self.batch(tuple(self.outbox), self.router_generation, self.received_seq),
            )
            self.acked_seq = self.received_seq
        self.outbox = []

    def report(
        self, token: int, counters: dict[str, int], extra: dict[str, Any] | None = None
    ) -> ActorReport:
        """This actor's line in stats: its core's pending work against its capacity."""
        return ActorReport(
            token=token,
            role=self.role,
            name=self.name,
            generation=self.generation,
            pid=self.pid,
            depth=self.core.pending,
            capacity=self.core.capacity,
            counters={**counters, **self.process_counters()},
            extra=extra or {},
        )

"""The supervisor's ordered teardown: drain the router, then accounts, the pool, the router.

Each stage stops the children of one role and waits for their exits, bounded by the
stage's deadline from the ``ShutdownPlan``; a stage that times out is logged and the
teardown moves on, so the whole of it fits ``shutdown_timeout_s``.

The teardown gets what it acts on as explicit collaborators (the core, a ``send``, a
timer, a way to stop one child) rather than the actor, so it runs without Thespian.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from actors.runtime.wiring import Address, Drain, DrainDone, ShutdownDone
from actors.supervisor.core import Child, ShutdownPlan, SupervisorCore
from actors.supervisor.lifecycle import CHILD, ChildState
from protocols import ShutdownRequest

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["Teardown"]


class Teardown:
    """One supervisor's teardown in progress (at most one at a time).

    Args:
        core: the supervisor's children; ``shutting_down`` is set on start.
        send: sends a message to an address.
        wake_at: arms a timer that calls ``advance(now, timed_out=stage)`` at a time
            (the actor routes the ``("stage", name)`` payload back).
        stop_child: stops one child (``SupervisorCore.stop_child`` plus the exit request);
            the actor later reports its exit with ``child_stopped`` and ``advance``.
        live_router: the router's address while it is up, else None (no drain then).
        clock: the time now (``time.time``; tests pass a fake clock).
        log: where a stage that ran out of time is reported.
    """

    def __init__(
        self,
        core: SupervisorCore,
        *,
        send: Callable[[Address, Any], None],
        wake_at: Callable[[float, Any], None],
        stop_child: Callable[[Child], None],
        live_router: Callable[[], Address],
        clock: Callable[[], float] = time.time,
        log: Logger = logger,
    ) -> None:
        self.core = core
        self._send = send
        self._wake_at = wake_at
        self._stop_child = stop_child
        self._live_router = live_router
        self._clock = clock
        self._log = log
        self.plan: ShutdownPlan | None = None
        self.asker: Address = None
        self.outcomes: tuple[Any, ...] = ()

    def start(self, msg: ShutdownRequest, sender: Address) -> None:
        now = self._clock()
        self.asker = sender
        self.plan = ShutdownPlan(now, msg.timeout_s, msg.drain_timeout_s)
        self.core.shutting_down = True
        router = self._live_router()
        if router is not None:
            self._send(router, Drain(deadline=self.plan.drain_deadline))
            self._wake_at(self.plan.drain_deadline + 0.5, ("stage", "drain"))
        else:
            self.plan.finish_stage("drain", now, drained=0, abandoned=0)
            self.advance(now)

    def drain_done(self, msg: DrainDone, sender: Address) -> None:
        if self.plan is None or self.plan.stage != "drain":
            return
        now = self._clock()
        self.outcomes = msg.outcomes
        self.plan.abandoned_ids = msg.abandoned
        self.plan.finish_stage("drain", now, drained=msg.drained, abandoned=len(msg.abandoned))
        self.advance(now)

    def advance(self, now: float, timed_out: str | None = None) -> None:
        """Move through the stages whose children are all stopped (or whose time is up)."""
        plan = self.plan
        if plan is None:
            return
        if timed_out is not None and timed_out != plan.stage:
            return  # a stale stage timer
        if plan.stage == "drain":
            if timed_out != "drain":
                return
            self._log.error("the router did not answer the drain in time")
            plan.finish_stage("drain", now, drained=0, abandoned=0)
        while plan.stage is not None:
            role = plan.stage_role()
            children = [c for c in self.core.children.values() if c.role == role]
            for child in children:
                # A child already stopping (or stopped) was asked once; asking again is
                # what the table refuses.
                if CHILD.allows(child.state, "stop"):
                    self._stop_child(child)
            left = [c for c in children if c.state is not ChildState.STOPPED]
            if left and timed_out != plan.stage:
                if not plan.stage_timer_armed:
                    plan.stage_timer_armed = True
                    self._wake_at(plan.stage_deadline(now), ("stage", plan.stage))
                return
            if left:
                self._log.error("stage {}: {} actors did not stop in time", plan.stage, len(left))
            plan.finish_stage(plan.stage, now, drained=0, abandoned=0)
            timed_out = None
        self._send(self.asker, ShutdownDone(report=plan.report(now), outcomes=self.outcomes))
        self.plan = None

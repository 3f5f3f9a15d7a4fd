"""The supervisor's ordered teardown: drain the router, then accounts, the pool, the router.

Each stage stops the children of one role and waits for their exits, bounded by the
stage's deadline from the ``ShutdownPlan``; a stage that times out is logged and the
teardown moves on, so the whole of it fits ``shutdown_timeout_s``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from actors.runtime.wiring import Address, Drain, DrainDone, ShutdownDone
from actors.supervisor.core import ShutdownPlan
from protocols import ShutdownRequest

if TYPE_CHECKING:
    from actors.supervisor.actor import SupervisorActor

__all__ = ["Teardown"]


class Teardown:
    """One supervisor's teardown in progress (at most one at a time)."""

    def __init__(self, actor: SupervisorActor) -> None:
        self.actor = actor
        self.plan: ShutdownPlan | None = None
        self.asker: Address = None
        self.outcomes: tuple[Any, ...] = ()

    def start(self, msg: ShutdownRequest, sender: Address) -> None:
        actor, now = self.actor, time.time()
        self.asker = sender
        self.plan = ShutdownPlan(now, msg.timeout_s, msg.drain_timeout_s)
        actor._core.shutting_down = True
        router = actor._router_address()
        if router is not None and actor._core.is_up("router"):
            actor.send(router, Drain(deadline=self.plan.drain_deadline))
            actor.wakeupAfter_at(self.plan.drain_deadline + 0.5, ("stage", "drain"))
        else:
            self.plan.finish_stage("drain", now, drained=0, abandoned=0)
            self.advance(now)

    def drain_done(self, msg: DrainDone, sender: Address) -> None:
        if self.plan is None or self.plan.stage != "drain":
            return
        self.outcomes = msg.outcomes
        self.plan.abandoned_ids = msg.abandoned
        self.plan.finish_stage(
            "drain", time.time(), drained=msg.drained, abandoned=len(msg.abandoned)
        )
        self.advance(time.time())

    def advance(self, now: float, timed_out: str | None = None) -> None:
        """Move through the stages whose children are all stopped (or whose time is up)."""
        plan, actor = self.plan, self.actor
        if plan is None:
            return
        if timed_out is not None and timed_out != plan.stage:
            return  # a stale stage timer
        if plan.stage == "drain":
            if timed_out != "drain":
                return
            actor.log.error("the router did not answer the drain in time")
            plan.finish_stage("drain", now, drained=0, abandoned=0)
        while plan.stage is not None:
            role = plan.stage_role()
            children = [c for c in actor._core.children.values() if c.role == role]
            for child in children:
                if child.state not in ("stopping", "stopped"):
                    actor._stop_child(child)
            left = [c for c in children if c.state != "stopped"]
            if left and timed_out != plan.stage:
                if not plan.stage_timer_armed:
                    plan.stage_timer_armed = True
                    actor.wakeupAfter_at(plan.stage_deadline(now), ("stage", plan.stage))
                return
            if left:
                actor.log.error("stage {}: {} actors did not stop in time", plan.stage, len(left))
            plan.finish_stage(plan.stage, now, drained=0, abandoned=0)
            timed_out = None
        actor.send(self.asker, ShutdownDone(report=plan.report(now), outcomes=self.outcomes))
        self.plan = None

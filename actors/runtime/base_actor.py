"""The base of every engine actor: dispatch by type, one timer, crash-only failure.

Thespian's own failure handling differs by base (a raising handler is retried once on the
multiproc bases and three times, reordered, on the simple base, and the actor keeps its
possibly corrupt state). The engine does not rely on it: an unexpected exception in a
handler is logged and the actor ends itself, so its supervisor restarts a fresh one —
Erlang's "let it crash". Timers cannot be cancelled in Thespian, so an actor keeps at most
one *current* timer, at the earliest time it needs, and treats older ones as harmless
extra ticks.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar

from loguru import logger
from thespian.actors import (
    Actor,
    ActorExitRequest,
    ChildActorExited,
    PoisonMessage,
    WakeupMessage,
)

from actors.runtime import actorguard, frameauth, netsafe, thespian_fixes
from actors.runtime.wiring import Address, Configure

__all__ = ["EngineActor"]

_TICK = "tick"
_TIMER_SLACK_S = 0.001  # a timer due this much after the wanted time is good enough


class EngineActor(Actor):  # type: ignore[misc]  # Thespian ships no types
    """Common machinery; subclasses fill ``handlers`` and override the hooks."""

    role: ClassVar[str] = "actor"

    def __init__(self) -> None:
        super().__init__()
        # Inherited from the process that started the system; installed again in case this
        # process was started otherwise (idempotent: version checks and assignments).
        thespian_fixes.apply()
        frameauth.apply()  # and netsafe's patches under it
        actorguard.apply()
        self.name = self.role
        self.generation = 0
        self.base = ""
        self._armed: list[float] = []  # heap of due times of our timers not yet fired
        self._sampled: dict[str, tuple[float, int]] = {}  # key -> (last logged, suppressed)
        self.log = logger.bind(actor=self.role)

    # --- hooks --------------------------------------------------------------------------

    def handlers(self) -> dict[type, Callable[[Any, Address], None]]:
        """Message type -> handler(msg, sender)."""
        return {}

    def configure(self, msg: Configure, sender: Address) -> None:
        """Handle ``Configure`` (the first message every child gets)."""

    def on_tick(self, now: float) -> None:
        """The current timer fired (or an older one did: handle it idempotently)."""

    def next_wakeup(self) -> float | None:
        """The earliest time ``on_tick`` must run; None when nothing is pending."""
        return None

    def after_turn(self, now: float) -> None:
        """Runs after every handled message: send what the turn produced."""

    def on_child_exited(self, address: Address) -> None:
        """A child actor ended (crash, kill or requested exit)."""

    def on_exit(self) -> None:
        """The actor is being stopped: release what it holds (timers die with it)."""

    # --- machinery -------------------------------------------------------------------------

    def receiveMessage(self, msg: Any, sender: Address) -> None:  # noqa: N802 (Thespian)
        try:
            self._dispatch(msg, sender)
        except Exception:
            self._crash(msg)

    def _dispatch(self, msg: Any, sender: Address) -> None:
        if isinstance(msg, ActorExitRequest):
            self.on_exit()
            return
        now = time.time()
        if isinstance(msg, WakeupMessage):
            payload = msg.payload
            if isinstance(payload, tuple) and payload and payload[0] == _TICK:
                self.on_tick(now)
            else:
                self.on_wakeup(payload, now)
        elif isinstance(msg, ChildActorExited):
            self.on_child_exited(msg.childAddress)
        elif isinstance(msg, Configure):
            self.name = msg.name
            self.generation = msg.generation
            self.base = msg.base
            self.log = logger.bind(actor=self.role, name=msg.name, generation=msg.generation)
            self.configure(msg, sender)
        elif isinstance(msg, PoisonMessage):
            self.log.error("a message could not be delivered: {}", msg.details)
        else:
            handler = self.handlers().get(type(msg))
            if handler is None:
                self.log.warning("ignored unexpected message {}", type(msg).__name__)
                return
            handler(msg, sender)
        self._settle(now)

    def on_wakeup(self, payload: Any, now: float) -> None:
        """A timer with a payload of the subclass's own fired."""

    def _settle(self, now: float) -> None:
        # Work that is already due (zero-latency providers, expired deadlines) runs now,
        # in this turn, instead of costing a timer round trip; bounded so a turn ends.
        for _ in range(8):
            due = self.next_wakeup()
            if due is None or due > now:
                break
            self.on_tick(now)
            now = time.time()
        self.after_turn(now)
        self.arm(self.next_wakeup(), now)

    def arm(self, at: float | None, now: float) -> None:
        """Make sure a tick happens at ``at``.

        Thespian cannot cancel a timer and keeps every pending one in a list it re-sorts on
        each new timer. So the actor remembers the due times of its own timers and adds one
        only when none is due by ``at`` already: re-arming the same far deadline every turn
        would otherwise pile up thousands of timers.
        """
        if at is None:
            return
        armed = self._armed
        while armed and armed[0] <= now:  # fired (or firing now): forget them
            heapq.heappop(armed)
        if armed and armed[0] <= at + _TIMER_SLACK_S:
            return
        heapq.heappush(armed, at)
        self.wakeupAfter(timedelta(seconds=max(0.0, at - now)), payload=(_TICK, at))

    def warn_sampled(self, key: str, message: str, *args: Any, every_s: float = 10.0) -> None:
        """Log a warning at most once per ``every_s`` per key, saying how many were held back.

        Limits under load recur many times a second; one line per interval with a count
        says the same without flooding the log.
        """
        now = time.monotonic()
        last, held = self._sampled.get(key, (-1e18, 0))
        if now - last < every_s:
            self._sampled[key] = (last, held + 1)
            return
        suffix = f" ({held} more like this in the last {every_s:g} s)" if held else ""
        self.log.warning(message + suffix, *args)
        self._sampled[key] = (now, 0)

    def _crash(self, msg: Any) -> None:
        self.log.opt(exception=True).error(
            "handler failed on {}; ending this actor so that it is restarted fresh",
            type(msg).__name__,
        )
        if self.base.startswith("multiproc"):
            os._exit(70)  # EX_SOFTWARE: the process dies, the parent sees ChildActorExited
        self.send(self.myAddress, ActorExitRequest())

    def process_counters(self) -> dict[str, int]:
        """Counters of this actor's process, added to its stats line: the frames it refused,
        in all (``refused_frames``) and by reason (``refused_frames.mac``, ``.replay``,
        ``.stale``, ``.oversize``, ``.class``, ``.actor``)."""
        return netsafe.counters()

    @property
    def pid(self) -> int | None:
        return os.getpid() if self.base.startswith("multiproc") else None


# The admin creates actors of the engine's own classes only: the subclasses of this one.
actorguard.admit_subclasses(EngineActor)

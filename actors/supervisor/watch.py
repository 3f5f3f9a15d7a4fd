"""How the supervisor learns that a child ended, and what it does then.

Thespian tells a parent that a child ended with ``ChildActorExited``, but on the multiproc
bases not always: handling one child's exit re-checks the liveness of every child
(``MultiProcReplicator._childExited``) and silently drops any other child that died
meanwhile, so that child's own SIGCHLD later finds nothing to report. Measured under the
load runner: a router SIGKILLed together with an account was reaped and never reported,
and the engine stayed wedged on a router its supervisor believed up. So the supervisor
also watches the process of each running child (every ``WATCH_EVERY_S``) and takes a pid
that is gone, a zombie or no longer its child as that child's end. Both ways lead to
``ChildWatch.ended``, which acts once per actor: the lifecycle table refuses a second
``crashed`` (or ``exited``), and a respawned child has a new address and a new pid.

The watch gets what it acts on as explicit collaborators, like ``Teardown``, so it runs
without Thespian (tests pass a fake liveness check).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from loguru import logger

from actors.runtime import procs
from actors.runtime.wiring import AccountGone, Address, LocateRouter, PoolUp, RouterWhereabouts
from actors.supervisor.core import Child, SupervisorCore
from actors.supervisor.lifecycle import CHILD, ChildState
from actors.supervisor.teardown import Teardown

if TYPE_CHECKING:
    from loguru import Logger

__all__ = [
    "UNRESPONSIVE_KILL_S",
    "WATCH_EVERY_S",
    "ChildWatch",
    "child_pids",
    "running_child",
]

WATCH_EVERY_S = 0.5
"""How often the supervisor checks its children's processes: a lost exit costs at most this.

One read of ``/proc/<pid>/stat`` per child: a thousand accounts cost a few milliseconds."""

UNRESPONSIVE_KILL_S = 30.0
"""A router that lives but leaves the facade's asks unanswered this long is killed (and so
restarted): three unanswered tries at the facade's default ``ask_timeout_s``. A working
router answers in milliseconds, even under a flood (it refuses with ``capacity``)."""


def running_child(pid: int) -> bool:
    """True while ``pid`` runs as a child of this process (not a zombie, not a reused pid)."""
    return procs.parent(pid) == os.getpid()


def child_pids() -> set[int]:
    """The processes this process forked and has not reaped (zombies included).

    Read from ``/proc/<pid>/task/<tid>/children``: no scan of every process. Empty when
    the kernel does not offer those files (then pids are learnt from ``Configured``).
    """
    me = os.getpid()
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{me}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{me}/task/{tid}/children") as fh:
                found.update(int(p) for p in fh.read().split())
        except (OSError, ValueError):
            continue
    return found


def _sigkill(pid: int) -> None:
    if running_child(pid):  # never a pid that was reaped and reused meanwhile
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class ChildWatch:
    """Ends children exactly once, whichever way their end was learnt.

    Args:
        core: the supervisor's children and restart policies.
        addresses: the children's addresses by ``(role, name)``; an exited child that was
            removed meanwhile is forgotten here.
        send: sends a message to an address.
        wake_at: arms a timer at a time; a restart is armed with the payload
            ``("restart", role, name, generation)``, which the actor routes back.
        live_router: the router's address while it is up, else None.
        event: reports an account's status change (``account id, kind, detail``).
        reply_adding: answers a pending ``add_account`` of an account (``account id,
            **CommandResult fields``).
        teardown: the supervisor's teardown, told when a child it stops has ended.
        forget: tells Thespian that the actor at an address ended, when only its pid
            said so (Thespian would otherwise wait for it at shutdown).
        is_running: whether a pid still runs as our child (``running_child``).
        kill: SIGKILLs a pid that still runs as our child (an unresponsive router).
        log: where crashes and give-ups are reported.
    """

    def __init__(
        self,
        core: SupervisorCore,
        *,
        addresses: MutableMapping[tuple[str, str], Address],
        send: Callable[[Address, Any], None],
        wake_at: Callable[[float, Any], None],
        live_router: Callable[[], Address],
        event: Callable[[str, str, str], None],
        reply_adding: Callable[..., None],
        teardown: Teardown,
        forget: Callable[[Address], None],
        is_running: Callable[[int], bool] = running_child,
        kill: Callable[[int], None] = _sigkill,
        log: Logger = logger,
    ) -> None:
        self.core = core
        self.addresses = addresses
        self._send = send
        self._wake_at = wake_at
        self._live_router = live_router
        self._event = event
        self._reply_adding = reply_adding
        self._teardown = teardown
        self._forget = forget
        self._is_running = is_running
        self._kill = kill
        self._log = log

    # --- how an end is learnt ---------------------------------------------------------------

    def exited(self, address: Address, now: float) -> None:
        """Thespian's ``ChildActorExited`` for ``address``."""
        key = next((k for k, a in self.addresses.items() if a == address), None)
        if key is None:  # an earlier generation's address: its end was handled
            return
        child = self.core.children.get(key)
        if child is None:  # removed: forget its address (bounded by the children we have)
            del self.addresses[key]
            return
        self.ended(child, now, "its actor exited")

    def sweep(self, now: float) -> None:
        """Check every running child's process; end those whose process is gone."""
        for child in self.core.watched():
            pid = child.pid
            if pid is not None and not self._is_running(pid):
                self.gone(child, now, f"its process {pid} is gone")

    def locate_router(self, msg: LocateRouter, now: float) -> RouterWhereabouts:
        """Answer the facade, after checking the router it could not reach.

        A dead router is ended now (restarted, or failed by the policy) instead of at the
        next sweep; one that lives but left the facade unanswered for
        ``UNRESPONSIVE_KILL_S`` is killed, and the sweep then restarts it.
        """
        child = self.core.children.get(("router", "router"))
        if child is None:
            return RouterWhereabouts(address=None, generation=0, state=ChildState.STOPPED.value)
        pid = child.pid
        if child.generation == msg.generation and msg.unanswered_s > 0 and pid is not None:
            if child.state in (ChildState.STARTING, ChildState.UP) and not self._is_running(pid):
                self.gone(child, now, f"its process {pid} is gone: the engine could not reach it")
            elif child.state is ChildState.UP and msg.unanswered_s >= UNRESPONSIVE_KILL_S:
                self._log.error(
                    "router generation {} (pid {}) is alive but left the engine unanswered "
                    "for {:.0f} s (limit {:.0f} s); killing it so that it is restarted",
                    child.generation,
                    pid,
                    msg.unanswered_s,
                    UNRESPONSIVE_KILL_S,
                )
                self._kill(pid)
        return RouterWhereabouts(
            address=self.addresses.get(("router", "router")),
            generation=child.generation,
            state=child.state.value,
            detail=child.reason,
        )

    # --- what an end does -------------------------------------------------------------------

    def gone(self, child: Child, now: float, how: str) -> None:
        """``child``'s actor is gone without a word from Thespian (its process died, or
        its member was lost): end it, and tell Thespian it exited, so that the supervisor
        does not wait for it when it exits itself (Thespian waits for every child)."""
        address = self.addresses.get((child.role, child.name))
        self.ended(child, now, how)
        if address is not None:
            self._forget(address)

    def ended(self, child: Child, now: float, how: str) -> None:
        """A child's actor ended: as asked (stopping), or a crash to restart or give up."""
        if CHILD.allows(child.state, "exited"):  # stopping: the exit we asked for
            self.core.child_stopped(child)
            self._teardown.advance(now)
            return
        if not CHILD.allows(child.state, "crashed"):
            # down, failed or stopped: this actor's end was already counted (a duplicate
            # notice); counting it again would restart a child twice.
            return
        decision = self.core.child_crashed(child, now)
        router = self._live_router()
        if decision.give_up:
            self._log.error(
                "{} {} failed for good ({}): {}", child.role, child.name, how, decision.reason
            )
            if child.role == "account":
                if router is not None:
                    self._send(router, AccountGone(account_id=child.name, state="failed"))
                self._event(child.name, "failed", decision.reason)
            elif child.role == "ai_pool":
                # Even a starting router is told: it gets this after its Configure.
                to = self.addresses.get(("router", "router"))
                if to is not None:
                    failed = PoolUp(
                        address=None, generation=child.generation, restarted=False, failed=True
                    )
                    self._send(to, failed)
            self._reply_adding(child.name, ok=False, error="account_failed", detail=decision.reason)
            return
        self._log.warning(
            "{} {} exited unexpectedly ({}); restart {} in {:.3f} s",
            child.role,
            child.name,
            how,
            child.restarts,
            decision.delay_s,
        )
        if child.role == "account" and router is not None:
            self._send(router, AccountGone(account_id=child.name, state="down"))
            self._event(child.name, "disconnected", "actor exited; restarting")
        self._wake_at(now + decision.delay_s, ("restart", child.role, child.name, child.generation))

"""Moving the accounts of a lost convention member, and stopping them if the member returns.

Thespian never reports the end of an actor that runs on a member (it never learns of
actors created remotely), so when a member is lost its accounts would stay ``up`` in the
supervisor's eyes and their messages would wait for good. The only notice is the
convention's: ``ActorSystemConventionUpdate`` with ``remoteAdded=False``, seen about 3.4 s
after a member dies with the engine's timers (``actors.runtime.convention``). On that
notice each account the member hosted ends here as a crashed account does
(``ChildWatch.ended``): the router is told it is ``down`` and holds its replies, and the
restart, after the policy's first back-off (``restart_min_backoff_s``), asks the placement
for a host again; the lost member is not live, so the account is created with a new
generation on a surviving member, or on the leader when no member has room. When it is
up, the router re-sends every reply the lost generation held (``AccountUp`` with
``restarted=True``); the account's sends are idempotent by message id, and the router
records one outcome per message, so each accepted message ends exactly once. The loss
counts against the account's restart intensity like any crash.

A member that is dropped but not dead (frozen, or cut off, for more than ~3 s) comes back
under the same id *from the same admin*, with its old account actors still running: two
actors would then serve one number. So the addresses of the accounts it hosted when it was
lost are kept, and when it registers again from that admin each is sent
``ActorExitRequest``. A member that comes back from another admin was restarted: its old
processes died with its old admin (the member command kills them), and an old address
might now name a new, unrelated actor of the new incarnation, so nothing is sent.

That alone leaves the time in between: a member cut off or frozen keeps (or resumes)
sending from its old actors. So an account on a member is *fenced* by a lease
(``actors.cores.lease``): it sends only while it holds one, asking every
``LEASE_RENEW_EVERY_S``; the grants are answered here (``lease_asked``), to the current
generation only (an older one is told to exit), and the restart of a lost account waits
until its old generation's lease has surely run out (``fence_wait``): at most
``LEASE_VALID_FOR_S`` after the last grant, which the detection (>= 1.3 s) mostly covers.
Accounts on the leader hold no lease: they end with the leader's processes, and their end
is learnt from their pid, never guessed.

Like ``ChildWatch``, it gets what it acts on as explicit collaborators and runs without
Thespian.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from actors.cores.lease import LEASE_VALID_FOR_S, LeaseDesk
from actors.runtime.convention import MemberEvent
from actors.runtime.wiring import Address, LeaseAsk, LeaseGrant
from actors.supervisor.lifecycle import ChildState
from actors.supervisor.spawner import Spawner
from actors.supervisor.watch import ChildWatch

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["Relocation"]

_RUNNING = frozenset({ChildState.STARTING, ChildState.UP, ChildState.STOPPING})


class Relocation:
    """Feeds convention updates to the placement and acts on a member's loss and return.

    Args:
        spawner: creates children where the placement says (``spawner.placement``).
        watch: ends children exactly once; a lost member's accounts end through it.
        send: sends a message to an address (``stop`` to a stale actor, a lease grant).
        stop: the message that makes an actor exit (Thespian's ``ActorExitRequest()``).
        log: where losses, moves and stale actors are reported.
        clock: the leases' clock (``time.monotonic``: only durations cross the wire).
    """

    def __init__(
        self,
        spawner: Spawner,
        watch: ChildWatch,
        *,
        send: Callable[[Address, Any], None],
        stop: Callable[[], Any],
        log: Logger = logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spawner = spawner
        self._watch = watch
        self._send = send
        self._stop = stop
        self._log = log
        # Member id -> (the admin it was lost from, the addresses of the account actors it
        # ran then). Bounded: a member is lost once before it returns, with at most the
        # accounts it hosted; the entry goes when it returns.
        self.stale: dict[str, tuple[str, list[Address]]] = {}
        # One entry per account that held a lease (placed on a member once), its last
        # grant's; the entry of a removed account is forgotten.
        self.leases = LeaseDesk(valid_for_s=LEASE_VALID_FOR_S)
        self._clock = clock
        self._counts = {"leases_granted": 0, "leases_refused": 0, "fence_waits": 0}

    def member_changed(self, event: MemberEvent, now: float) -> tuple[str, ...] | None:
        """A convention update: record a join, or move a lost member's accounts.

        Returns:
            What ``Spawner.member_changed`` returns: None for an update ignored, else the
            accounts the lost member hosted (``()`` for a join).
        """
        slot = self._spawner.placement.members.get(event.member_id)
        returning = event.added and slot is not None and not slot.up
        moved = self._spawner.member_changed(event, now)
        if moved is None:
            return None
        if event.added:
            if returning:
                self._stop_stale(event.member_id, event.admin)
            return moved
        self._lost(event.member_id, event.admin, moved, now)
        return moved

    def _lost(self, member_id: str, admin: str, accounts: tuple[str, ...], now: float) -> None:
        core = self._spawner.core
        stale: list[Address] = []
        for name in accounts:
            child = core.children.get(("account", name))
            if child is None:  # removed while its member was up: placement released it
                continue
            address = self._spawner.addresses.get(("account", name))
            if child.state in _RUNNING and address is not None:
                stale.append(address)
            # Down already (a restart is pending: it will be placed elsewhere) or failed:
            # ``ended`` (which ``gone`` calls) leaves it as it is. Thespian never learns
            # that an actor on a lost member ended: without the ChildActorExited that
            # ``gone`` sends, the supervisor's own exit waited for it (the engine's
            # shutdown hung 15 s and its admin, logger and supervisor were killed).
            self._watch.gone(child, now, f"its member {member_id!r} was lost")
        self.stale[member_id] = (admin, stale)
        known = self._spawner.placement.members
        for forgotten in [m for m in self.stale if m not in known]:  # bounded with them
            del self.stale[forgotten]

    def _stop_stale(self, member_id: str, admin: str) -> None:
        lost_from, stale = self.stale.pop(member_id, ("", []))
        if not stale:
            return
        if lost_from != admin:
            self._log.info(
                "member {!r} returned from {} (lost from {}): a new incarnation, "
                "its {} old account actors died with the old one",
                member_id,
                admin,
                lost_from,
                len(stale),
            )
            return
        self._log.warning(
            "member {!r} returned from {} with {} account actors of an earlier generation "
            "still running: stopping them",
            member_id,
            admin,
            len(stale),
        )
        for address in stale:
            self._send(address, self._stop())

    # --- fencing ----------------------------------------------------------------------------

    def lease_asked(self, msg: LeaseAsk, sender: Address) -> None:
        """Grant the lease to the account's current generation; tell any other to exit."""
        child = self._spawner.core.children.get(("account", msg.account_id))
        if (
            msg.incarnation != self._spawner.incarnation
            or child is None
            or child.generation != msg.generation
            or child.state not in _RUNNING
        ):
            # Made by an earlier leader, replaced (its member was lost), being replaced, or
            # removed: it must not send.
            self._counts["leases_refused"] += 1
            self._log.warning(
                "account {!r} generation {} asked for a lease it lost: telling it to exit",
                msg.account_id,
                msg.generation,
            )
            self._send(sender, self._stop())
            return
        self.leases.grant(msg.account_id, msg.generation, self._clock())
        self._counts["leases_granted"] += 1
        self._send(sender, LeaseGrant(ask=msg.ask))

    def fence_wait(self, role: str, name: str, generation: int) -> float:
        """Seconds before generation ``generation`` of child ``name`` may be replaced.

        0 unless it is an account whose generation held a lease that may still run: then
        its restart waits, so that the old generation has stopped sending before the new
        one starts.
        """
        if role != "account":
            return 0.0
        wait = self.leases.safe_after(name, generation) - self._clock()
        if wait <= 0:
            return 0.0
        self._counts["fence_waits"] += 1
        self._log.info(
            "account {!r}: waiting {:.2f} s for generation {}'s lease to run out",
            name,
            wait,
            generation,
        )
        return wait

    def forget(self, name: str) -> None:
        """Account ``name`` was removed: its lease entry goes."""
        self.leases.forget(name)

    def counters(self) -> dict[str, int]:
        """The fencing's counters for the supervisor's stats (``supervisor.leases_granted``...)."""
        return {**self._counts, "leases_held": len(self.leases)}

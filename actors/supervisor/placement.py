"""Where each account actor runs: on a convention member the supervisor chooses, or the leader.

Thespian can place an actor on another actor system of the convention by itself, but its
"distribute equally" never counts (it never learns what it created remotely), so every
unpinned actor lands on the first compatible member. The engine therefore chooses, here,
and pins the account to the chosen member with a per-member requirement
(:func:`actors.runtime.convention.pinned_check`).

The rules, in order, for an account that has no live host yet:

1. The whole convention holds at most ``max_instances`` accounts (the engine's cap is
   convention-wide, not per host): one more is refused with :class:`PlacementError`.
2. A member that is up and below its ``max_accounts`` takes it; of several, the least
   loaded (the smallest share of its ``max_accounts`` in use, then the fewest accounts,
   then the smallest member id, so that the choice is deterministic).
3. Otherwise the leader (:data:`LEADER`) hosts it: with no member joined the engine runs
   as it always did, and a full convention degrades to the leader instead of refusing.

A member lost (its registration expired, or it left) keeps its accounts listed until
they are placed again: :meth:`Placement.on_lost` returns them so that the supervisor can
move them, and :meth:`Placement.place` on such an account picks a new host and raises its
placement generation (fencing an old generation is the supervisor's business). A member
that comes back under the same id is up again and takes new accounts; accounts still
listed on it stay there. A lost member that hosts nothing any more is remembered (so that
its return under the same id is known as one) among the :data:`MAX_LOST_MEMBERS` lost
most recently; older ones are forgotten, so that a convention whose members are replaced
under new ids for months does not grow the leader. Pure: no Thespian, no clock beyond the
``now`` it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from actors.errors import EngineError
from actors.runtime.convention import LEADER

__all__ = ["LEADER", "MAX_LOST_MEMBERS", "MemberSlot", "Placed", "Placement", "PlacementError"]

MAX_LOST_MEMBERS = 64
"""Lost members hosting nothing that are remembered; the one lost longest ago goes first."""


class PlacementError(EngineError):
    """Raised by :meth:`Placement.place` when the convention already holds ``max_instances``."""


@dataclass(slots=True)
class MemberSlot:
    """One convention member as the placement knows it.

    ``admin`` is its admin's ``host:port`` (the same id joining from another admin while
    this one is up is refused); ``since`` is when it last joined or was lost.
    """

    member_id: str
    admin: str
    max_accounts: int
    up: bool = True
    since: float = 0.0
    accounts: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Placed:
    """Where an account runs: ``host`` is a member id or :data:`LEADER`.

    ``generation`` counts the account's placements: it rises each time the account moves
    to another host, never when it is restarted where it is.
    """

    account_id: str
    host: str
    generation: int


class Placement:
    """The members of the convention and the host of every account.

    Args:
        max_instances: how many accounts the whole convention holds at most.
    """

    def __init__(self, *, max_instances: int) -> None:
        if max_instances < 0:
            raise ValueError(f"max_instances {max_instances}: must be >= 0")
        self.max_instances = max_instances
        self.members: dict[str, MemberSlot] = {}
        self._placed: dict[str, Placed] = {}
        self._on_leader: set[str] = set()

    # --- members ----------------------------------------------------------------------------

    def on_joined(self, member_id: str, admin: str, max_accounts: int, now: float) -> bool:
        """A member joined (or re-registered as new); False when its id is taken by another.

        A member already up from the same admin is a repeated notice: nothing changes, and
        True is returned. A lost member coming back (from any admin: a restarted member
        has a new port) is up again with its old ``max_accounts`` replaced.
        """
        if member_id == LEADER or not member_id:
            return False
        slot = self.members.get(member_id)
        if slot is None:
            self.members[member_id] = MemberSlot(
                member_id=member_id, admin=admin, max_accounts=max(0, max_accounts), since=now
            )
            return True
        if slot.up:
            return slot.admin == admin
        slot.admin, slot.max_accounts, slot.up, slot.since = admin, max(0, max_accounts), True, now
        return True

    def on_lost(self, member_id: str, admin: str, now: float) -> tuple[str, ...] | None:
        """A member left or expired: the accounts it hosted, sorted, to be placed again.

        They stay listed on it until :meth:`place` moves them. A loss of an unknown
        member, of one already lost, or from another admin than the one up (a stale
        notice of an earlier incarnation) changes nothing and returns None.
        """
        slot = self.members.get(member_id)
        if slot is None or not slot.up or slot.admin != admin:
            return None
        slot.up, slot.since = False, now
        hosted = tuple(sorted(slot.accounts))
        self._forget_lost()
        return hosted

    # --- accounts ---------------------------------------------------------------------------

    def place(self, account_id: str) -> Placed:
        """The host of ``account_id``: where it is if that host is live, else a new one.

        Raises:
            PlacementError: a new account while the convention holds ``max_instances``.
        """
        current = self._placed.get(account_id)
        if current is not None and self._live(current.host):
            return current
        if current is None and len(self._placed) >= self.max_instances:
            raise PlacementError(
                f"cannot place account {account_id!r}: instance limit "
                f"({self.max_instances}) reached across the convention"
            )
        host = self._choose()
        if current is not None:
            self._unlist(current)
        placed = Placed(
            account_id=account_id,
            host=host,
            generation=current.generation + 1 if current is not None else 1,
        )
        self._placed[account_id] = placed
        if host == LEADER:
            self._on_leader.add(account_id)
        else:
            self.members[host].accounts.add(account_id)
        return placed

    def release(self, account_id: str) -> None:
        """Forget an account (removed, or given up): its slot is free again."""
        placed = self._placed.pop(account_id, None)
        if placed is not None:
            self._unlist(placed)

    def where(self, account_id: str) -> str | None:
        """The host of ``account_id`` (a member id or :data:`LEADER`), None if not placed."""
        placed = self._placed.get(account_id)
        return placed.host if placed is not None else None

    def remote(self, account_id: str) -> bool:
        """True when ``account_id`` runs on a member (its process is not the leader's)."""
        host = self.where(account_id)
        return host is not None and host != LEADER

    def placements(self) -> dict[str, str]:
        """Every placed account and its host."""
        return {a: p.host for a, p in sorted(self._placed.items())}

    def load(self) -> dict[str, int]:
        """How many accounts each host has: the leader, then every member known, lost too."""
        out = {LEADER: len(self._on_leader)}
        out.update({m: len(s.accounts) for m, s in sorted(self.members.items())})
        return out

    def counters(self) -> dict[str, int]:
        """Members up and lost now, for the supervisor's stats."""
        up = sum(1 for s in self.members.values() if s.up)
        return {"members_up": up, "members_lost": len(self.members) - up}

    # --- inside -----------------------------------------------------------------------------

    def _live(self, host: str) -> bool:
        return host == LEADER or (host in self.members and self.members[host].up)

    def _choose(self) -> str:
        room = [s for s in self.members.values() if s.up and len(s.accounts) < s.max_accounts]
        if not room:
            return LEADER
        best = min(
            room,
            key=lambda s: (Fraction(len(s.accounts), s.max_accounts), len(s.accounts), s.member_id),
        )
        return best.member_id

    def _unlist(self, placed: Placed) -> None:
        if placed.host == LEADER:
            self._on_leader.discard(placed.account_id)
        elif placed.host in self.members:
            self.members[placed.host].accounts.discard(placed.account_id)
            self._forget_lost()

    def _forget_lost(self) -> None:
        """Keep the :data:`MAX_LOST_MEMBERS` empty lost members lost most recently."""
        empty = [s for s in self.members.values() if not s.up and not s.accounts]
        if len(empty) > MAX_LOST_MEMBERS:
            empty.sort(key=lambda s: s.since)
            for slot in empty[: len(empty) - MAX_LOST_MEMBERS]:
                del self.members[slot.member_id]

"""Leases that fence an account actor on a convention member: it sends only while it holds one.

A member that is frozen or cut off for a few seconds is dropped by the leader, which
re-creates its accounts elsewhere; when it resumes, its old account actors must not send
again (two actors would serve one number). So an account on a member sends only while it
holds a lease from the supervisor, and the supervisor creates a lost account's new
generation only once the old one's lease has surely run out.

There is no clock shared between hosts: each side measures on its own monotonic clock,
and only durations cross the wire. The holder *asks* (:meth:`Lease.asked`, a new number
each time) and a grant answers one ask; the lease then runs ``valid_for_s`` from the
moment the holder sent that ask, not from when the grant arrived. The ask left before the
grant did, so the holder's lease ends no later than ``valid_for_s`` after the grant was
sent — which is what the grantor knows (:meth:`LeaseDesk.safe_after`). Measuring from the
grant's arrival instead would be unsafe: a member frozen with grants waiting in its socket
would read them on resuming and believe itself licensed for another ``valid_for_s``. Here
such a grant answers an ask made before the freeze, and its lease has already ended. The
one assumption is that the two monotonic clocks run at the same rate (they differ by
parts per million; neither counts a host's suspend, see the README).

Both sides are pure: the caller passes ``now`` (``time.monotonic()``).
"""

from __future__ import annotations

import math

from actors.cores._args import require_number

__all__ = [
    "LEASE_GRACE_S",
    "LEASE_RENEW_EVERY_S",
    "LEASE_VALID_FOR_S",
    "Lease",
    "LeaseDesk",
]

LEASE_VALID_FOR_S = 2.0
"""How long a grant lets an account send, from its ask. Shorter than the leader's
detection of a lost member (1.3-3.5 s): waiting for it to run out costs at most a little."""

LEASE_RENEW_EVERY_S = 0.5
"""How often an account asks again: three asks may go unanswered before its lease ends."""

LEASE_GRACE_S = 2 * LEASE_VALID_FOR_S
"""How long an account waits, its lease ended, for a grant before it exits for good."""

_MAX_ASKS = 16  # asks remembered; an answer to an older one is ignored (its lease ran out)


class Lease:
    """The holder's side: whether it may act now, and when it must give up.

    Args:
        valid_for_s: how long a grant lasts, counted from the ask it answers.
        grace_s: how long after its lease ended the holder gives up (:meth:`fenced_out`).
        now: when the holder started; the grace of a holder that was never granted a
            lease counts from here.
    """

    __slots__ = ("_asks", "_ended_at", "_grace_s", "_next", "_until", "_valid_for_s")

    def __init__(self, *, valid_for_s: float, grace_s: float, now: float) -> None:
        self._valid_for_s = require_number("valid_for_s", valid_for_s, minimum=0)
        self._grace_s = require_number("grace_s", grace_s, minimum=0)
        self._asks: dict[int, float] = {}  # ask number -> when it was sent (holder's clock)
        self._next = 0
        self._until = -math.inf  # the lease holds while now < _until
        self._ended_at = now  # when the lease ended (or the holder started without one)

    @property
    def valid_for_s(self) -> float:
        return self._valid_for_s

    def asked(self, now: float) -> int:
        """An ask is about to be sent at ``now``: return the number it must carry."""
        self._next += 1
        self._asks[self._next] = now
        while len(self._asks) > _MAX_ASKS:
            del self._asks[next(iter(self._asks))]
        return self._next

    def granted(self, ask: int, now: float) -> bool:
        """A grant answered ask ``ask``; return whether the holder may act now.

        An answer to an ask not remembered (too old, or never made) extends nothing.
        """
        sent = self._asks.get(ask)
        if sent is not None:
            for number in [n for n in self._asks if n <= ask]:
                del self._asks[number]
            self._until = max(self._until, sent + self._valid_for_s)
        return self.may_act(now)

    def may_act(self, now: float) -> bool:
        """True while a lease holds at ``now``."""
        return now < self._until

    def expired_for(self, now: float) -> float:
        """How long the holder has been without a lease at ``now`` (0 while one holds)."""
        if self.may_act(now):
            return 0.0
        return max(0.0, now - max(self._ended_at, self._until))

    def fenced_out(self, now: float) -> bool:
        """True when the holder has been without a lease for longer than the grace."""
        return self.expired_for(now) > self._grace_s


class LeaseDesk:
    """The grantor's side: when each holder's lease has surely ended.

    One entry per holder, by key (an account id), with the generation it was granted to:
    a grant to a new generation replaces the old one's entry, so the desk holds at most
    one entry per account.

    Args:
        valid_for_s: what every grant lasts; the holders are told the same figure.
    """

    __slots__ = ("_last", "_valid_for_s")

    def __init__(self, *, valid_for_s: float) -> None:
        self._valid_for_s = require_number("valid_for_s", valid_for_s, minimum=0)
        self._last: dict[str, tuple[int, float]] = {}  # key -> (generation, last grant sent)

    @property
    def valid_for_s(self) -> float:
        return self._valid_for_s

    def grant(self, key: str, generation: int, now: float) -> None:
        """A grant to ``key``'s generation ``generation`` is sent at ``now``."""
        self._last[key] = (generation, now)

    def safe_after(self, key: str, generation: int) -> float:
        """When generation ``generation`` of ``key`` surely holds no lease any more.

        ``-inf`` when it was never granted one (or a later generation was).
        """
        last = self._last.get(key)
        if last is None or last[0] != generation:
            return -math.inf
        return last[1] + self._valid_for_s

    def forget(self, key: str) -> None:
        """``key`` was removed: drop its entry."""
        self._last.pop(key, None)

    def __len__(self) -> int:
        return len(self._last)

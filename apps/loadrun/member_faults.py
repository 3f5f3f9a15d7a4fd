"""What ``--member-kill`` and ``--member-freeze`` share: the clock, the record, the timing.

Each fault takes the live member started longest ago (round-robin), reads from the
engine's stats which accounts it hosts, does its harm (:mod:`.member_kills` SIGKILLs the
member's process groups, :mod:`.member_freezes` SIGSTOPs them for a while), and then
reads the stats every :data:`POLL_S` to see

- *detected*: the supervisor counts one more lost member (``supervisor.members_lost``)
  or one of the member's accounts is no longer up there, and
- *re-placed*: every account it hosted is up again, in a later generation, on another
  host (a surviving member or the leader).

The times are from the fault, as seen through ``stats()``: each is given as the end of
the first ``stats()`` that showed it and the start of the last one that did not (the
supervisor reads its state somewhere in between). While a lost member's accounts are not
re-placed a ``stats()`` waits up to the supervisor's ``STATS_TIMEOUT_S`` (1 s) for their
silent reports, so those windows are about a second wide. The supervisor's own account
events (``disconnected``, ``restarted``) time the same steps to the millisecond. The
engine's facade serialises calls, so these ``stats()`` calls interleave with the driver's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from protocols import AccountEvent

from .members import MemberProc, MemberSet, accounts_by_host
from .periodic import Periodic
from .tracker import Tracker

__all__ = ["POLL_S", "TRACK_DEADLINE_S", "MemberFault", "MemberFaults", "members_section"]

POLL_S = 0.1
"""How often the engine's stats are read while a fault is followed."""
TRACK_DEADLINE_S = 60.0
"""How long a fault is followed before its row says what was not seen."""


@dataclass(slots=True)
class MemberFault:
    """One member killed or frozen (times in seconds from the run's start, or the fault)."""

    kind: str  # "kill" or "freeze"
    t: float
    at: float  # time.monotonic() of the fault
    member: str
    host: str
    pids: int
    accounts: list[str]
    detected_s: float | None = None  # the end of the first stats() that showed it
    detected_after_s: float = 0.0  # the start of the last stats() that did not
    replaced_s: float | None = None
    replaced_after_s: float = 0.0
    placed_on: dict[str, str] = field(default_factory=dict)  # account -> its new host
    replacement: str | None = None  # kill: the member started in its place
    replacement_joined: bool = False
    at_wall: float = 0.0  # time.time() of the fault, for the supervisor's event times
    lost_at_s: float | None = None  # the supervisor's own times (AccountEvent.at)
    up_again_s: float | None = None
    # freeze only
    frozen_for_s: float | None = None  # SIGCONT this long after the SIGSTOP
    rejoined_s: float | None = None  # the supervisor counted every member up again
    stale: int = 0  # account processes of the frozen member whose numbers moved away
    stale_gone_s: float | None = None  # ... all of them gone (None: not within the deadline)
    others_before_per_s: float | None = None  # outcomes/s of the other accounts, before
    others_during_per_s: float | None = None  # ... and while the member was frozen

    def as_dict(self) -> dict[str, Any]:
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        out: dict[str, Any] = {
            "kind": self.kind,
            "t": round(self.t, 3),
            "member": self.member,
            "host": self.host,
            "processes": self.pids,
            "accounts": list(self.accounts),
            "detected_s": r(self.detected_s),
            "detected_after_s": round(self.detected_after_s, 3),
            "replaced_s": r(self.replaced_s),
            "replaced_after_s": round(self.replaced_after_s, 3),
            "lost_event_s": r(self.lost_at_s),
            "up_event_s": r(self.up_again_s),
            "placed_on": dict(self.placed_on),
            "replacement": self.replacement,
            "replacement_joined": self.replacement_joined,
        }
        if self.kind == "freeze":
            out.update(
                frozen_for_s=r(self.frozen_for_s),
                rejoined_s=r(self.rejoined_s),
                stale=self.stale,
                stale_gone_s=r(self.stale_gone_s),
                others_before_per_s=r(self.others_before_per_s),
                others_during_per_s=r(self.others_during_per_s),
            )
        return out


class MemberFaults(Periodic):
    """One fault every ``every_s`` seconds from its own thread until :meth:`stop`.

    Args:
        engine: the running engine (its ``stats()`` is read).
        members: the run's members.
        every_s: the period; fault k is due ``k * every_s`` after :meth:`start`.
        until_s: no fault due this long after :meth:`start` or later (the offer phase).
    """

    kind = ""  # each subclass's

    def __init__(
        self,
        engine: Any,
        members: MemberSet,
        every_s: float,
        *,
        until_s: float | None,
        lead_s: float = 0.0,
        lasts_s: float = 0.0,
    ) -> None:
        super().__init__(
            every_s,
            until_s=until_s,
            name=f"loadrun-member-{self.kind}",
            lead_s=lead_s,
            lasts_s=lasts_s,
        )
        self.engine = engine
        self.members = members
        self.faults: list[MemberFault] = []
        self.error: str | None = None
        self._events: list[AccountEvent] = []  # appended by the driver's outcomes() calls

    def watch(self, accounts: list[str]) -> None:
        """Subscribe to the ``accounts``' status events (before :meth:`start`).

        The supervisor stamps each with its own clock (``disconnected`` when it takes the
        account as lost, ``restarted`` when its new generation is up), which times a fault
        to the millisecond where ``stats()`` only brackets it.
        """
        for account in accounts:
            self.engine.subscribe(account, self._events.append)

    def done(self) -> int:
        return len(self.faults)

    def act(self) -> bool:
        if self.error is not None or not self.members.live:
            return False
        try:
            self.fault(self.members.live[0])
        except Exception as exc:  # the engine stopped answering: the report says so
            self.error = f"{type(exc).__name__}: {exc}"
            return False
        return True

    def fault(self, victim: MemberProc) -> None:
        """Harm ``victim`` and follow what the engine does about it."""
        raise NotImplementedError  # pragma: no cover - each subclass's

    def begin(self, victim: MemberProc, stats: Any) -> MemberFault:
        """Book a fault on ``victim`` starting now; ``stats`` were read just before."""
        at = time.monotonic()
        fault = MemberFault(
            kind=self.kind,
            t=at - self._t0,
            at=at,
            member=victim.member_id,
            host=victim.host,
            pids=0,
            accounts=sorted(e.name for e in stats.of_role("account") if e.host == victim.member_id),
            at_wall=time.time(),
        )
        self.faults.append(fault)
        return fault

    def follow(self, fault: MemberFault, before: Any, until: float, *, away: bool) -> Any:
        """Read stats until the fault's accounts are re-placed or ``until`` (monotonic).

        ``before`` are the stats read just before the fault; with ``away`` a new
        generation counts only on another host. Returns the last stats read.
        """
        gone = ("", fault.member) if away else ("",)
        lost_before = before.counters.get("supervisor.members_lost", 0)
        hosted = {e.name: e.generation for e in before.of_role("account") if e.host == fault.member}
        asked = 0.0  # when the last stats() that saw neither began (from the fault)
        stats = before
        while time.monotonic() < until and fault.replaced_s is None:
            began = time.monotonic() - fault.at
            stats = self.engine.stats()
            now = time.monotonic() - fault.at
            accounts = {e.name: e for e in stats.of_role("account")}
            if fault.detected_s is None and (
                stats.counters.get("supervisor.members_lost", 0) > lost_before
                or any(n in accounts and accounts[n].host != fault.member for n in hosted)
            ):
                fault.detected_s, fault.detected_after_s = now, asked
            if fault.detected_s is not None and all(
                n in accounts
                and accounts[n].state == "up"
                and accounts[n].generation > generation
                and accounts[n].host not in gone
                for n, generation in hosted.items()
            ):
                fault.replaced_s, fault.replaced_after_s = now, asked
                fault.placed_on = {n: accounts[n].host for n in sorted(hosted)}
            else:
                asked = began
                # Not cut short by stop(): the end of the offer phase must not hide a
                # re-placement under way (stop() waits for this fault to be followed).
                time.sleep(POLL_S)
        return stats

    def _timed_by_events(self) -> None:
        """Each fault's loss and re-placement as the supervisor's events stamped them."""
        events = list(self._events)
        for n, fault in enumerate(self.faults):
            end = self.faults[n + 1].at_wall if n + 1 < len(self.faults) else float("inf")
            mine = [
                e for e in events if e.account_id in fault.accounts and fault.at_wall <= e.at < end
            ]
            lost = [e.at for e in mine if e.kind == "disconnected"]
            if lost:
                fault.lost_at_s = min(lost) - fault.at_wall
            up: dict[str, float] = {}
            for e in sorted(mine, key=lambda e: e.at):
                if e.kind == "restarted":
                    up.setdefault(e.account_id, e.at)
            if fault.accounts and set(up) == set(fault.accounts):
                fault.up_again_s = max(up.values()) - fault.at_wall

    def report(self) -> dict[str, Any]:
        """This fault's part of the report's ``members`` section."""
        self._timed_by_events()
        faults = self.faults
        return {
            "kind": self.kind,
            "every_s": self.every_s,
            "faults": [f.as_dict() for f in faults],
            "detected_s": _spread([f.detected_s for f in faults]),
            "replaced_s": _spread([f.replaced_s for f in faults]),
            "lost_event_s": _spread([f.lost_at_s for f in faults]),
            "up_event_s": _spread([f.up_again_s for f in faults]),
            "not_detected": sum(1 for f in faults if f.detected_s is None),
            "not_replaced": sum(1 for f in faults if f.replaced_s is None),
            "error": self.error,
        }


def _spread(values: list[float | None]) -> dict[str, float] | None:
    known = sorted(v for v in values if v is not None)
    if not known:
        return None
    return {
        "min": round(known[0], 3),
        "median": round(known[len(known) // 2], 3),
        "max": round(known[-1], 3),
    }


def members_section(
    members: MemberSet,
    faults: MemberFaults | None,
    at_start: dict[str, int],
    last_stats: Any,
    tracker: Tracker,
    closed: dict[str, Any],
) -> dict[str, Any]:
    """The report's ``members`` section.

    ``double_served`` counts the accepted messages that got a second outcome (the tracker
    keeps every finished id in this mode): what the runner can see. A reply that a killed
    generation had sent but not confirmed is sent again by the next (at least once at the
    transport, README "What a member's loss costs"); the router counts those re-sends
    (``resent_after_restart``), reported beside it as their upper bound.
    """
    router = last_stats.actor("router") if last_stats is not None else None
    verdict = tracker.exactly_once()
    report = faults.report() if faults is not None else None
    return {
        "count": members.count,
        "max_accounts": members.max_accounts,
        "hosts": list(members.hosts),
        "leader_admin": f"{members.bind}:{members.admin_port}",
        "started": [m.member_id for m in members.all],
        "accounts_at_start": at_start,
        "accounts_at_end": accounts_by_host(last_stats) if last_stats is not None else {},
        "member_kill": report if faults is not None and faults.kind == "kill" else None,
        "member_freeze": report if faults is not None and faults.kind == "freeze" else None,
        "accepted": verdict["owed"],
        "outcomes": verdict["outcomes"],
        "double_served": tracker.duplicate_outcomes_total,
        "resent_after_restart": router.counters.get("resent_after_restart", 0) if router else 0,
        **closed,
    }

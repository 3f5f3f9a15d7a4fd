"""``--member-kill S``: SIGKILL a member every S seconds and time the leader's recovery.

:class:`MemberKiller` is a thread. Every ``every_s`` seconds of the offer phase it takes
the live member started longest ago (round-robin, since each killed member is replaced
by a new one at the end of the list), reads from the engine's stats which accounts it
hosts, SIGKILLs its whole process groups (:meth:`MemberProc.kill`), and then reads the
stats every :data:`POLL_S` until

- *detected*: the supervisor counts one more lost member (``supervisor.members_lost``)
  or one of the member's accounts is no longer up there, and
- *re-placed*: every account it hosted is up again, in a later generation, on another
  host (a surviving member or the leader),

or :data:`TRACK_DEADLINE_S` passed (the kill's row then says what was not seen). Then it
starts a new member (a new id, on the killed one's address) so that the run keeps N
members. The times are from the kill, as seen through ``stats()``: each is given as the
end of the first ``stats()`` that showed it and the start of the last one that did not
(the supervisor reads its state somewhere in between). While a lost member's accounts are
not re-placed a ``stats()`` waits up to ``STATS_TIMEOUT_S`` (1 s) for their silent
reports, so those windows are about a second wide. The engine's facade serialises calls,
so these ``stats()`` calls interleave with the driver's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from protocols import AccountEvent

from .members import UP_TIMEOUT_S, MemberSet, accounts_by_host
from .periodic import Periodic
from .tracker import Tracker

__all__ = ["MemberKill", "MemberKiller", "members_section"]

POLL_S = 0.1
"""How often the engine's stats are read while a kill is followed."""
TRACK_DEADLINE_S = 60.0
"""How long a kill is followed before its row says what was not seen."""


@dataclass(slots=True)
class MemberKill:
    """One member SIGKILLed (times in seconds from the run's start, or from the kill)."""

    t: float
    member: str
    host: str
    pids: int
    accounts: list[str]
    detected_s: float | None = None  # the end of the first stats() that showed it
    detected_after_s: float = 0.0  # the start of the last stats() that did not
    replaced_s: float | None = None
    replaced_after_s: float = 0.0
    placed_on: dict[str, str] = field(default_factory=dict)  # account -> its new host
    replacement: str | None = None
    replacement_joined: bool = False
    killed_wall: float = 0.0  # time.time() of the kill, for the supervisor's event times
    lost_at_s: float | None = None  # the supervisor's own times (AccountEvent.at)
    up_again_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 3),
            "member": self.member,
            "host": self.host,
            "processes": self.pids,
            "accounts": list(self.accounts),
            "detected_s": None if self.detected_s is None else round(self.detected_s, 3),
            "detected_after_s": round(self.detected_after_s, 3),
            "replaced_s": None if self.replaced_s is None else round(self.replaced_s, 3),
            "replaced_after_s": round(self.replaced_after_s, 3),
            "lost_event_s": None if self.lost_at_s is None else round(self.lost_at_s, 3),
            "up_event_s": None if self.up_again_s is None else round(self.up_again_s, 3),
            "placed_on": dict(self.placed_on),
            "replacement": self.replacement,
            "replacement_joined": self.replacement_joined,
        }


class MemberKiller(Periodic):
    """Kills one member every ``every_s`` seconds from its own thread until :meth:`stop`.

    Args:
        engine: the running engine (its ``stats()`` is read).
        members: the run's members.
        every_s: the period; kill k is due ``k * every_s`` after :meth:`start`.
        until_s: no kill due this long after :meth:`start` or later (the offer phase).
    """

    def __init__(
        self, engine: Any, members: MemberSet, every_s: float, *, until_s: float | None
    ) -> None:
        super().__init__(every_s, until_s=until_s, name="loadrun-member-kill")
        self.engine = engine
        self.members = members
        self.kills: list[MemberKill] = []
        self.error: str | None = None
        self._events: list[AccountEvent] = []  # appended by the driver's outcomes() calls

    def watch(self, accounts: list[str]) -> None:
        """Subscribe to the ``accounts``' status events (before :meth:`start`).

        The supervisor stamps each with its own clock (``disconnected`` when it takes the
        account as lost, ``restarted`` when its new generation is up), which times a kill
        to the millisecond where ``stats()`` only brackets it.
        """
        for account in accounts:
            self.engine.subscribe(account, self._events.append)

    def done(self) -> int:
        return len(self.kills)

    def act(self) -> bool:
        if self.error is not None or not self.members.live:
            return False
        try:
            self._kill_one()
        except Exception as exc:  # the engine stopped answering: the report says so
            self.error = f"{type(exc).__name__}: {exc}"
            return False
        return True

    def _kill_one(self) -> None:
        victim = self.members.live[0]
        before = self.engine.stats()
        lost_before = before.counters.get("supervisor.members_lost", 0)
        hosted = {
            e.name: e.generation for e in before.of_role("account") if e.host == victim.member_id
        }
        killed_at, killed_wall = time.monotonic(), time.time()
        pids = victim.kill()
        self.members.killed(victim, pids)
        kill = MemberKill(
            t=killed_at - self._t0,
            member=victim.member_id,
            host=victim.host,
            pids=len(pids),
            accounts=sorted(hosted),
            killed_wall=killed_wall,
        )
        self.kills.append(kill)
        deadline = killed_at + TRACK_DEADLINE_S
        asked = 0.0  # when the last stats() that saw neither began (from the kill)
        while time.monotonic() < deadline and kill.replaced_s is None:
            began = time.monotonic() - killed_at
            stats = self.engine.stats()
            now = time.monotonic() - killed_at
            accounts = {e.name: e for e in stats.of_role("account")}
            if kill.detected_s is None and (
                stats.counters.get("supervisor.members_lost", 0) > lost_before
                or any(n in accounts and accounts[n].host != victim.member_id for n in hosted)
            ):
                kill.detected_s, kill.detected_after_s = now, asked
            if kill.detected_s is not None and all(
                n in accounts
                and accounts[n].state == "up"
                and accounts[n].host not in ("", victim.member_id)
                and accounts[n].generation > generation
                for n, generation in hosted.items()
            ):
                kill.replaced_s, kill.replaced_after_s = now, asked
                kill.placed_on = {n: accounts[n].host for n in sorted(hosted)}
            else:
                asked = began
                time.sleep(POLL_S)
        victim.reap()
        if self._stop.is_set():
            return
        fresh = self.members.start_one(victim.host)
        kill.replacement = fresh.member_id
        join_by = time.monotonic() + UP_TIMEOUT_S
        fresh.wait_up(join_by)
        kill.replacement_joined = self.members.wait_joined(self.engine, self.members.count, join_by)

    def _timed_by_events(self) -> None:
        """Each kill's loss and re-placement as the supervisor's events stamped them."""
        events = list(self._events)
        for n, kill in enumerate(self.kills):
            end = self.kills[n + 1].killed_wall if n + 1 < len(self.kills) else float("inf")
            mine = [
                e
                for e in events
                if e.account_id in kill.accounts and kill.killed_wall <= e.at < end
            ]
            lost = [e.at for e in mine if e.kind == "disconnected"]
            if lost:
                kill.lost_at_s = min(lost) - kill.killed_wall
            up: dict[str, float] = {}
            for e in sorted(mine, key=lambda e: e.at):
                if e.kind == "restarted":
                    up.setdefault(e.account_id, e.at)
            if kill.accounts and set(up) == set(kill.accounts):
                kill.up_again_s = max(up.values()) - kill.killed_wall

    def report(self) -> dict[str, Any]:
        """The ``kills`` part of the report's ``members`` section."""
        self._timed_by_events()
        detected = sorted(k.detected_s for k in self.kills if k.detected_s is not None)
        replaced = sorted(k.replaced_s for k in self.kills if k.replaced_s is not None)
        return {
            "every_s": self.every_s,
            "kills": [k.as_dict() for k in self.kills],
            "detected_s": _spread(detected),
            "replaced_s": _spread(replaced),
            "lost_event_s": _spread(sorted(k.lost_at_s for k in self.kills if k.lost_at_s)),
            "up_event_s": _spread(sorted(k.up_again_s for k in self.kills if k.up_again_s)),
            "not_detected": sum(1 for k in self.kills if k.detected_s is None),
            "not_replaced": sum(1 for k in self.kills if k.replaced_s is None),
            "error": self.error,
        }


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": round(values[0], 3),
        "median": round(values[len(values) // 2], 3),
        "max": round(values[-1], 3),
    }


def members_section(
    members: MemberSet,
    killer: MemberKiller | None,
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
    return {
        "count": members.count,
        "max_accounts": members.max_accounts,
        "hosts": list(members.hosts),
        "leader_admin": f"{members.bind}:{members.admin_port}",
        "started": [m.member_id for m in members.all],
        "accounts_at_start": at_start,
        "accounts_at_end": accounts_by_host(last_stats) if last_stats is not None else {},
        "member_kill": killer.report() if killer is not None else None,
        "accepted": verdict["owed"],
        "outcomes": verdict["outcomes"],
        "double_served": tracker.duplicate_outcomes_total,
        "resent_after_restart": router.counters.get("resent_after_restart", 0) if router else 0,
        **closed,
    }

"""``--member-kill S``: SIGKILL a member every S seconds and time the leader's recovery.

:class:`MemberKiller` (on the clock and with the timing of :mod:`.member_faults`) SIGKILLs
the whole process groups of the live member started longest ago
(:meth:`~apps.loadrun.members.MemberProc.kill`), follows the engine until the member's
accounts are up again elsewhere or :data:`~apps.loadrun.member_faults.TRACK_DEADLINE_S`
passed (the kill's row then says what was not seen), and starts a new member (a new id,
on the killed one's address) so that the run keeps N members.
"""

from __future__ import annotations

import time

from .member_faults import TRACK_DEADLINE_S, MemberFaults
from .members import UP_TIMEOUT_S, MemberProc

__all__ = ["MemberKiller"]


class MemberKiller(MemberFaults):
    """Kills one member every ``every_s`` seconds (see :class:`MemberFaults`)."""

    kind = "kill"

    def fault(self, victim: MemberProc) -> None:
        before = self.engine.stats()
        kill = self.begin(victim, before)
        pids = victim.kill()
        kill.pids = len(pids)
        self.members.killed(victim, pids)
        self.follow(kill, before, kill.at + TRACK_DEADLINE_S, away=True)
        victim.reap()
        if self._stop.is_set():
            return
        fresh = self.members.start_one(victim.host)
        kill.replacement = fresh.member_id
        join_by = time.monotonic() + UP_TIMEOUT_S
        fresh.wait_up(join_by)
        kill.replacement_joined = self.members.wait_joined(self.engine, self.members.count, join_by)

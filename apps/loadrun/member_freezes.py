"""``--member-freeze S``: SIGSTOP a member for S seconds, then SIGCONT it; time what follows.

A frozen member is the hard case of a lost one: its processes hold their sockets open, so
nothing sent to it fails, it just is never acknowledged; and when it resumes, its account
actors still believe they serve their numbers. :class:`MemberFreezer` (on the clock and
with the timing of :mod:`.member_faults`), every ``every_s`` seconds:

1. counts the outcomes of the accounts *not* on the member over the S seconds before the
   freeze (outcomes/s, from the runner's own books; the freeze itself is at the period);
2. SIGSTOPs the member's process groups and follows the engine as a kill is followed
   (detected, re-placed), and counts the other accounts' outcomes while it is frozen:
   the two rates side by side say whether a hung member slowed anyone else down;
3. SIGCONTs it after S seconds and times when the supervisor counts it up again
   (``rejoined``) and, when its accounts were re-placed meanwhile, when every one of its
   old account processes has gone (``stale gone``: told to exit, or fenced by their lease).

The member is then put last in the round-robin; it is not replaced, it comes back.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from actors.runtime import procs

from .member_faults import POLL_S, TRACK_DEADLINE_S, MemberFaults
from .members import UP_TIMEOUT_S, MemberProc, MemberSet
from .tracker import Tracker

__all__ = ["MemberFreezer"]

STALE_DEADLINE_S = 30.0
"""How long after the SIGCONT a re-placed account's old process may take to end."""


class MemberFreezer(MemberFaults):
    """Freezes one member for ``freeze_s`` every ``every_s`` seconds.

    Args:
        tracker: the runner's books (outcomes by account, for the rates).
        freeze_s: how long each member stays stopped; ``every_s`` must exceed twice this
            (the rate before the freeze is counted over the ``freeze_s`` before it, so
            the freeze is at ``k * every_s`` and its watch begins ``freeze_s`` earlier).
    """

    kind = "freeze"

    def __init__(
        self,
        engine: Any,
        members: MemberSet,
        every_s: float,
        *,
        freeze_s: float,
        tracker: Tracker,
        until_s: float | None,
    ) -> None:
        # Watched for freeze_s before, frozen for freeze_s after its time, within the run.
        super().__init__(
            engine, members, every_s, until_s=until_s, lead_s=freeze_s, lasts_s=freeze_s
        )
        self.freeze_s = freeze_s
        self.tracker = tracker

    def fault(self, victim: MemberProc) -> None:
        hosted = {
            e.name for e in self.engine.stats().of_role("account") if e.host == victim.member_id
        }
        counted_at, counted = time.monotonic(), self.tracker.outcomes_except(hosted)
        if self.stopped(self.freeze_s):
            return
        before = self.engine.stats()
        freeze = self.begin(victim, before)
        hosted = set(freeze.accounts)
        start_count = self.tracker.outcomes_except(hosted)
        freeze.others_before_per_s = (start_count - counted) / (freeze.at - counted_at)
        old = {e.pid for e in before.of_role("account") if e.name in hosted and e.pid}
        try:
            freeze.pids = len(victim.signal_groups(signal.SIGSTOP))
            thaw_at = freeze.at + self.freeze_s
            self.follow(freeze, before, thaw_at, away=False)
            self.stopped(max(0.0, thaw_at - time.monotonic()))
            during = self.tracker.outcomes_except(hosted) - start_count
            freeze.others_during_per_s = during / (time.monotonic() - freeze.at)
        finally:
            victim.signal_groups(signal.SIGCONT)
            freeze.frozen_for_s = time.monotonic() - freeze.at
            self.members.rotate(victim)
        if self._stop.is_set():
            return
        if freeze.detected_s is not None:  # lost: its accounts come back in a new generation
            self.follow(freeze, before, freeze.at + TRACK_DEADLINE_S, away=False)
        if self.members.wait_joined(
            self.engine, self.members.count, time.monotonic() + UP_TIMEOUT_S
        ):
            freeze.rejoined_s = time.monotonic() - freeze.at
        if freeze.replaced_s is not None:  # their old processes must not serve them too
            freeze.stale = len(old)
            deadline = time.monotonic() + STALE_DEADLINE_S
            while any(procs.alive(pid) for pid in old):
                if time.monotonic() > deadline:
                    return
                time.sleep(POLL_S)  # as follow(): the run's end does not cut this short
            freeze.stale_gone_s = time.monotonic() - freeze.at

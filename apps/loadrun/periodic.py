"""A fault on a clock: the k-th is due ``k * every_s`` after the start, from its own thread.

``--crash-every`` (:class:`~apps.loadrun.crashes.Crasher`) and the member faults
(:class:`~apps.loadrun.member_faults.MemberFaults`: ``--member-kill``, ``--member-freeze``)
act on this clock; each says what one act is and how many it has done.
"""

from __future__ import annotations

import threading
import time

__all__ = ["Periodic"]


class Periodic:
    """Calls :meth:`act` every ``every_s`` seconds from a daemon thread until :meth:`stop`.

    Args:
        every_s: the period; act k is due ``k * every_s`` after :meth:`start`.
        until_s: nothing is due this long after :meth:`start` or later (the end of the
            offer phase of a timed run).
        name: the thread's name.
        lead_s: :meth:`act` is called this long before each due time (an act that first
            watches the run for a while; ``lead_s`` < ``every_s``).
        lasts_s: an act goes on this long after its due time; none is due that would not
            end before ``until_s`` (a fault cut short by the end of the run measures it).
    """

    def __init__(
        self,
        every_s: float,
        *,
        until_s: float | None,
        name: str,
        lead_s: float = 0.0,
        lasts_s: float = 0.0,
    ) -> None:
        self.every_s = every_s
        self.until_s = until_s
        self.lead_s = lead_s
        self.lasts_s = lasts_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._t0 = 0.0

    def start(self, t0: float) -> None:
        """Start the clock; ``t0`` is the run's start (monotonic)."""
        self._t0 = t0
        self._thread.start()

    def stop(self) -> None:
        """Nothing more is due; returns once an act under way has ended."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def done(self) -> int:
        """Acts done so far (the next is due after ``done() + 1`` periods)."""
        raise NotImplementedError  # pragma: no cover - each subclass counts its own

    def act(self) -> bool:
        """One act, in the clock's thread; False ends the clock."""
        raise NotImplementedError  # pragma: no cover

    def stopped(self, wait_s: float) -> bool:
        """Wait up to ``wait_s`` (for a retry inside :meth:`act`); True once stopped."""
        return self._stop.wait(wait_s)

    def _loop(self) -> None:
        while True:
            due = self._t0 + (self.done() + 1) * self.every_s
            if self.until_s is not None and due + self.lasts_s >= self._t0 + self.until_s:
                return
            wait = due - self.lead_s - time.monotonic()
            if self._stop.wait(max(0.0, wait)) or not self.act():
                return

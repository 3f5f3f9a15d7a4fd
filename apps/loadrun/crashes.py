"""``--crash-every``: SIGKILL the whole engine on a clock, and the books of each crash.

:class:`Crasher` is a thread that SIGKILLs the hosted engine (:class:`HostedEngine.kill`)
every ``every_s`` seconds of the offer phase, whatever the driver is doing: a
``submit_many`` in progress then loses its answer, as a webhook does when the gateway
dies before answering 200. A kill waits for a host that is ready and has been up a little
(a host still recovering is not killed again), so each engine gets traffic.

:class:`CrashBook` keeps, per crash: what the runner had accepted without an outcome when
the engine died, how the next engines ended those messages (by outcome status, and the
new engine's own recovery counters ``intake.recovered*``), how long the dead engine's
processes took to be gone and the new one to be ready.

An outcome is recorded in the store before the facade hands it out; the engine that
recorded it may be killed before its answer reaches the runner (in the host's reply, or
still queued in the facade). No later engine recovers it (it is finished), so after each
restart :meth:`CrashBook.crashed` looks up in the store, with :func:`finished_in_store`,
the messages the runner still has no outcome for: those the dead engine finished (before
its last process was gone) are settled from the store and counted apart.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocols import Outcome

from .hosted import GONE_WITHIN_S, HostedEngine, Restart
from .periodic import Periodic
from .tracker import Tracker

__all__ = ["Crash", "CrashBook", "Crasher", "finished_in_store"]

_RETRY_S = 0.05  # a kill that found no ready host looks again this soon
_RECOVERY_KEYS = (
    "intake.recovered",  # admitted again when its account was added
    "intake.recovered_replied",  # its reply was sent before the crash: not sent again
    "intake.recovered_timeout",  # past its deadline: nothing sent
    "intake.readmitted",
)


class Crasher(Periodic):
    """Kills ``host`` every ``every_s`` seconds from its own thread until :meth:`stop`.

    Args:
        host: the hosted engine.
        every_s: the period; kill k is due ``k * every_s`` after :meth:`start`.
        until_s: no kill due this long after :meth:`start` or later (the end of the offer
            phase of a timed run: the engine that collects the last outcomes lives).
        min_up_s: a host is killed only once it has been ready this long.
    """

    def __init__(
        self,
        host: HostedEngine,
        every_s: float,
        *,
        until_s: float | None = None,
        min_up_s: float | None = None,
    ) -> None:
        super().__init__(every_s, until_s=until_s, name="loadrun-crasher")
        self.host = host
        self.min_up_s = min(every_s / 2, 1.0) if min_up_s is None else min_up_s
        self.kills = 0

    def done(self) -> int:
        return self.kills

    def act(self) -> bool:
        while not self.host.kill(min_up_s=self.min_up_s):
            if self.stopped(_RETRY_S):
                return False
        self.kills += 1
        return True


@dataclass(slots=True)
class Crash:
    """One engine death, as the runner saw it (times in seconds from the run's start)."""

    restart: Restart
    t: float
    unfinished: int  # accepted without an outcome when the engine died
    answers_lost: int  # submissions since the previous crash whose answer never arrived
    ended: Counter[str] = field(default_factory=Counter)  # their outcomes afterwards
    engine: dict[str, int] = field(default_factory=dict)  # the new engine's recovery counters

    def as_dict(self) -> dict[str, Any]:
        r = self.restart
        return {
            "t": round(self.t, 3),
            "host_pid": r.host_pid,
            "planned": r.planned,
            "exit_status": r.exit_status,
            "processes": len(r.pids),
            "pids": list(r.pids),
            "gone_s": round(r.gone_s, 4),
            "leftovers": list(r.leftovers),
            "restart_s": round(r.ready_s, 3),
            "host_start_s": round(r.start_s, 3),
            "unfinished": self.unfinished,
            "answers_lost": self.answers_lost,
            "ended": dict(sorted(self.ended.items())),
            "engine_recovery": dict(self.engine),
        }


class CrashBook:
    """The crashes of one run and what became of the messages each left unfinished."""

    def __init__(self, every_s: float, store_path: str) -> None:
        self.every_s = every_s
        self.store_path = store_path
        self.crashes: list[Crash] = []
        self._owner: dict[str, int] = {}  # id unfinished at a crash -> that (latest) crash
        self._lost_seen = 0

    def crashed(self, restart: Restart, tracker: Tracker, t0: float) -> Crash:
        """Book a death the driver noticed and the start of the next engine."""
        index = len(self.crashes)
        for mid in tracker.pending:
            self._owner[mid] = index
        for mid in tracker.unknown:
            self._owner[mid] = index
        self.crashes.append(
            Crash(
                restart=restart,
                t=restart.killed_at - t0,
                unfinished=len(tracker.pending),
                answers_lost=tracker.lost_answers - self._lost_seen,
                engine={k: v for k, v in restart.recovery.items() if k in _RECOVERY_KEYS},
            )
        )
        self._lost_seen = tracker.lost_answers
        owed = [*tracker.pending, *tracker.unknown]
        found = finished_in_store(self.store_path, owed, before=restart.gone_wall)
        tracker.settled_in_store(found)
        self.settled(found)
        return self.crashes[-1]

    def outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Attribute outcomes of messages a crash left unfinished to that crash."""
        if not self._owner:
            return
        for o in outcomes:
            index = self._owner.pop(o.message_id, None)
            if index is not None:
                self.crashes[index].ended[o.status] += 1

    def settled(self, finished: dict[str, str]) -> None:
        """Attribute outcomes found only in the store (see :func:`finished_in_store`)."""
        for mid, status in finished.items():
            index = self._owner.pop(mid, None)
            if index is not None:
                self.crashes[index].ended[f"{status} (store only)"] += 1

    def report(self, tracker: Tracker) -> dict[str, Any]:
        """The report's ``crashes`` section."""
        rows = [c.as_dict() for c in self.crashes]
        restarts = sorted(c.restart.ready_s for c in self.crashes)
        ended: Counter[str] = Counter()
        engine: Counter[str] = Counter()
        for c in self.crashes:
            ended.update(c.ended)
            engine.update(c.engine)
        return {
            "every_s": self.every_s,
            "kills": sum(1 for c in self.crashes if c.restart.planned),
            "unplanned": sum(1 for c in self.crashes if not c.restart.planned),
            "restart_s": {
                "min": restarts[0] if restarts else 0.0,
                "median": restarts[len(restarts) // 2] if restarts else 0.0,
                "max": restarts[-1] if restarts else 0.0,
            },
            "gone_within_s": GONE_WITHIN_S,
            "gone_s_max": max((c.restart.gone_s for c in self.crashes), default=0.0),
            "leftover_processes": sorted(p for c in self.crashes for p in c.restart.leftovers),
            "unfinished": sum(c.unfinished for c in self.crashes),
            "ended": dict(sorted(ended.items())),
            "still_owed": len(self._owner),
            "engine_recovery": dict(sorted(engine.items())),
            "answers_lost": tracker.lost_answers,
            "reoffered": tracker.reoffered,
            "lost_then_accepted": tracker.unknown_accepted,
            "lost_but_recorded": tracker.unknown_recorded,
            "lost_unresolved": len(tracker.unknown),
            "settled_from_store": dict(sorted(tracker.from_store.items())),
            "rows": rows,
        }


def finished_in_store(
    path: str, ids: Sequence[str], *, before: float | None = None
) -> dict[str, str]:
    """The status the intake store at ``path`` recorded for each of ``ids`` that finished.

    Read-only, beside the engine that has the store open (SQLite's WAL lets readers in);
    an unreadable store answers nothing (the ids stay owed, and the report says so).

    Args:
        path: the store's database file.
        ids: message ids.
        before: only rows finished before this (``time.time()``; the store's clock).
    """
    found: dict[str, str] = {}
    if not ids:
        return found
    with contextlib.suppress(sqlite3.Error):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for i in range(0, len(ids), 500):
                chunk = list(ids[i : i + 500])
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT message_id, status FROM intake WHERE message_id IN ({marks})"
                    " AND finished_at IS NOT NULL AND finished_at < ?",
                    [*chunk, float("inf") if before is None else before],
                )
                found.update((mid, status) for mid, status in rows)
        finally:
            conn.close()
    return found

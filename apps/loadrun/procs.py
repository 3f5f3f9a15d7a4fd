"""Reading processes from /proc with the standard library: resident memory, parents, children.

Linux only, like the engine. Every function answers None (or an empty set) for a process
that is gone instead of raising: actor processes come and go during a run.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable

from actors.runtime import procs as _engine_procs
from actors.runtime.procs import parent, rss_kb

__all__ = ["children", "kill", "parent", "rss_kb", "wait_gone"]


def children(pid: int) -> set[int]:
    """The live direct children of ``pid``."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and parent(int(entry)) == pid:
            found.add(int(entry))
    return found


def kill(pid: int, *, expected_parent: int | None) -> bool:
    """SIGKILL ``pid`` if it lives and (when given) is still a child of ``expected_parent``.

    The parent check guards against a pid that was reused since it was read from stats.
    """
    if expected_parent is not None and parent(pid) != expected_parent:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: Iterable[int], *, timeout_s: float) -> set[int]:
    """Wait until every pid has ended (or ``timeout_s``); SIGKILL and return the ones left."""
    left = _engine_procs.wait_gone(pids, timeout_s=timeout_s)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left

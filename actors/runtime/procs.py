"""Process bookkeeping from /proc: which processes an actor system owns, and are they gone.

Thespian's admin detaches into its own session, and ``ActorSystem.shutdown()`` gives up
after 10 s leaving busy actor processes alive; the engine therefore tracks the PIDs of its
own system and checks them itself. Linux only (the engine's platform).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

__all__ = ["alive", "descendants", "parent", "rss_kb", "wait_gone"]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    rest = data[data.rfind(")") + 2 :].split()
    return rest[0], int(rest[1])


def parent(pid: int) -> int | None:
    """The parent pid of a live (non-zombie) process, or None."""
    st = _stat(pid)
    return None if st is None or st[0] in ("Z", "X") else st[1]


def rss_kb(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of /proc/<pid>/status), or None."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None  # a zombie has no VmRSS line


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie whose threads have all ended."""
    st = _stat(pid)
    if st is None:
        return False
    if st[0] not in ("Z", "X"):
        return True
    # The leader shows as a zombie as soon as its own thread has exited, while the other
    # threads (an engine process's lifeline thread) may still be exiting, and until the
    # last one has, the process's descriptors, its listening port among them, stay open.
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False


def descendants(root: int) -> set[int]:
    """Every live process whose ancestry leads to ``root`` (``root`` included)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[0] not in ("Z", "X"):
                parents[int(entry)] = st[1]
    found = {root} if root in parents else set()
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return found


def wait_gone(pids: Iterable[int], *, timeout_s: float) -> set[int]:
    """Wait until every pid has exited (or ``timeout_s``); return those still alive."""
    left = {p for p in pids if alive(p)}
    deadline = time.monotonic() + timeout_s
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = {p for p in left if alive(p)}
    return left

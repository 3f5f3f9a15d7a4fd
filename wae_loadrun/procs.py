"""Reading processes from /proc with the standard library: resident memory, parents, children.

Linux only, like the engine. Every function answers None (or an empty set) for a process
that is gone instead of raising: actor processes come and go during a run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable

__all__ = ["children", "kill", "parent", "rss_kb", "wait_gone"]


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


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    rest = data[data.rfind(")") + 2 :].split()
    return rest[0], int(rest[1])


def parent(pid: int) -> int | None:
    """The parent pid of a live (non-zombie) process, or None."""
    st = _stat(pid)
    return None if st is None or st[0] in ("Z", "X") else st[1]


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
    left = {p for p in pids if parent(p) is not None}
    deadline = time.monotonic() + timeout_s
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = {p for p in left if parent(p) is not None}
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left

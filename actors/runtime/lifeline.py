"""The lifeline: every process of an engine's actor system ends soon after its embedder.

Why this exists
    On the multiproc bases, Thespian forks its admin from the embedding process and the
    admin detaches at once: ``setsid()`` and a second fork, so it is re-parented to init
    and never hears of the embedder's death. The logger and every actor process are forked
    by the admin or by their parent actor. Nothing else ties them to the embedder: when it
    dies without shutting the engine down (SIGKILL, an OOM kill, a crash), the whole actor
    system lives on, holding its loopback ports, finishing work whose outcomes nobody
    collects and sending replies that a restarted engine sends again.

How
    The embedding process opens a pidfd for itself (:func:`os.pidfd_open`, Linux >= 5.3).
    :func:`tied_forks` arms the calling thread around ``ActorSystem(...)``, which forks the
    admin. A process forked while armed (``os.register_at_fork``) becomes an *engine
    process*: it starts a daemon thread that blocks in ``poll`` on the inherited pidfd and
    calls ``os._exit`` the moment the embedder has exited, and every process it forks in
    turn (the logger, the actors, their children, from any thread) is an engine process
    too. Thespian closes only its transport's sockets in a forked actor, so the pidfd
    survives down the tree. Without a usable pidfd the thread polls instead: every
    :data:`POLL_S` it checks that the embedder's pid exists and still has the start time
    it had (so a reused pid is not mistaken for the embedder).

Why ``os._exit`` and not Thespian's shutdown
    The embedder is gone: nobody will collect an outcome, and the next engine recovers
    unfinished work from its own records. Exiting at once frees the ports and locks for
    that next start; an orderly shutdown could take Thespian's 10 s and more.

Threads
    The lifeline thread holds no lock while it waits, so an engine process forking with it
    running cannot deadlock its child (Python 3.12 warns about any fork of a process with
    threads; 3.11, the engine's Python, does not). When an engine process exits, its
    leader shows as a zombie while the lifeline thread is still being torn down, and its
    ports stay bound until that thread is gone: :func:`actors.runtime.procs.alive` counts
    such a process as alive.

What is not tied
    Children the embedder forks outside :func:`tied_forks` (its own multiprocessing
    workers, say; their copy of the pidfd is closed) and processes started by
    ``subprocess`` (fork + exec runs no at-fork handlers, and the pidfd is close-on-exec).
    The ``spawn`` start method runs no at-fork handlers either: the engine uses Thespian's
    default, ``fork``.

Why not ``PR_SET_PDEATHSIG``
    It reports the death of the parent *thread*, and the admin's parent is the short-lived
    middle process of its double fork: the signal would fire at once, or (re-parented to
    init) never.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["EXIT_STATUS", "POLL_S", "engine_process", "tied_forks"]

EXIT_STATUS = 75
"""The exit status of an engine process ended by the lifeline (EX_TEMPFAIL)."""

POLL_S = 0.2
"""How often the fallback (no pidfd) checks that the embedder still lives."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Embedder:
    """The process the actor system lives for, as its engine processes know it."""

    pid: int
    start_time: str | None  # field 22 of /proc/<pid>/stat: tells a reused pid apart
    pidfd: int | None


_START_TIME = 19  # field 22 of /proc/<pid>/stat, counted from field 3
_embedder: _Embedder | None = None
_engine_process = False  # this process was forked for an actor system
_arming = threading.local()  # .on: this thread of the embedder is forking the system


@contextlib.contextmanager
def tied_forks() -> Iterator[None]:
    """While inside, processes this thread forks (and all their descendants) die with this one.

    Re-entrant; in an engine process it changes nothing (its forks are tied already).
    """
    global _embedder
    if _engine_process:
        yield
        return
    if _embedder is None or _embedder.pid != os.getpid():
        pid = os.getpid()
        _embedder = _Embedder(pid=pid, start_time=_start_time(pid), pidfd=_open_pidfd(pid))
    outer = getattr(_arming, "on", False)
    _arming.on = True
    try:
        yield
    finally:
        _arming.on = outer


def engine_process() -> bool:
    """True in a process forked for an actor system (it ends when its embedder does)."""
    return _engine_process


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat from field 3 (state) on, or None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode(errors="replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return data[data.rfind(")") + 2 :].split()


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[_START_TIME] if fields is not None and len(fields) > _START_TIME else None


def _after_fork_in_child() -> None:
    global _embedder, _engine_process
    embedder = _embedder
    if embedder is None:
        return
    if _engine_process or getattr(_arming, "on", False):
        _engine_process = True
        threading.Thread(target=_watch, args=(embedder,), name="wae-lifeline", daemon=True).start()
        return
    # An unrelated fork of the embedder: not part of any actor system.
    _embedder = None
    if embedder.pidfd is not None:
        with contextlib.suppress(OSError):
            os.close(embedder.pidfd)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _watch(embedder: _Embedder) -> None:
    """Block until the embedder has exited, then end this process at once."""
    if embedder.pidfd is not None and _is_pidfd(embedder.pidfd):
        poller = select.poll()
        poller.register(embedder.pidfd, select.POLLIN)
        poller.poll()
        # Readable means exited; anything else (the descriptor closed under us) means
        # we cannot tell, so confirm the old way before ending a live system.
    while not _gone(embedder):
        time.sleep(POLL_S)
    os._exit(EXIT_STATUS)


def _is_pidfd(fd: int) -> bool:
    """True when ``fd`` is still a pidfd (not closed and reused for something else)."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return target == "anon_inode:[pidfd]" or target.startswith("pidfd:")  # kernels differ


def _gone(embedder: _Embedder) -> bool:
    """True when the embedder has exited (a zombie counts) or its pid now names another."""
    try:
        os.kill(embedder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: the pid was reused
        return True
    fields = _stat_fields(embedder.pid)
    if fields is None:  # exists, but /proc cannot tell more
        return False
    if fields[0] in ("Z", "X"):
        # A zombie leader whose other threads still run is a live process.
        try:
            return len(os.listdir(f"/proc/{embedder.pid}/task")) <= 1
        except OSError:
            return True
    return embedder.start_time is not None and fields[_START_TIME : _START_TIME + 1] != [
        embedder.start_time
    ]

"""The intake store's files: a private directory, private files, and a lock that forks cannot keep.

Privacy
    The store holds phone numbers and message texts. Its directory is created 0700 when
    missing; an existing directory that group or others may write is refused (another user
    could plant the ``-wal`` or lock file there). The database file is created 0600 before
    SQLite opens it, because SQLite gives the ``-wal`` and ``-shm`` files it creates later
    the database file's permission bits; :func:`make_private` also narrows files that
    already exist (an older store, a copy) to 0600. No umask is changed: it is
    process-wide, and other threads create files too.

The lock
    ``<path>.lock`` is held with ``flock(LOCK_EX | LOCK_NB)`` for the store's lifetime and
    names the holder's pid. The kernel releases it when the holder's last descriptor of it
    closes, which includes the process dying by SIGKILL, so a killed engine never blocks
    the next start and there is no stale-lock cleanup to get wrong. The file itself is
    never deleted: a process could be about to lock the inode being unlinked.

Why forks close it
    Actor processes are forked from the embedding process and inherit every descriptor. A
    flock belongs to the open file description, which parent and child then share, so a
    child that outlives its parent (an orphaned actor) would keep the lock and block the
    next engine. :func:`_after_fork_in_child` therefore closes the child's copy of each
    lock descriptor (``os.register_at_fork``). It must close, never ``flock(LOCK_UN)``:
    unlocking through the shared description would release the parent's lock too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import weakref
from typing import Protocol

from actors.errors import StoreError, StoreLockedError

__all__ = ["StoreLock", "ensure_private_dir", "forget_in_children", "make_private"]

DIR_MODE = 0o700
FILE_MODE = 0o600
SIDE_FILES = ("-wal", "-shm", "-journal")
"""SQLite's companions of a database file (``-journal`` only if WAL mode ever failed)."""


class _ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_INHERITED: weakref.WeakSet[_ForkAware] = weakref.WeakSet()


def forget_in_children(obj: _ForkAware) -> None:
    """Have ``obj._after_fork_in_child()`` run in every child forked while ``obj`` lives."""
    _INHERITED.add(obj)


def _after_fork_in_child() -> None:
    for obj in list(_INHERITED):
        obj._after_fork_in_child()
    _INHERITED.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def ensure_private_dir(directory: str, *, db_path: str) -> None:
    """Create ``directory`` 0700 if missing; refuse one that group or others may write.

    Raises:
        StoreError: naming the directory and its mode, or why it cannot be created.
    """
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        try:
            os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
            os.chmod(directory, DIR_MODE)  # makedirs' mode is filtered by the umask
        except OSError as exc:
            raise StoreError(
                f"cannot create the intake store's directory {directory!r}: {exc.strerror}",
                path=db_path,
            ) from None
        return
    except OSError as exc:
        raise StoreError(
            f"cannot read the intake store's directory {directory!r}: {exc.strerror}",
            path=db_path,
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise StoreError(f"{directory!r} (for the intake store) is not a directory", path=db_path)
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StoreError(
            f"the intake store's directory {directory!r} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); put intake_path in a private "
            f"directory (0700), or a missing one the engine will create 0700",
            path=db_path,
        )


def make_private(db_path: str, *, create: bool) -> None:
    """Make the database file and its SQLite companions that exist 0600.

    Args:
        db_path: the database file.
        create: create the database file (empty, 0600) when it does not exist.

    Raises:
        StoreError: a file cannot be created or narrowed (owned by someone else, a symlink).
    """
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    for name in (db_path, *(db_path + s for s in SIDE_FILES)):
        try:
            fd = os.open(name, flags if name == db_path else flags & ~os.O_CREAT, FILE_MODE)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreError(
                f"cannot open the intake store's file {name!r}: {exc.strerror}", path=db_path
            ) from None
        try:
            os.fchmod(fd, FILE_MODE)
        except OSError as exc:
            raise StoreError(
                f"cannot make the intake store's file {name!r} private (0600): {exc.strerror}",
                path=db_path,
            ) from None
        finally:
            os.close(fd)


class StoreLock:
    """An exclusive ``flock`` on ``<db_path>.lock``, held until :meth:`release`.

    Args:
        db_path: the database file the lock guards (named in errors).

    Raises:
        StoreLockedError: another open store (this process or another) holds the lock;
            names the path and the holder's pid when the lock file gives one.
        StoreError: the lock file cannot be opened.
    """

    __slots__ = ("__weakref__", "_fd", "db_path", "path")

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.path = db_path + ".lock"
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(self.path, flags, FILE_MODE)
            os.fchmod(fd, FILE_MODE)
        except OSError as exc:
            raise StoreError(
                f"cannot open the intake store's lock file {self.path!r}: {exc.strerror}",
                path=db_path,
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StoreLockedError(_locked_message(db_path, pid), path=db_path, pid=pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        forget_in_children(self)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Unlock and close (idempotent). The file stays: see the module docstring."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _after_fork_in_child(self) -> None:
        # Close, never LOCK_UN: the description is shared with the parent (module docstring).
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def _locked_message(db_path: str, pid: int | None) -> str:
    if pid is None:
        holder = ""
    elif pid == os.getpid():
        holder = f" (pid {pid}, this process)"
    else:
        holder = f" (pid {pid})"
    return (
        f"the intake store {db_path!r} is in use by another engine{holder}; "
        f"two engines cannot share one intake_path"
    )

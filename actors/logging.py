"""Logging: loguru everywhere, Thespian's own log records routed into it.

Library code only binds context (``logger.bind(actor=..., account=...)``); entry points
call ``configure_logging`` once, before the engine starts, so that the sinks are inherited
by every actor process the engine forks. Tracebacks are logged without variable values
(``diagnose=False``): a secret in a local variable must never reach a log.

Log files are private: a file sink is created 0600 (its directory 0700 when missing), and
Thespian's own diagnostic file (``thesplog``, which it writes 0644 to ``$TMPDIR/thespian.log``)
is moved into a private directory by :func:`private_thespian_log`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
import tempfile
from typing import Any, TextIO

from loguru import logger

__all__ = [
    "LoguruHandler",
    "configure_logging",
    "private_thespian_log",
    "thespian_log_defs",
]

FILE_MODE = 0o600
DIR_MODE = 0o700


def configure_logging(
    *, level: str = "INFO", json: bool = False, sink: TextIO | str | None = None
) -> int:
    """Replace loguru's sinks with one: stderr by default, JSON lines with ``json=True``.

    A path ``sink`` is a private file (0600; its directory, when missing, is created 0700).

    Returns the sink id (``logger.remove(id)`` undoes it).
    """
    logger.remove()
    options: dict[str, Any] = {}
    if isinstance(sink, str):
        _private_dir(os.path.dirname(os.path.abspath(sink)))
        options["opener"] = _private_opener
    return logger.add(
        sink if sink is not None else sys.stderr,
        level=level,
        serialize=json,
        backtrace=False,
        diagnose=False,
        **options,
    )


def _private_opener(path: str, flags: int) -> int:
    """``open``'s opener for log files: created 0600, an existing one narrowed to 0600."""
    fd = os.open(path, flags, FILE_MODE)
    with contextlib.suppress(OSError):  # not ours to narrow: write it anyway
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, FILE_MODE)
    return fd


def _private_dir(directory: str) -> bool:
    """Create ``directory`` 0700 when missing (True); leave an existing one alone (False)."""
    if os.path.isdir(directory):
        return False
    os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
    os.chmod(directory, DIR_MODE)  # makedirs' mode is filtered by the umask
    return True


THESPIAN_LOG_DIR = "wae-thespian-{uid}"
"""The private directory, under the temp directory, of Thespian's own diagnostic log."""


def private_thespian_log() -> str | None:
    """Send Thespian's diagnostic file log (``thesplog``) to a private file; return its path.

    Thespian writes its internal warnings to ``$TMPDIR/thespian.log``, 0644, readable by
    every user. Unless ``THESPLOG_FILE`` names a file (the operator's choice, kept), it goes
    to ``<temp dir>/wae-thespian-<uid>/thespian.log`` instead: the directory 0700, created
    here (one that exists must be ours, private and not a symlink), the file 0600. The
    directory is kept across runs — the log matters most after a crash — and Thespian
    bounds it (``THESPLOG_FILE_MAXSIZE``, 50 KB by default, plus one ``.old``). When no
    private place can be made, the file log is turned off (with a warning). Set in module
    state, not the environment: processes forked afterwards (the admin, the actors)
    inherit it and the embedding process's environment is left as it was. A file Thespian
    re-creates after its size rotation gets the umask's mode: the engine's processes run
    with umask 077 (``actors.runtime.system``); the embedding process keeps its own.
    """
    utilis = _thespian_utilis()
    chosen = os.environ.get("THESPLOG_FILE")
    if chosen:
        path = chosen
    else:
        directory = os.path.join(tempfile.gettempdir(), THESPIAN_LOG_DIR.format(uid=os.getuid()))
        try:
            _private_dir(directory)
            info = os.lstat(directory)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                raise PermissionError(f"{directory!r} is not a directory of this user")
            if stat.S_IMODE(info.st_mode) & 0o077:
                raise PermissionError(
                    f"{directory!r} is open to others (mode {stat.S_IMODE(info.st_mode):04o})"
                )
        except OSError as exc:
            level, use_logging, _ = utilis._thesplog_control_settings
            utilis._thesplog_control_settings = (level, use_logging, 0)  # file log off
            logger.bind(actor="engine").warning(
                "Thespian's own log file is off: no private directory for it ({})", exc
            )
            return None
        path = os.path.join(directory, "thespian.log")
    with contextlib.suppress(OSError):  # Thespian itself shrugs off a log it cannot write
        os.close(_private_opener(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC))
    utilis._thesplog_file = path
    utilis._thesplog_old_file = path + ".old"
    return path


def _thespian_utilis() -> Any:
    # Imported here: importing actors.logging must not load Thespian.
    import thespian.system.utilis

    return thespian.system.utilis


class LoguruHandler(logging.Handler):
    """A stdlib logging handler that hands every record to loguru (for Thespian's logs)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.bind(actor="thespian", source=record.name).opt(exception=record.exc_info).log(
            level, record.getMessage()
        )


def thespian_log_defs(level: str = "WARNING") -> dict[str, Any]:
    """``logging.config.dictConfig`` for Thespian: its records go to loguru."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"loguru": {"class": "actors.logging.LoguruHandler", "level": level}},
        "root": {"handlers": ["loguru"], "level": level},
    }

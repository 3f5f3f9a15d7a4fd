"""The run's log: engine records go to a file, not into the progress bar; the report sums them.

A load test that saturates the engine is expected to trip warnings (the router's occupancy
alert, say). Printed on stderr they break the progress bar and bury what matters, so the
load runner's sinks are: a file in the temp directory for every record at ``--log-level``
(WARNING by default), and stderr for ERROR and above only, so a real problem still shows
as it happens. Both are set before the engine starts: its actor processes inherit them
and append to the same file. Afterwards :meth:`RunLog.close` counts the file's warnings
and errors by who logged them and by kind of message, for the report's "warnings during
the run".
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from typing import TYPE_CHECKING, Any

from loguru import logger

from actors.logging import configure_logging

if TYPE_CHECKING:
    from loguru import Record

__all__ = ["CONSOLE_LEVEL", "RunLog", "attach_file", "current_file", "message_kind", "summarize"]

CONSOLE_LEVEL = "ERROR"
"""Records at this level and above reach stderr as they happen."""
SUMMARY_LEVELS = ("WARNING", "ERROR", "CRITICAL")
"""The levels the report's summary counts (an INFO log file is kept, not summarised)."""
_TOP_KINDS = 10

_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| (?P<level>\w+) *\| (?P<pid>\d+) "
    r"\| (?P<who>[^|]*?) \| (?P<message>.*)$"
)
# BaseActor.warn_sampled: one line per interval stands for the ones it held back.
_HELD = re.compile(r" \((?P<n>\d+) more like this in the last [0-9.]+ s\)$")
_NUMBER = re.compile(r"\d+(?:[.,_]\d+)*")


def _format(record: Record) -> str:
    who = "{extra[actor]}" if "actor" in record["extra"] else "{name}"
    return (
        "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {process} | " + who + " | {message}\n"
        "{exception}"
    )


def message_kind(message: str) -> tuple[str, int]:
    """Return the kind of a log message and how many records its line stands for.

    The kind is the message with its numbers replaced by ``N`` (``900 of 1000 customers``
    and ``950 of 1000 customers`` are one kind); a ``warn_sampled`` suffix ``(K more like
    this ...)`` is dropped from it and counted: the line stands for 1 + K records.
    """
    held = _HELD.search(message)
    count = 1
    if held:
        count += int(held.group("n"))
        message = message[: held.start()]
    kind = _NUMBER.sub("N", message.strip())
    return (kind if len(kind) <= 120 else kind[:117] + "..."), count


def summarize(path: str, levels: tuple[str, ...] = SUMMARY_LEVELS) -> dict[str, Any]:
    """Count the records of a run log at ``levels``: by level, and by (level, who, kind).

    Returns:
        ``{"records": {level: n}, "kinds": [{"level", "who", "kind", "count"}, ...],
        "more_kinds": n}``: the ten most frequent kinds, most frequent first.
    """
    by_level: Counter[str] = Counter()
    by_kind: Counter[tuple[str, str, str]] = Counter()
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            match = _LINE.match(line.rstrip("\n"))
            if match is None or match.group("level") not in levels:
                continue  # a traceback's lines, or a level the summary leaves out
            kind, count = message_kind(match.group("message"))
            by_level[match.group("level")] += count
            by_kind[match.group("level"), match.group("who").strip(), kind] += count
    top = by_kind.most_common(_TOP_KINDS)
    return {
        "records": {level: by_level[level] for level in levels if by_level[level]},
        "kinds": [{"level": lv, "who": who, "kind": k, "count": n} for (lv, who, k), n in top],
        "more_kinds": len(by_kind) - len(top),
    }


def attach_file(path: str, level: str) -> int:
    """Set the run's sinks in this process: stderr for errors, ``path`` appended at ``level``.

    Also what an engine host (``--crash-every``) calls, so that its records join the
    runner's file.

    Returns:
        The file sink's loguru id.
    """
    configure_logging(level=CONSOLE_LEVEL)  # replaces every sink: stderr, errors only
    # Appending (O_APPEND) keeps whole lines from processes that share the file;
    # line buffering writes each record at once, even from a process that dies.
    return logger.add(
        path,
        level=level.upper(),
        format=_format,
        mode="a",
        buffering=1,
        backtrace=False,
        diagnose=False,  # never a variable's value (a secret) in the log
    )


_open: list[RunLog] = []  # the files being written, newest last


def current_file() -> tuple[str, str] | None:
    """The path and level of the run's log file being written in this process, if any."""
    return (_open[-1].path, _open[-1].level) if _open else None


class RunLog:
    """The load runner's sinks: ERROR and above on stderr, everything at ``level`` in a file.

    Args:
        level: the file's level (``--log-level``).
        directory: where the file goes (default: the temp directory).
    """

    def __init__(self, level: str = "WARNING", directory: str | None = None) -> None:
        self.level = level.upper()
        name = f"wae-loadrun-{os.getpid()}.log"
        self.path = os.path.join(directory or tempfile.gettempdir(), name)
        # A fresh, private file (engine records can name customers): the sink appends, so
        # forked processes and an engine host never overwrite one another.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        os.close(fd)
        self._sink: int | None = attach_file(self.path, self.level)
        _open.append(self)

    def close(self) -> dict[str, Any]:
        """Stop writing the file and sum it up; an empty file is removed (``path`` None).

        Returns:
            :func:`summarize`'s counts with ``path`` (None if removed), ``level`` (the
            file's) and ``console_level``.
        """
        if self._sink is not None:
            logger.remove(self._sink)
            self._sink = None
        if self in _open:
            _open.remove(self)
        summary: dict[str, Any] = {"records": {}, "kinds": [], "more_kinds": 0}
        path: str | None = self.path
        try:
            if os.path.getsize(self.path) == 0:
                os.remove(self.path)
                path = None
            else:
                summary = summarize(self.path)
        except OSError:  # removed by someone else: nothing to sum up
            path = None
        return {**summary, "path": path, "level": self.level, "console_level": CONSOLE_LEVEL}

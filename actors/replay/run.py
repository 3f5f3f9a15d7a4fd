"""Dead-letter replay: resubmit the journal of abandoned messages; dedupe absorbs repeats.

Reading
    Files are read oldest first: ``<path>.1``, then ``<path>``. A complete record whose
    frame does not decode is skipped and counted in ``corrupt`` (its length prefix is
    plausible, so reading goes on after it). A torn final record, the trace of a crash
    mid-write, and everything from a record whose length is impossible are not replayed:
    their bytes are counted in ``torn_bytes``. Every finding names its file and offset.

Submitting
    Records go in batches through ``target.submit_many`` (an :class:`~actors.Engine`, or
    anything with that method). By answer:

    - ``Accepted``: taken; its outcome goes to whoever collects the engine's outcomes.
    - ``duplicate``: the target already had it (dedupe); settled as well.
    - ``capacity``, ``customer_backlog``: retried with exponential backoff (at least the
      target's ``retry_after_s`` hint, if it has one) while the waiting stays within
      ``timeout_s`` in all; what is still refused is reported by id, never dropped.
    - ``shutting_down``, or a :class:`ReplayTargetError`: the target takes nothing more,
      so the replay stops; the remaining records are read and counted ``unsubmitted``.
    - any other reason (``unknown_account``, ``invalid``, ``account_failed``): reported
      by id.

Consuming (``consume=True``)
    Deleting what was settled, never what was not. First the journal files are claimed:
    renamed to ``<path>.replaying-<UTC stamp>-<n>``, so an engine that journals during the
    replay starts a new ``<path>`` instead of mixing into the files being read. Claims
    left by an interrupted earlier run are replayed first. After the replay, every record
    that was not settled (refused, rejected, unsubmitted) is appended to ``<path>`` again
    through :class:`~actors.journal.DeadLetterJournal` (bounded, fsynced), and only then
    are the claimed files deleted. A claimed file with corrupt records is renamed to
    ``<path>.corrupt-<stamp>-<n>`` instead, for inspection; its readable records were
    handled like the others; one that grew while it was read (an engine still had it open)
    is left as a claim. So a second replay does not resubmit what the first settled,
    and the journal stays bounded. A crash before the deletion leaves the claims, which
    the next consuming replay takes up (at worst resubmitting settled records, which the
    same engine absorbs as duplicates). Run one consuming replay per journal at a time.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from loguru import logger

from actors.cores._args import require_int, require_number
from actors.errors import EngineError
from actors.journal import HEADER_BYTES, DeadLetterJournal, JournalCorruptError, journal_files
from protocols import Accepted, InboundMessage, Rejected
from protocols.codec import MAX_FRAME_BYTES, decode
from protocols.errors import DecodeError

__all__ = [
    "RETRY_REASONS",
    "ReplayReport",
    "ReplayTarget",
    "ReplayTargetError",
    "replay_files",
    "replay_journal",
    "scan_journal",
]

RETRY_REASONS = frozenset({"capacity", "customer_backlog"})
"""Refusals that pass once the target has room: retried within ``timeout_s``."""

_DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # EngineConfig.dead_letter_max_bytes
_LIST_IDS = 5  # ids shown per reason in summary()


class ReplayTarget(Protocol):
    """What a replay submits to: ``Engine.submit_many``'s signature.

    A target may also have a ``retry_after_s: float | None`` attribute, read after each
    call: the least delay it asks for before its refusals are retried (HTTP Retry-After).
    """

    def submit_many(self, messages: Iterable[InboundMessage]) -> Sequence[Accepted | Rejected]:
        """One ``Accepted`` or ``Rejected`` per message, in order."""
        ...


class ReplayTargetError(EngineError):
    """Raised by a replay target that cannot answer (unreachable, an unexpected answer).

    :func:`replay_journal` catches it: the replay stops and keeps what is not settled.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayReport:
    """What a replay (or a scan) found and did; ``summary()`` renders it.

    Attributes:
        files: the files read, in order.
        read: valid records read.
        accepted, duplicate: records the target took now, or already had (settled).
        refused: reason -> ids still refused for lack of room (``capacity``,
            ``customer_backlog``) or because the target is ``shutting_down``.
        rejected: reason -> ids refused for another reason (``unknown_account``, ...).
        unsubmitted: ids read after the replay stopped.
        corrupt: complete records skipped because they do not decode.
        torn_bytes: bytes at a file's end that could not be framed.
        problems: one line per corrupt record or torn tail, naming file and offset.
        by_account: records read per account id.
        retries: resubmissions of refused messages; waited_s: seconds spent waiting.
        stopped: why the replay stopped early, or "".
        kept: unsettled records written back to the journal (consume).
        removed, quarantined: claimed files deleted, or kept for their corrupt records.
        seconds: the replay's duration; dry_run: a scan, nothing was submitted.
    """

    files: tuple[str, ...] = ()
    read: int = 0
    accepted: int = 0
    duplicate: int = 0
    refused: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rejected: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unsubmitted: tuple[str, ...] = ()
    corrupt: int = 0
    torn_bytes: int = 0
    problems: tuple[str, ...] = ()
    by_account: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    waited_s: float = 0.0
    stopped: str = ""
    kept: int = 0
    removed: tuple[str, ...] = ()
    quarantined: tuple[str, ...] = ()
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def settled(self) -> int:
        """Records the target now has: accepted plus duplicates."""
        return self.accepted + self.duplicate

    @property
    def unsettled_ids(self) -> tuple[str, ...]:
        """Every id read but not settled (refused, rejected, unsubmitted), in that order."""
        ids = [i for group in (self.refused, self.rejected) for v in group.values() for i in v]
        return (*ids, *self.unsubmitted)

    @property
    def complete(self) -> bool:
        """True when every record was read and settled (a scan: read without corruption)."""
        if self.dry_run:
            return self.corrupt == 0
        return self.corrupt == 0 and self.settled == self.read

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data (ids included)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data.update(settled=self.settled, complete=self.complete)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def summary(self) -> str:
        """A few lines for a person: counts, the first ids per reason, what was consumed."""
        files = ", ".join(self.files) or "no journal files"
        verb = "scanned" if self.dry_run else "replayed"
        lines = [f"{verb} {self.read} records from {len(self.files)} file(s): {files}"]
        if self.dry_run:
            accounts = ", ".join(f"{a} {n}" for a, n in sorted(self.by_account.items()))
            lines.append(f"  by account: {accounts or '-'}")
        else:
            lines.append(f"  accepted {self.accepted}, duplicate {self.duplicate}")
            for title, group in (
                ("refused (kept, not lost)", self.refused),
                ("rejected (kept)", self.rejected),
            ):
                for reason, ids in sorted(group.items()):
                    lines.append(f"  {title}: {reason} {len(ids)} {_show_ids(ids)}")
            if self.unsubmitted:
                lines.append(f"  unsubmitted {len(self.unsubmitted)} {_show_ids(self.unsubmitted)}")
            lines.append(
                f"  retries {self.retries}, waited {self.waited_s:.2f} s, "
                f"{self.seconds:.2f} s in all"
            )
        lines.append(f"  corrupt records skipped {self.corrupt}, torn bytes {self.torn_bytes}")
        lines += [f"    {p}" for p in self.problems[:20]]
        if self.stopped:
            lines.append(f"  stopped early: {self.stopped}")
        if self.removed or self.kept or self.quarantined:
            lines.append(
                f"  consumed: {len(self.removed)} files removed, {self.kept} unsettled records "
                f"written back, {len(self.quarantined)} quarantined"
                + "".join(f" {q}" for q in self.quarantined)
            )
        return "\n".join(lines)


def _show_ids(ids: Sequence[str]) -> str:
    more = f", ... {len(ids) - _LIST_IDS} more" if len(ids) > _LIST_IDS else ""
    return "[" + ", ".join(ids[:_LIST_IDS]) + more + "]"


class _Reader:
    """Reads journal files record by record, skipping corrupt ones and counting the damage."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame = max_frame_bytes
        self.read = self.corrupt = self.torn_bytes = 0
        self.problems: list[str] = []
        self.corrupt_files: set[str] = set()
        self.sizes: dict[str, int] = {}  # each file's size when it was read
        self.by_account: Counter[str] = Counter()

    def messages(self, files: Iterable[str]) -> Iterator[InboundMessage]:
        for name in files:
            yield from self._file(name)

    def _file(self, name: str) -> Iterator[InboundMessage]:
        try:
            handle = open(name, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            self.problems.append(f"{name!r} vanished before it was read")
            return
        with handle:
            size = self.sizes[name] = os.fstat(handle.fileno()).st_size
            offset = 0
            while offset < size:
                header = handle.read(HEADER_BYTES)
                if len(header) < HEADER_BYTES:
                    what = f"truncated record: {len(header)} of {HEADER_BYTES} length bytes"
                    self._torn(what, name, offset, size)
                    return
                length = int.from_bytes(header, "big")
                if not 1 <= length <= self.max_frame:
                    what = f"record length {length} is outside 1..{self.max_frame}"
                    self._torn(what, name, offset, size)
                    return
                frame = handle.read(length)
                if len(frame) < length:
                    self._torn(
                        f"truncated record: {len(frame)} of {length} frame bytes",
                        name,
                        offset,
                        size,
                    )
                    return
                msg = self._decode(frame, name, offset)
                offset += HEADER_BYTES + length
                if msg is not None:
                    self.read += 1
                    self.by_account[msg.account_id] += 1
                    yield msg

    def _decode(self, frame: bytes, name: str, offset: int) -> InboundMessage | None:
        try:
            msg = decode(frame, max_size=self.max_frame)
        except DecodeError as exc:
            error = JournalCorruptError(exc.problem, file=name, offset=offset, path=exc.path)
        else:
            if isinstance(msg, InboundMessage):
                return msg
            problem = f"Expected `InboundMessage`, got `{type(msg).__name__}`"
            error = JournalCorruptError(problem, file=name, offset=offset)
        self.corrupt += 1
        self.corrupt_files.add(name)
        self.problems.append(f"skipped: {error}")
        return None

    def _torn(self, what: str, name: str, offset: int, size: int) -> None:
        self.torn_bytes += size - offset
        error = JournalCorruptError(what, file=name, offset=offset)
        self.problems.append(f"not replayed ({size - offset} bytes to the end): {error}")


def replay_files(
    path: str | os.PathLike[str], *, include_rotated: bool = True, claims: bool = False
) -> list[str]:
    """The files a replay of ``path`` reads, in order.

    Args:
        path: the journal (``dead_letter_path``).
        include_rotated: read ``<path>.1`` before ``<path>``.
        claims: first the ``<path>.replaying-*`` files that an interrupted consuming
            replay left, oldest first.
    """
    name = os.fspath(path)
    current = journal_files(name) if include_rotated else [name]
    return (_claims(name) if claims else []) + [f for f in current if os.path.exists(f)]


def _claims(path: str) -> list[str]:
    return sorted(glob.glob(glob.escape(path) + ".replaying-*"))


def _claim(path: str, include_rotated: bool) -> list[str]:
    """Rename the journal files to ``<path>.replaying-<stamp>-<n>``; return every claim."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    for n, name in enumerate(journal_files(path) if include_rotated else [path]):
        # A fixed-width UTC stamp sorts claims by age; n keeps .1 before the current file.
        with contextlib.suppress(FileNotFoundError):
            os.replace(name, f"{path}.replaying-{stamp}-{n}")
    return _claims(path)


def scan_journal(
    path: str | os.PathLike[str],
    *,
    include_rotated: bool = True,
    claims: bool = False,
    max_frame_bytes: int = MAX_FRAME_BYTES,
) -> ReplayReport:
    """Read and validate the journal without submitting anything (a dry run)."""
    started = time.monotonic()
    files = replay_files(path, include_rotated=include_rotated, claims=claims)
    reader = _Reader(require_int("max_frame_bytes", max_frame_bytes, minimum=1))
    for _ in reader.messages(files):
        pass
    return ReplayReport(
        files=tuple(files),
        read=reader.read,
        corrupt=reader.corrupt,
        torn_bytes=reader.torn_bytes,
        problems=tuple(reader.problems),
        by_account=dict(reader.by_account),
        seconds=time.monotonic() - started,
        dry_run=True,
    )


class _Run:
    """Submits batches, retries refusals for lack of room, and sorts every answer."""

    def __init__(
        self,
        target: ReplayTarget,
        *,
        timeout_s: float,
        wait: Callable[[float], None],
        clock: Callable[[], float],
        backoff_min_s: float,
        backoff_max_s: float,
        keep: bool,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.wait = wait
        self.clock = clock
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.accepted = self.duplicate = self.retries = 0
        self.waited_s = 0.0
        self.refused: defaultdict[str, list[str]] = defaultdict(list)
        self.rejected: defaultdict[str, list[str]] = defaultdict(list)
        self.unsubmitted: list[str] = []
        self.kept: list[InboundMessage] | None = [] if keep else None
        self.stopped = ""
        self.log = logger.bind(actor="replay")

    def submit(self, batch: list[InboundMessage]) -> None:
        pending, delay = batch, self.backoff_min_s
        while pending and not self.stopped:
            try:
                results = list(self.target.submit_many(pending))
                if len(results) != len(pending):
                    raise ReplayTargetError(
                        f"the target answered {len(results)} results for {len(pending)} messages"
                    )
            except ReplayTargetError as exc:
                self._stop(str(exc))
                break
            retry: list[tuple[InboundMessage, str]] = []
            for msg, result in zip(pending, results, strict=True):
                if isinstance(result, Accepted):
                    self.accepted += 1
                elif result.reason == "duplicate":
                    self.duplicate += 1
                elif result.reason in RETRY_REASONS:
                    retry.append((msg, result.reason))
                elif result.reason == "shutting_down":
                    self._stop("the target is shutting down")
                    self._keep(self.refused[result.reason], msg)
                else:
                    self._keep(self.rejected[result.reason], msg)
            pending = [msg for msg, _ in retry]
            hint = getattr(self.target, "retry_after_s", None)
            pause = max(delay, float(hint) if isinstance(hint, int | float) else 0.0)
            if not retry or self.stopped or self.waited_s + pause > self.timeout_s:
                for msg, reason in retry:
                    self._keep(self.refused[reason], msg)
                return
            self._pause(pause)
            delay = min(delay * 2, self.backoff_max_s)
            self.retries += len(pending)
        for msg in pending if self.stopped else ():
            self._keep(self.unsubmitted, msg)

    def leave(self, batch: list[InboundMessage]) -> None:
        """Count a batch read after the replay stopped."""
        for msg in batch:
            self._keep(self.unsubmitted, msg)

    def _pause(self, seconds: float) -> None:
        # wait() may return early (an outcome arrived): call it again until the time passed.
        start = self.clock()
        until = start + seconds
        while (now := self.clock()) < until:
            self.wait(until - now)
        self.waited_s += self.clock() - start

    def _keep(self, ids: list[str], msg: InboundMessage) -> None:
        ids.append(msg.message_id)
        if self.kept is not None:
            self.kept.append(msg)

    def _stop(self, why: str) -> None:
        if not self.stopped:
            self.stopped = why
            self.log.warning("replay stopped: {}; the rest is kept", why)


def replay_journal(
    target: ReplayTarget,
    path: str | os.PathLike[str],
    *,
    batch: int = 200,
    include_rotated: bool = True,
    timeout_s: float = 30.0,
    consume: bool = False,
    wait: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    backoff_min_s: float = 0.05,
    backoff_max_s: float = 2.0,
    max_bytes: int = _DEFAULT_MAX_BYTES,
    max_frame_bytes: int = MAX_FRAME_BYTES,
) -> ReplayReport:
    """Resubmit the journal at ``path`` to ``target`` in batches; report every record.

    Args:
        target: an ``Engine`` (or anything with its ``submit_many``); calls are made from
            this thread.
        path: the journal (``dead_letter_path``); see the module doc for the files read.
        batch: messages per ``submit_many`` call.
        include_rotated: read ``<path>.1`` (first) as well.
        timeout_s: the most time spent waiting to retry ``capacity``/``customer_backlog``
            refusals, in all; a wait that would pass it is not started.
        consume: claim the files, write back what was not settled, delete the rest
            (see the module doc). Without it the files are left as they are.
        wait: spends a backoff delay; it must let up to that many seconds pass on
            ``clock``. The owner of an engine that nobody else collects from passes
            ``lambda s: done.extend(engine.outcomes(timeout=s))``, so that outcomes
            are collected (and ``max_uncollected_outcomes`` frees up) meanwhile.
        clock: monotonic seconds (tests pass a fake one with a matching ``wait``).
        backoff_min_s, backoff_max_s: the first retry delay, doubled up to the second.
        max_bytes, max_frame_bytes: the journal's limits (``dead_letter_max_bytes``,
            ``max_frame_bytes``), for reading and for the write-back.

    Returns:
        A :class:`ReplayReport`. Nothing refused is ever dropped: its id is in the report,
        and with ``consume`` the record is back in the journal.

    Raises:
        ValueError: an argument breaks its rule.
        OSError: a journal file could not be read, renamed or written; with ``consume``,
            the claimed files are then left in place for the next run.
    """
    batch = require_int("batch", batch, minimum=1)
    timeout_s = require_number("timeout_s", timeout_s, minimum=0)
    backoff_min_s = require_number("backoff_min_s", backoff_min_s, minimum=0, min_exclusive=True)
    backoff_max_s = require_number("backoff_max_s", backoff_max_s, minimum=backoff_min_s)
    reader = _Reader(require_int("max_frame_bytes", max_frame_bytes, minimum=1))
    name = os.fspath(path)
    started = clock()
    files = (
        _claim(name, include_rotated)
        if consume
        else replay_files(name, include_rotated=include_rotated)
    )
    run = _Run(
        target,
        timeout_s=timeout_s,
        wait=wait,
        clock=clock,
        backoff_min_s=backoff_min_s,
        backoff_max_s=backoff_max_s,
        keep=consume,
    )
    chunk: list[InboundMessage] = []
    for msg in reader.messages(files):
        chunk.append(msg)
        if len(chunk) == batch:
            (run.leave if run.stopped else run.submit)(chunk)
            chunk = []
    if chunk:
        (run.leave if run.stopped else run.submit)(chunk)
    kept, removed, quarantined = 0, list[str](), list[str]()
    if consume:
        assert run.kept is not None
        kept, removed, quarantined = _settle(name, files, run.kept, reader, max_bytes=max_bytes)
    report = ReplayReport(
        files=tuple(files),
        read=reader.read,
        accepted=run.accepted,
        duplicate=run.duplicate,
        refused={k: tuple(v) for k, v in run.refused.items()},
        rejected={k: tuple(v) for k, v in run.rejected.items()},
        unsubmitted=tuple(run.unsubmitted),
        corrupt=reader.corrupt,
        torn_bytes=reader.torn_bytes,
        problems=tuple(reader.problems),
        by_account=dict(reader.by_account),
        retries=run.retries,
        waited_s=run.waited_s,
        stopped=run.stopped,
        kept=kept,
        removed=tuple(removed),
        quarantined=tuple(quarantined),
        seconds=clock() - started,
    )
    run.log.info(
        "replayed {} records: {} accepted, {} duplicate, {} unsettled, {} corrupt",
        report.read,
        report.accepted,
        report.duplicate,
        len(report.unsettled_ids),
        report.corrupt,
    )
    return report


def _settle(
    path: str, files: list[str], kept: list[InboundMessage], reader: _Reader, *, max_bytes: int
) -> tuple[int, list[str], list[str]]:
    """Write back the unsettled records, then delete (or quarantine) the claimed files."""
    written = 0
    if kept:
        journal = DeadLetterJournal(path, max_bytes=max_bytes, max_frame_bytes=reader.max_frame)
        written = journal.append(kept)
        if journal.overflow:
            # The journal shed some (a record too big, a .1 replaced): the claims hold them all.
            reader.problems.append(
                f"writing {len(kept)} unsettled records back shed {journal.overflow}: "
                "the claimed files are kept for the next replay"
            )
            return written, [], []
    removed: list[str] = []
    quarantined: list[str] = []
    for name in files:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(name).st_size != reader.sizes.get(name):
                # An engine that had the file open wrote to it after the claim: keep it.
                reader.problems.append(f"{name!r} grew while replayed: left for the next run")
                continue
        if name in reader.corrupt_files:
            corrupt = path + name[len(path) :].replace(".replaying-", ".corrupt-", 1)
            os.replace(name, corrupt)
            quarantined.append(corrupt)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)
            removed.append(name)
    return written, removed, quarantined

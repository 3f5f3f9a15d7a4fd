"""The replay itself: submit in batches, retry refusals for lack of room, settle the claims.

One loop (:class:`_Run`) for every source: :func:`replay_journal` feeds it the journal's
records, :func:`replay_store` the intake store's unfinished rows.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from loguru import logger

from actors.cores._args import require_int, require_number
from actors.engine.journal import DeadLetterJournal
from apps.replay.reader import _claim, _Reader, _Tally, replay_files
from apps.replay.report import RETRY_REASONS, ReplayReport, ReplayTarget, ReplayTargetError
from apps.replay.store import StoreSource
from protocols import Accepted, InboundMessage
from protocols.codec import MAX_FRAME_BYTES

__all__ = ["replay_journal", "replay_store"]

_DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # EngineConfig.dead_letter_max_bytes


class _Run:
    """Submits batches, retries refusals for lack of room, and sorts every answer.

    Raises:
        ValueError: an argument breaks its rule (checked before anything is read).
    """

    def __init__(
        self,
        target: ReplayTarget,
        *,
        batch: int,
        timeout_s: float,
        wait: Callable[[float], None],
        clock: Callable[[], float],
        backoff_min_s: float,
        backoff_max_s: float,
        keep: bool,
    ) -> None:
        self.target = target
        self.batch = require_int("batch", batch, minimum=1)
        self.timeout_s = require_number("timeout_s", timeout_s, minimum=0)
        self.wait = wait
        self.clock = clock
        self.backoff_min_s = require_number(
            "backoff_min_s", backoff_min_s, minimum=0, min_exclusive=True
        )
        self.backoff_max_s = require_number(
            "backoff_max_s", backoff_max_s, minimum=self.backoff_min_s
        )
        self.started = clock()
        self.accepted = self.duplicate = self.retries = 0
        self.waited_s = 0.0
        self.refused: defaultdict[str, list[str]] = defaultdict(list)
        self.rejected: defaultdict[str, list[str]] = defaultdict(list)
        self.unsubmitted: list[str] = []
        self.kept: list[InboundMessage] | None = [] if keep else None
        self.stopped = ""
        self.log = logger.bind(actor="replay")

    def drive(self, messages: Iterable[InboundMessage]) -> None:
        """Submit ``messages`` in batches; once stopped, count the rest unsubmitted."""
        chunk: list[InboundMessage] = []
        for msg in messages:
            chunk.append(msg)
            if len(chunk) == self.batch:
                (self.leave if self.stopped else self.submit)(chunk)
                chunk = []
        if chunk:
            (self.leave if self.stopped else self.submit)(chunk)

    def report(self, source: _Tally, files: Iterable[str], **fields: Any) -> ReplayReport:
        """The report of this run over ``source`` (``fields``: what consuming did); logged."""
        report = source.report(
            files,
            accepted=self.accepted,
            duplicate=self.duplicate,
            refused={k: tuple(v) for k, v in self.refused.items()},
            rejected={k: tuple(v) for k, v in self.rejected.items()},
            unsubmitted=tuple(self.unsubmitted),
            retries=self.retries,
            waited_s=self.waited_s,
            stopped=self.stopped,
            seconds=self.clock() - self.started,
            **fields,
        )
        self.log.info(
            "replayed {} records from the {}: {} accepted, {} duplicate, {} unsettled, {} corrupt",
            report.read,
            report.source,
            report.accepted,
            report.duplicate,
            len(report.unsettled_ids),
            report.corrupt,
        )
        return report

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
        path: the journal (``dead_letter_path``); see :mod:`apps.replay` for the files read.
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
    run = _Run(
        target,
        batch=batch,
        timeout_s=timeout_s,
        wait=wait,
        clock=clock,
        backoff_min_s=backoff_min_s,
        backoff_max_s=backoff_max_s,
        keep=consume,
    )
    reader = _Reader(max_frame_bytes)
    max_bytes = require_int("max_bytes", max_bytes, minimum=1)
    name = os.fspath(path)
    files = (
        _claim(name, include_rotated)
        if consume
        else replay_files(name, include_rotated=include_rotated)
    )
    run.drive(reader.messages(files))
    if not consume:
        return run.report(reader, files)
    assert run.kept is not None
    kept, removed, quarantined = _settle(name, files, run.kept, reader, max_bytes=max_bytes)
    return run.report(
        reader, files, kept=kept, removed=tuple(removed), quarantined=tuple(quarantined)
    )


def replay_store(
    target: ReplayTarget,
    path: str | os.PathLike[str],
    *,
    batch: int = 200,
    timeout_s: float = 30.0,
    wait: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    backoff_min_s: float = 0.05,
    backoff_max_s: float = 2.0,
    max_frame_bytes: int = MAX_FRAME_BYTES,
) -> ReplayReport:
    """Submit the unfinished, unsent messages of the intake store at ``path`` to ``target``.

    The store is only read (see :mod:`apps.replay.store`): a store that a live engine
    holds is refused, rows marked sent are skipped (``sent_skipped``), corrupt rows are
    counted, and nothing is consumed: the rows stay unfinished in the store.

    Args:
        target, batch, timeout_s, wait, clock, backoff_min_s, backoff_max_s: as
            :func:`replay_journal`.
        path: the store's database file (``intake_path`` of the engine that wrote it).
        max_frame_bytes: the codec frame limit the store was written with.

    Returns:
        A :class:`ReplayReport` (``source == "store"``); every unsettled id is in it.

    Raises:
        ValueError: an argument breaks its rule.
        StoreLockedError: a live engine holds the store; nothing was read.
        StoreError: there is no store at ``path``, or it cannot be read, is not an intake
            store or is from a newer schema (names the path).
    """
    run = _Run(
        target,
        batch=batch,
        timeout_s=timeout_s,
        wait=wait,
        clock=clock,
        backoff_min_s=backoff_min_s,
        backoff_max_s=backoff_max_s,
        keep=False,
    )
    source = StoreSource(path, max_frame_bytes=max_frame_bytes)
    try:
        run.drive(source.messages())
    finally:
        source.close()
    return run.report(source, [source.path])


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

"""The facade's side of the intake store: screen submissions, record, recover, keep it bounded.

The ``Engine`` facade owns one :class:`IntakeKeeper` from ``start`` to the end of
``shutdown``. Per call:

- ``submit_many``: :meth:`IntakeKeeper.screen` refuses ids the store has seen
  (``duplicate``, across restarts, within the retention) and what does not fit
  (``capacity``, after deleting the oldest finished records early to make room); the rest
  goes to the router, and :meth:`IntakeKeeper.record` writes every ``Accepted`` one, with
  its deadline, in one transaction before ``submit_many`` returns.
- ``outcomes``: the outcomes are recorded (:meth:`IntakeKeeper.record`) before they are
  returned, and :meth:`IntakeKeeper.upkeep` prunes at most once a second, a bounded step.
- ``start``: :meth:`IntakeKeeper.recover` sorts the unfinished records: a reply the
  transport confirmed ends ``replied`` without a second send, one past its deadline ends
  ``timeout`` without a send, the rest waits for its account to be re-admitted.

A failed write is logged and counted, never raised: the messages are in the router
already, and refusing them now would leave them processed and unanswered. What is lost
is their durability alone (``intake.unrecorded`` counts them).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loguru import logger

from actors.config import EngineConfig
from actors.engine.intake import IntakeStore, Unfinished
from actors.errors import StoreError
from protocols import EncodeError, InboundMessage, Outcome, Reason, Rejected, Status

__all__ = ["COUNTERS", "HEADROOM_MAX", "UPKEEP_EVERY_S", "IntakeKeeper", "Recovered"]

UPKEEP_EVERY_S = 1.0
"""Seconds between two pruning steps (each one transaction of bounded size)."""

STEP_MIN, STEP_MAX = 1_000, 50_000
"""A pruning step deletes up to twice what was accepted since the last one, within these:
enough to keep up with the traffic, never a pause that grows with the store."""

HEADROOM_MAX = 10_000
"""The room upkeep keeps free (5 % of ``intake_max_records``, at most this) by deleting
the oldest finished records early, so that a submission rarely has to."""

COUNTERS = (
    "duplicates",  # ids the store had seen: rejected duplicate (within the retention)
    "refused_capacity",  # no room in the store: rejected capacity
    "recovered",  # unfinished at start, admitted again when their account was added
    "recovered_replied",  # unfinished at start, reply already sent: replied, not sent again
    "recovered_timeout",  # unfinished at start, past their deadline: timeout, nothing sent
    "unrecorded",  # accepted but not written (a store error): processed, not durable
    "outcomes_unrecorded",
    "errors",
)
"""The keeper's counters in ``Engine.stats()`` (``intake.<name>``), each present from the
start, beside the store's own (``IntakeStore.stats``)."""

_log = logger.bind(actor="engine")


@dataclass(frozen=True, slots=True)
class Recovered:
    """What :meth:`IntakeKeeper.recover` found unfinished at start.

    Attributes:
        outcomes: ended at once: ``replied`` (the transport had confirmed the reply; it
            is not sent again) and ``timeout`` (past its deadline; nothing is sent).
        waiting: the rest, to be admitted again with their original deadlines once their
            accounts are added.
    """

    outcomes: tuple[tuple[Unfinished, Outcome], ...]
    waiting: tuple[Unfinished, ...]


class IntakeKeeper:
    """The intake store as the facade uses it; see the module docstring.

    Args:
        store: the open store (closed by :meth:`close`).
        monotonic: the clock that spaces the pruning steps.
    """

    def __init__(
        self, store: IntakeStore, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self._monotonic = monotonic
        self._next_upkeep = monotonic() + UPKEEP_EVERY_S
        self._accepted_since_upkeep = 0
        self._headroom = min(HEADROOM_MAX, max(1, store.max_records // 20))
        self.counters: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self.closed = False

    @classmethod
    def open(cls, config: EngineConfig) -> IntakeKeeper:
        """Open the store ``config`` names (``durability = "off"``: in memory).

        Raises:
            StoreLockedError: another engine uses the store (names the path and its pid).
            StoreError: the store cannot be opened (names the path and why).
        """
        return cls(
            IntakeStore.open(
                os.path.abspath(config.intake_path),
                durability=config.durability,
                retention_s=config.intake_retention_s,
                max_records=config.intake_max_records,
                max_frame_bytes=config.max_frame_bytes,
            )
        )

    @property
    def durable(self) -> bool:
        """True when the store is a file: what is unfinished at shutdown resumes later."""
        return self.store.durability != "off"

    # --- submissions ----------------------------------------------------------------------

    def screen(self, batch: Sequence[InboundMessage]) -> list[Rejected | None]:
        """Refuse what the store has seen or has no room for; None: ask the router.

        Returns:
            One entry per message, in order.
        """
        store = self.store
        try:
            seen = store.seen(m.message_id for m in batch)
        except StoreError as exc:
            self._failed("look up ids in", exc)
            seen = set()
        answers: list[Rejected | None] = [None] * len(batch)
        fresh: dict[str, None] = {}
        for i, msg in enumerate(batch):
            if msg.message_id in seen:
                self.counters["duplicates"] += 1
                answers[i] = Rejected(
                    message_id=msg.message_id,
                    reason=Reason.DUPLICATE,
                    detail=f"message id seen before (the intake store keeps ids up to "
                    f"{_span(store.retention_s)})",
                )
            else:
                fresh[msg.message_id] = None
        if len(fresh) <= store.room():
            return answers
        try:
            store.make_room(len(fresh))
        except StoreError as exc:
            self._failed("make room in", exc)
        room = store.room()
        fits = set(list(fresh)[:room])
        stats = store.stats()
        detail = (
            f"the intake store is full (intake_max_records={store.max_records}: "
            f"{stats['records']} records, {stats['unfinished']} of them unfinished, room for "
            f"{room} of this batch)"
        )
        for i, msg in enumerate(batch):
            if answers[i] is None and msg.message_id not in fits:
                self.counters["refused_capacity"] += 1
                answers[i] = Rejected(
                    message_id=msg.message_id, reason=Reason.CAPACITY, detail=detail
                )
        return answers

    def record(
        self,
        accepted: Sequence[tuple[InboundMessage, float]] = (),
        outcomes: Sequence[Outcome] = (),
    ) -> None:
        """Record accepted messages (with deadlines) and outcomes in one transaction.

        A failure is logged and counted (``intake.unrecorded``), never raised: see the
        module docstring.
        """
        if self.closed or not (accepted or outcomes):
            return
        try:
            with self.store.batch():
                if accepted:
                    self.store.record_accepted(accepted)
                if outcomes:
                    self.store.record_outcomes(outcomes)
        except (StoreError, EncodeError) as exc:
            self.counters["unrecorded"] += len(accepted)
            self.counters["outcomes_unrecorded"] += len(outcomes)
            self._failed(
                f"record {len(accepted)} accepted messages and {len(outcomes)} outcomes in",
                exc,
                loud=bool(accepted),
            )
            return
        self._accepted_since_upkeep += len(accepted)

    def upkeep(self) -> None:
        """At most once per ``UPKEEP_EVERY_S``: one bounded pruning step (one transaction)."""
        now = self._monotonic()
        if self.closed or now < self._next_upkeep:
            return
        self._next_upkeep = now + UPKEEP_EVERY_S
        step = min(STEP_MAX, max(STEP_MIN, 2 * self._accepted_since_upkeep))
        self._accepted_since_upkeep = 0
        store = self.store
        try:
            with store.batch():
                store.prune(budget=step)
                if store.room() < self._headroom:
                    store.make_room(self._headroom, budget=step)
        except StoreError as exc:
            self._failed("prune", exc)

    # --- start and end --------------------------------------------------------------------

    def recover(self, now: float) -> Recovered:
        """Sort the unfinished records (module docstring); nothing is written here.

        Raises:
            StoreError: a stored message does not decode (names the path and the id).
        """
        ended: list[tuple[Unfinished, Outcome]] = []
        waiting: list[Unfinished] = []
        for row in self.store.unfinished():
            mid = row.message.message_id
            if row.sent_at is not None:
                self.counters["recovered_replied"] += 1
                outcome = Outcome(
                    message_id=mid,
                    status=Status.REPLIED,
                    reply=row.reply or "",
                    detail="recovered after a restart: the reply was sent before it, and not again",
                )
                ended.append((row, outcome))
            elif row.deadline <= now:
                self.counters["recovered_timeout"] += 1
                outcome = Outcome(
                    message_id=mid,
                    status=Status.TIMEOUT,
                    reason=Reason.TIMEOUT,
                    detail="recovered after a restart past its deadline; nothing was sent",
                )
                ended.append((row, outcome))
            else:
                self.counters["recovered"] += 1
                waiting.append(row)
        if ended or waiting:
            _log.warning(
                "intake store {}: recovered {} unfinished messages ({} replied before the "
                "restart, {} past their deadline, {} to admit again when their accounts "
                "are added)",
                self.store.path,
                len(ended) + len(waiting),
                self.counters["recovered_replied"],
                self.counters["recovered_timeout"],
                len(waiting),
            )
        return Recovered(outcomes=tuple(ended), waiting=tuple(waiting))

    def stats(self) -> dict[str, int]:
        """The store's counters and the keeper's, each prefixed ``intake.``."""
        out = dict(self.counters)
        if not self.closed:
            out.update(self.store.stats())
        return {f"intake.{k}": int(v) for k, v in out.items()}

    def close(self) -> None:
        """Close the store and release its lock (idempotent)."""
        self.closed = True
        self.store.close()

    def _failed(self, what: str, exc: Exception, *, loud: bool = False) -> None:
        self.counters["errors"] += 1
        if loud:
            _log.error(
                "cannot {} the intake store; the messages were accepted and are processed, "
                "but a crash before their outcome would lose them: {}",
                what,
                exc,
            )
        else:
            _log.error("cannot {} the intake store: {}", what, exc)


def _span(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:g} days"
    if seconds >= 3_600:
        return f"{seconds / 3_600:g} hours"
    return f"{seconds:g} s"

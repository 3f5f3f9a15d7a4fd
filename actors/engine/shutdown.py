"""The facade's half of ``shutdown()``: settle the ledger after the teardown, journal the rest.

The supervisor tears the actors down and reports its stages and the router's last
outcomes; whatever the ledger still holds after that is either

- *kept* (a durable intake store, ``durability`` ``fsync`` or ``os``): it stays
  unfinished in the store and resumes at the next start, where it gets its one outcome.
  It gets none now: an ``abandoned`` outcome followed by a ``replied`` one after the
  restart would be two. The ``ShutdownReport`` still lists it as abandoned; or
- *abandoned* (``durability = "off"``): one ``abandoned`` outcome each, as the contract
  says, and written to the dead-letter journal for a replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loguru import logger

from actors.config import EngineConfig
from actors.engine.journal import DeadLetterJournal
from actors.engine.ledger import Ledger
from actors.runtime.wiring import ShutdownDone
from protocols import InboundMessage, Outcome, ShutdownReport, StageReport, Status

__all__ = ["DeadLetters", "Settled", "settle"]

_log = logger.bind(actor="engine")


@dataclass(frozen=True, slots=True)
class Settled:
    """The ledger after the teardown.

    Attributes:
        stages: the supervisor's teardown stages (none if it did not report).
        outcomes: the outcomes to hand out: the router's last ones, then (unless kept)
            one ``abandoned``/``shutdown`` for each message the ledger still held.
        abandoned: the ids of every abandoned (or kept) message, the supervisor's first.
        unsent: the abandoned messages the ledger held, for the journal (none if kept).
        kept: how many messages were left unfinished in the intake store.
    """

    stages: tuple[StageReport, ...]
    outcomes: tuple[Outcome, ...]
    abandoned: tuple[str, ...]
    unsent: tuple[InboundMessage, ...]
    kept: int = 0

    def report(self, *, system_s: float, total_s: float) -> ShutdownReport:
        """The ``ShutdownReport``: these stages, then stopping the actor system (``system_s``)."""
        last = StageReport(name="actor_system", seconds=system_s, abandoned=0)
        return ShutdownReport(
            stages=(*self.stages, last), total_s=total_s, abandoned=self.abandoned
        )


def settle(done: object, ledger: Ledger, *, keep_unfinished: bool = False) -> Settled:
    """Resolve the router's last outcomes, then abandon (or keep) what is left in ``ledger``.

    Args:
        done: the supervisor's answer to the shutdown request (a ``ShutdownDone``, or
            whatever came instead: then there are no stages and no last outcomes).
        ledger: the facade's ledger; it holds nothing afterwards.
        keep_unfinished: the intake store keeps what is left (module docstring): the
            router's ``abandoned`` outcomes are dropped, the rest gets no outcome now.
    """
    messages = {m.message_id: m for m in ledger.unresolved(include_parked=True)}
    stages: tuple[StageReport, ...] = ()
    outcomes: list[Outcome] = []
    abandoned: list[str] = []
    if isinstance(done, ShutdownDone):
        stages = tuple(done.report.stages)
        last = done.outcomes
        if keep_unfinished:
            last = tuple(o for o in last if o.status != Status.ABANDONED)
        outcomes = [o for o in last if ledger.resolve(o)]
        abandoned = list(done.report.abandoned)
    else:
        _log.error("the supervisor did not report the teardown (got {!r})", done)
    if keep_unfinished:
        listed = set(abandoned)
        kept = ledger.keep_all()
        abandoned += [m.message_id for m in kept if m.message_id not in listed]
        return Settled(
            stages=stages,
            outcomes=tuple(outcomes),
            abandoned=tuple(abandoned),
            unsent=(),
            kept=len(kept),
        )
    for msg, outcome in ledger.abandon_all("shutdown"):
        outcomes.append(outcome)
        abandoned.append(msg.message_id)
    unsent = tuple(messages[i] for i in abandoned if i in messages)
    return Settled(
        stages=stages, outcomes=tuple(outcomes), abandoned=tuple(abandoned), unsent=unsent
    )


class DeadLetters:
    """The dead-letter journal, opened on first use: an engine that abandons nothing
    (or has no ``dead_letter_path``) writes no file.

    Args:
        config: gives ``dead_letter_path`` and the journal's size limits.
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.journal: DeadLetterJournal | None = None

    def write(self, messages: Sequence[InboundMessage]) -> int:
        """Append ``messages``; returns how many were written (the rest is counted shed)."""
        c = self.config
        if not messages or not c.dead_letter_path:
            return 0
        if self.journal is None:
            self.journal = DeadLetterJournal(
                c.dead_letter_path,
                max_bytes=c.dead_letter_max_bytes,
                max_frame_bytes=c.max_frame_bytes,
            )
        written = self.journal.append(list(messages))
        if written < len(messages):
            _log.error(
                "dead-letter journal shed {} messages (overflow {})",
                len(messages) - written,
                self.journal.overflow,
            )
        return written

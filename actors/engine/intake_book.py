"""The facade's books: every accepted message in memory (the ledger) and on disk (the store).

:class:`MessageBook` keeps the two in step for the ``Engine`` facade:

- a message is written to the intake store before the ledger takes it and before
  ``submit_many`` answers ``Accepted`` (:meth:`MessageBook.admit`);
- every outcome the ledger lets through (the first of its message) waits in the book
  until :meth:`MessageBook.record` writes it, which the facade calls before it returns
  outcomes, so that an outcome handed out is an outcome recorded;
- at ``start``, :meth:`MessageBook.open` recovers what the store holds unfinished: what is
  over ends at once (ready outcomes), the rest is *parked* in the ledger until
  :meth:`MessageBook.readmission` gives it back to the router when its account is added;
- at ``shutdown``, :meth:`MessageBook.settle` keeps what is left unfinished in a durable
  store (it resumes at the next start) or abandons and journals it (``durability = "off"``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from actors.config import EngineConfig
from actors.engine.intake_keeper import IntakeKeeper
from actors.engine.ledger import Ledger
from actors.engine.shutdown import Settled, settle
from protocols import (
    Accepted,
    InboundMessage,
    Outcome,
    Rejected,
    Status,
    SubmitBatch,
    SubmitResults,
)

__all__ = ["MessageBook"]

LEDGER_GRACE_S = 1.0
"""Seconds past a deadline before the ledger times a message out itself (its backstop)."""


class MessageBook:
    """The ledger, the intake store and the outcomes ready to hand out.

    Args:
        config: the engine's config (capacities, ``processing_timeout_s``, the store).
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.ledger = self._new_ledger(0)
        self.intake: IntakeKeeper | None = None
        self.ready: deque[Outcome] = deque()

    def _new_ledger(self, recovered: int) -> Ledger:
        c = self.config
        return Ledger(
            capacity=c.capacity + c.max_uncollected_outcomes + recovered, grace_s=LEDGER_GRACE_S
        )

    # --- start and end --------------------------------------------------------------------

    def open(self, now: float) -> None:
        """Open the intake store and recover what it holds unfinished (module docstring).

        Raises:
            StoreLockedError: another engine uses the store.
            StoreError: the store cannot be opened or read (names the path).
        """
        intake = IntakeKeeper.open(self.config)
        try:
            found = intake.recover(now)
        except BaseException:
            intake.close()
            raise
        self.intake = intake
        self.ledger = ledger = self._new_ledger(len(found.outcomes) + len(found.waiting))
        for row in found.waiting:
            ledger.accept(row.message, row.deadline, row.accepted_at, parked=True)
        for row, _ in found.outcomes:
            ledger.accept(row.message, row.deadline, row.accepted_at)
        # Recorded when handed out (``record(handed=...)``), like every outcome: a crash
        # before that recovers them again.
        self.ready.extend(self.resolve(outcome for _, outcome in found.outcomes))

    @property
    def durable(self) -> bool:
        """True when the store is a file: what is unfinished at shutdown resumes later."""
        return self.intake is not None and self.intake.durable

    def settle(self, done: object) -> Settled:
        """After the teardown: the router's last outcomes, then keep or abandon the rest.

        Every outcome is recorded and ready; see :func:`actors.engine.shutdown.settle`.
        """
        settled = settle(done, self.ledger, keep_unfinished=self.durable)
        self.ready.extend(settled.outcomes)
        self.record(handed=settled.outcomes)  # the store closes next: recorded now
        return settled

    def close(self) -> None:
        """Close the intake store (idempotent); nothing is recorded after this."""
        if self.intake is not None:
            self.intake.close()

    # --- messages -------------------------------------------------------------------------

    def screen(self, batch: Sequence[InboundMessage]) -> list[Rejected | None]:
        """The store's refusals (``duplicate``, ``capacity``); None: ask the router."""
        assert self.intake is not None, "the book is not open"
        return self.intake.screen(batch)

    def admit(
        self, asked: Sequence[InboundMessage], results: Iterable[Accepted | Rejected], now: float
    ) -> None:
        """Record the router's ``Accepted`` messages in the store (one commit), then in the
        ledger, each with its deadline."""
        by_id = {m.message_id: m for m in asked}
        accepted = [
            (by_id[r.message_id], r.deadline or now + self.config.processing_timeout_s)
            for r in results
            if isinstance(r, Accepted)
        ]
        self.record(accepted)  # before submit_many answers: before the gateway's 200
        for msg, deadline in accepted:
            self.ledger.accept(msg, deadline, now)

    def resolve(self, outcomes: Iterable[Outcome]) -> list[Outcome]:
        """The first outcome of each accepted message (the ledger drops the others)."""
        return [o for o in outcomes if self.ledger.resolve(o)]

    def expire(self, now: float) -> list[Outcome]:
        """Time out what no actor answered for by its deadline (the ledger's backstop)."""
        return self.ledger.expire(now)

    def record(
        self,
        accepted: Sequence[tuple[InboundMessage, float]] = (),
        handed: Sequence[Outcome] = (),
    ) -> None:
        """Write ``accepted`` and the outcomes ``handed`` to the caller now: one commit.

        An outcome is recorded when it is handed out, not when it is resolved: one that
        waits in :attr:`ready` (a late answer set aside, a recovered outcome) is still
        unfinished in the store, so a crash before it is handed out recovers it.
        """
        if self.intake is not None:
            self.intake.record(accepted, handed)

    def take_ready(self, max_items: int) -> list[Outcome]:
        n = min(max_items, len(self.ready))
        return [self.ready.popleft() for _ in range(n)]

    def upkeep(self) -> None:
        """A bounded pruning step of the store, at most once a second."""
        if self.intake is not None:
            self.intake.upkeep()

    # --- recovered messages ---------------------------------------------------------------

    def readmission(self, account_id: str) -> SubmitBatch | None:
        """The account's recovered messages, to admit again with their original deadlines."""
        waiting = self.ledger.unpark(account_id)
        if not waiting:
            return None
        return SubmitBatch(
            messages=tuple(m for m, _ in waiting),
            deadlines=tuple(d for _, d in waiting),
            readmit=True,
        )

    def readmitted(self, reply: SubmitResults) -> None:
        """What the router refused on re-admission ends ``rejected`` (recorded, ready)."""
        refused = [
            Outcome(
                message_id=r.message_id,
                status=Status.REJECTED,
                reason=r.reason,
                detail=f"refused on re-admission after a restart: {r.detail}",
            )
            for r in reply.results
            # "duplicate": a restarted router had them from the ledger already.
            if isinstance(r, Rejected) and r.reason != "duplicate"
        ]
        self.ready.extend(self.resolve(refused))

    # --- stats ----------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The store's and the keeper's counters (``intake.*``), and the parked messages."""
        out = self.intake.stats() if self.intake is not None else {}
        out["intake.parked"] = self.ledger.parked
        return out

"""The facade's record of accepted messages that have no outcome yet.

The ``Engine`` facade is the final arbiter of the contract "every ``Accepted`` message
ends in exactly one ``Outcome``": whatever the actors do (time out, crash, restart, send
an outcome twice), an outcome reaches the gateway only through :meth:`Ledger.resolve`,
:meth:`Ledger.expire` or :meth:`Ledger.abandon_all`, and each of them resolves a message
at most once.

Deadlines are kept in a heap with lazy deletion rather than in an insertion-ordered map:
they are non-decreasing within one router generation, but a restarted router (or a
re-admission of messages with their original deadlines) can interleave them, and a
mis-ordered map would let :meth:`Ledger.expire` stop early and miss an overdue message.
Resolved messages leave their heap entry behind; the heap is rebuilt when dead entries
outnumber live ones (plus a small slack), so it never holds more than
``2 * in_flight + COMPACT_SLACK`` entries and each call is O(log n) amortized.

A message recovered from the intake store at start is accepted *parked*: its account does
not exist yet (the embedding program adds accounts after ``start``). A parked message is
not re-admitted to a restarted router (:meth:`Ledger.pending` leaves it out) until
:meth:`Ledger.unpark` hands it over when its account is added; its deadline runs all the
same, so one whose account never comes back times out.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from actors.cores._args import require_int, require_number
from actors.errors import EngineError
from protocols.chat import InboundMessage, Outcome, Status

__all__ = ["COMPACT_SLACK", "MAX_OUTCOME_KEYS", "Ledger", "LedgerError"]

COMPACT_SLACK = 32
"""Dead heap entries tolerated beyond the live count before the heap is rebuilt.

Without it a ledger holding one message would rebuild its heap on every resolution.
"""

MAX_OUTCOME_KEYS = 256
"""Most distinct ``outcome.<status>.<reason>`` counter keys.

Transports may report ``api_error:<code>`` reasons, an open set; past this many keys a
new reason is counted under ``outcome.<status>.other`` so the counters stay bounded (at
most this plus one ``other`` key per status).
"""

TIMEOUT_DETAIL = "no outcome from the engine by the deadline"


class LedgerError(EngineError, RuntimeError):
    """Raised by :meth:`Ledger.accept` for a duplicate unresolved id or a full ledger.

    The router's caps (dedupe, concurrency, per-customer backlog, uncollected outcomes)
    make both impossible, so this is a bug in the engine, never an outcome to report.
    """


@dataclass(slots=True)
class _Entry:
    message: InboundMessage
    deadline: float
    accepted_at: float
    seq: int
    parked: bool = False


class Ledger:
    """Accepted messages without an outcome, their deadlines, and outcome counters.

    Args:
        capacity: the most messages accepted and unresolved at once; the facade passes
            ``max_concurrent_processing * (1 + max_pending_per_customer)
            + max_uncollected_outcomes``.
        grace_s: how long after its deadline a message waits for the router's own
            timeout outcome before :meth:`expire` times it out as a backstop.

    Raises:
        ValueError: ``capacity`` is not an int >= 1 or ``grace_s`` not a finite number >= 0.
    """

    __slots__ = (
        "_abandoned_total",
        "_accepted_total",
        "_capacity",
        "_entries",
        "_expired_total",
        "_grace_s",
        "_heap",
        "_kept_total",
        "_late_outcomes",
        "_outcomes",
        "_parked",
        "_peak_in_flight",
        "_resolved_total",
        "_seq",
    )

    def __init__(self, *, capacity: int, grace_s: float = 1.0) -> None:
        self._capacity = require_int("capacity", capacity, minimum=1)
        self._grace_s = require_number("grace_s", grace_s, minimum=0)
        # Insertion order is acceptance order: unresolved() and abandon_all() rely on it.
        self._entries: dict[str, _Entry] = {}
        # (deadline + grace, seq, message_id); an entry is live while _entries holds the
        # same seq for that id, so a re-accepted id never revives its old heap entry.
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._accepted_total = 0
        self._resolved_total = 0
        self._late_outcomes = 0
        self._expired_total = 0
        self._abandoned_total = 0
        self._kept_total = 0
        self._peak_in_flight = 0
        self._outcomes: dict[str, int] = {}
        self._parked: dict[str, list[str]] = {}  # account id -> parked ids (some resolved)

    # -- operations -----------------------------------------------------------------------

    def accept(
        self, message: InboundMessage, deadline: float, now: float, *, parked: bool = False
    ) -> None:
        """Record an accepted message that must end in exactly one outcome.

        Args:
            message: the message the router accepted.
            deadline: the ``Accepted.deadline`` (epoch seconds) the router gave it.
            now: the time of acceptance (epoch seconds), for :meth:`oldest_age`.
            parked: recovered, waiting for its account (module docstring).

        Raises:
            LedgerError: ``message.message_id`` is already unresolved here, or
                ``capacity`` messages are unresolved.
            ValueError: ``deadline`` or ``now`` is not a finite number.
        """
        deadline = require_number("deadline", deadline)
        now = require_number("now", now)
        message_id = message.message_id
        if message_id in self._entries:
            raise LedgerError(
                f"cannot accept message {message_id!r}: it is already accepted and unresolved"
            )
        if len(self._entries) >= self._capacity:
            raise LedgerError(
                f"cannot accept message {message_id!r}: ledger capacity ({self._capacity}) "
                "reached; the router's caps should have rejected it"
            )
        self._seq += 1
        self._entries[message_id] = _Entry(message, deadline, now, self._seq, parked)
        if parked:
            self._parked.setdefault(message.account_id, []).append(message_id)
        heapq.heappush(self._heap, (deadline + self._grace_s, self._seq, message_id))
        self._accepted_total += 1
        self._peak_in_flight = max(self._peak_in_flight, len(self._entries))

    def resolve(self, outcome: Outcome) -> bool:
        """Resolve a message with the outcome the engine reported for it.

        Returns:
            True when this is the first outcome of an accepted, unresolved message: pass
            it to the gateway. False for an unknown id or a second outcome (counted in
            :attr:`late_outcomes`): drop it.
        """
        if self._entries.pop(outcome.message_id, None) is None:
            self._late_outcomes += 1
            return False
        self._count(outcome)
        self._maybe_compact()
        return True

    def expire(self, now: float) -> list[Outcome]:
        """Time out every message whose ``deadline + grace_s <= now``, earliest first.

        The router normally reports a timeout itself; this is the backstop for a message
        whose outcome was lost with a crashed actor. Each returned outcome is
        ``Outcome(status="timeout", reason="timeout")`` and the message is resolved.

        Raises:
            ValueError: ``now`` is not a finite number.
        """
        now = require_number("now", now)
        heap = self._heap
        expired: list[Outcome] = []
        while heap and heap[0][0] <= now:
            _, seq, message_id = heapq.heappop(heap)
            entry = self._entries.get(message_id)
            if entry is None or entry.seq != seq:
                continue  # resolved already; its heap entry was dead
            del self._entries[message_id]
            outcome = Outcome(
                message_id=message_id,
                status=Status.TIMEOUT.value,
                reason="timeout",
                detail=TIMEOUT_DETAIL,
            )
            self._count(outcome)
            expired.append(outcome)
        self._expired_total += len(expired)
        self._maybe_compact()
        return expired

    def abandon_all(self, reason: str = "shutdown") -> list[tuple[InboundMessage, Outcome]]:
        """Resolve every unresolved message as ``abandoned``, in acceptance order.

        Returns:
            Each message with its ``Outcome(status="abandoned", reason=reason)``: the
            outcomes go to the gateway, the messages to the dead-letter journal.

        Raises:
            ValidationError: ``reason`` is not a reason slug (checked before anything
                is resolved).
        """
        # Build every outcome first so a bad reason leaves the ledger untouched.
        abandoned = [
            (entry.message, Outcome(message_id=mid, status=Status.ABANDONED.value, reason=reason))
            for mid, entry in self._entries.items()
        ]
        self._entries.clear()
        self._heap.clear()
        for _, outcome in abandoned:
            self._count(outcome)
        self._abandoned_total += len(abandoned)
        return abandoned

    def unpark(self, account_id: str) -> list[tuple[InboundMessage, float]]:
        """Hand over the account's parked messages, with their deadlines, to re-admit.

        Returns:
            The unresolved ones in acceptance order; from now on they are ordinary
            unresolved messages (:meth:`pending` includes them).
        """
        out: list[tuple[InboundMessage, float]] = []
        for message_id in self._parked.pop(account_id, ()):
            entry = self._entries.get(message_id)
            if entry is not None and entry.parked:
                entry.parked = False
                out.append((entry.message, entry.deadline))
        return out

    def keep_all(self) -> list[InboundMessage]:
        """Let go of every unresolved message without an outcome, in acceptance order.

        For a shutdown with a durable intake store: the messages stay unfinished there and
        resume at the next start, where they get their one outcome. Counted in
        ``kept_total``, not as outcomes.
        """
        kept = [entry.message for entry in self._entries.values()]
        self._entries.clear()
        self._heap.clear()
        self._parked.clear()
        self._kept_total += len(kept)
        return kept

    # -- queries --------------------------------------------------------------------------

    def next_wakeup(self) -> float | None:
        """When :meth:`expire` next has work (earliest ``deadline + grace_s``); None if empty."""
        heap = self._heap
        # Dropping dead entries from the top changes no observable state.
        while heap and self._is_dead(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def unresolved(self, *, include_parked: bool = False) -> list[InboundMessage]:
        """The unresolved messages in acceptance order (parked ones only if asked for)."""
        return [e.message for e in self._entries.values() if include_parked or not e.parked]

    def pending(self) -> list[tuple[InboundMessage, float]]:
        """The unresolved messages that are not parked, with their deadlines, in acceptance
        order: what a restarted router gets again, each with its original deadline."""
        return [(e.message, e.deadline) for e in self._entries.values() if not e.parked]

    @property
    def parked(self) -> int:
        """Recovered messages still waiting for their account."""
        return sum(1 for e in self._entries.values() if e.parked)

    def deadline_of(self, message_id: str) -> float | None:
        """The deadline of an unresolved message; None if it is unknown or resolved."""
        entry = self._entries.get(message_id)
        return None if entry is None else entry.deadline

    def oldest_age(self, now: float) -> float | None:
        """Seconds since the oldest unresolved message was accepted; None if none is."""
        for entry in self._entries.values():
            return max(0.0, now - entry.accepted_at)
        return None

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def capacity(self) -> int:
        """The most messages accepted and unresolved at once."""
        return self._capacity

    @property
    def grace_s(self) -> float:
        """Seconds past a deadline before :meth:`expire` times the message out."""
        return self._grace_s

    @property
    def in_flight(self) -> int:
        """Messages accepted and not resolved yet."""
        return len(self._entries)

    @property
    def accepted_total(self) -> int:
        """Messages accepted since construction."""
        return self._accepted_total

    @property
    def resolved_total(self) -> int:
        """Outcomes passed on (by resolve, expire and abandon_all) since construction.

        Always ``accepted_total - in_flight - kept_total``.
        """
        return self._resolved_total

    @property
    def kept_total(self) -> int:
        """Messages let go without an outcome by :meth:`keep_all`."""
        return self._kept_total

    @property
    def late_outcomes(self) -> int:
        """Outcomes dropped because their message was unknown or already resolved."""
        return self._late_outcomes

    @property
    def expired_total(self) -> int:
        """Messages timed out by :meth:`expire` (the backstop) since construction."""
        return self._expired_total

    @property
    def abandoned_total(self) -> int:
        """Messages resolved by :meth:`abandon_all` since construction."""
        return self._abandoned_total

    @property
    def peak_in_flight(self) -> int:
        """Highest :attr:`in_flight` seen since construction."""
        return self._peak_in_flight

    @property
    def heap_size(self) -> int:
        """Deadline heap entries, live and dead; at most ``2 * in_flight + COMPACT_SLACK``."""
        return len(self._heap)

    def counters(self) -> dict[str, int]:
        """Outcomes passed on, by status and reason, as a snapshot.

        Keys are ``outcome.<status>`` for ``replied`` and ``outcome.<status>.<reason>``
        otherwise: ``outcome.replied``, ``outcome.failed.no_provider``,
        ``outcome.timeout.timeout``, ``outcome.abandoned.shutdown``.
        """
        return dict(self._outcomes)

    def stats(self) -> dict[str, int | float]:
        """The scalar counters and sizes, for ``Engine.stats()``."""
        return {
            "in_flight": self.in_flight,
            "capacity": self._capacity,
            "peak_in_flight": self._peak_in_flight,
            "accepted_total": self._accepted_total,
            "resolved_total": self._resolved_total,
            "late_outcomes": self._late_outcomes,
            "expired_total": self._expired_total,
            "abandoned_total": self._abandoned_total,
            "kept_total": self._kept_total,
            "heap_size": len(self._heap),
        }

    # -- internals ------------------------------------------------------------------------

    def _is_dead(self, item: tuple[float, int, str]) -> bool:
        entry = self._entries.get(item[2])
        return entry is None or entry.seq != item[1]

    def _count(self, outcome: Outcome) -> None:
        self._resolved_total += 1
        key = f"outcome.{outcome.status}"
        if outcome.reason:
            key = f"{key}.{outcome.reason}"
        outcomes = self._outcomes
        if key not in outcomes and len(outcomes) >= MAX_OUTCOME_KEYS:
            key = f"outcome.{outcome.status}.other"
        outcomes[key] = outcomes.get(key, 0) + 1

    def _maybe_compact(self) -> None:
        live = len(self._entries)
        if len(self._heap) - live > live + COMPACT_SLACK:
            # O(live) after at least (live + slack) dead entries piled up: amortized O(1).
            self._heap = [item for item in self._heap if not self._is_dead(item)]
            heapq.heapify(self._heap)

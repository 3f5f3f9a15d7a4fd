"""Submissions arriving together leave together: the pure core behind ``AsyncEngine.submit_many``.

The engine records every accepted message durably before ``submit_many`` answers, and the
cost of a call (a router round trip, an intake commit: an fsync with ``durability =
"fsync"``) is per call, not per message. The engine's calls run one at a time on one
thread, so while one submission is in flight the ones that arrive meanwhile wait anyway:
:class:`Coalescer` joins them into the next call, a *flight*. A submission leaves at once
when nothing is in flight (no added latency when idle, no timer), and flights grow by
themselves under load.

Sans-IO, after h11: the core knows nothing of threads or event loops. It holds each
submission with an opaque *waiter* (the asyncio face uses a future), says which flight
leaves next, and splits a flight's answers back into one list per waiter, in order.

Bounds: a flight carries whole submissions up to ``max_flight_messages`` (one larger
submission flies alone, never split); at most ``max_waiting_messages`` messages wait
for a flight — past that :meth:`Coalescer.add` refuses, and the caller answers those
messages ``Rejected(capacity)`` (back-pressure, like the engine's own bounds).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from actors.cores._args import require_int
from actors.errors import EngineError
from protocols import Accepted, InboundMessage, Rejected

__all__ = ["MAX_FLIGHT_MESSAGES", "Coalescer", "Flight", "FlightStats", "refuse_waiting"]

MAX_FLIGHT_MESSAGES = 2_000
"""The most messages one flight carries by default (one larger submission flies alone)."""

W = TypeVar("W")
Result = Accepted | Rejected


@dataclass(frozen=True, slots=True)
class Flight(Generic[W]):
    """One engine call: the messages of whole submissions, in the order they arrived."""

    messages: tuple[InboundMessage, ...]
    parts: tuple[tuple[W, int], ...]
    """Each submission's waiter and how many of ``messages`` are its own, in order."""

    def split(self, results: Sequence[Result]) -> list[tuple[W, list[Result]]]:
        """Each waiter with its own messages' results, in order.

        Raises:
            EngineError: the engine answered a different number of results than messages.
        """
        if len(results) != len(self.messages):
            raise EngineError(
                f"submit_many answered {len(results)} results for {len(self.messages)} messages"
            )
        out: list[tuple[W, list[Result]]] = []
        start = 0
        for waiter, count in self.parts:
            out.append((waiter, list(results[start : start + count])))
            start += count
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FlightStats:
    """What the coalescer did: engine calls made, and how much they carried."""

    calls: int
    """Flights flown (engine ``submit_many`` calls)."""
    submissions: int
    """Submissions carried by those calls."""
    messages: int
    """Messages carried by those calls."""
    joined: int
    """Submissions that shared a call with an earlier one (``submissions - calls``)."""
    largest: int
    """Messages in the largest flight."""
    refused: int
    """Submissions refused because ``max_waiting_messages`` messages were waiting."""


class Coalescer(Generic[W]):
    """Joins concurrent submissions into one engine call per flight; at most one flies.

    Args:
        max_flight_messages: the most messages one flight carries (one larger submission
            flies alone).
        max_waiting_messages: the most messages waiting for a flight; :meth:`add` refuses
            a submission past it (a submission that finds nothing waiting is always taken).
    """

    def __init__(
        self, *, max_flight_messages: int = MAX_FLIGHT_MESSAGES, max_waiting_messages: int
    ) -> None:
        self.max_flight_messages = require_int(
            "max_flight_messages", max_flight_messages, minimum=1
        )
        self.max_waiting_messages = require_int(
            "max_waiting_messages", max_waiting_messages, minimum=1
        )
        self._waiting: deque[tuple[tuple[InboundMessage, ...], W]] = deque()
        self._waiting_messages = 0
        self._flying: Flight[W] | None = None
        self._calls = self._submissions = self._messages = self._largest = self._refused = 0

    def add(self, messages: Sequence[InboundMessage], waiter: W) -> bool:
        """Queue one submission; False (nothing queued) when too many messages wait.

        The submission leaves with the next :meth:`take` that finds room for it.
        """
        batch = tuple(messages)
        over = self._waiting_messages + len(batch) > self.max_waiting_messages
        if self._waiting and over:
            self._refused += 1
            return False
        self._waiting.append((batch, waiter))
        self._waiting_messages += len(batch)
        return True

    def withdraw(self, waiter: W) -> bool:
        """Take back a submission that has not flown yet (its caller gave up).

        Returns:
            True if it was waiting (it will never be sent); False if it had flown already.
        """
        for i, (batch, queued) in enumerate(self._waiting):
            if queued is waiter:
                del self._waiting[i]
                self._waiting_messages -= len(batch)
                return True
        return False

    def take(self) -> Flight[W] | None:
        """The flight to send now, or None while one is in flight or nothing waits.

        The caller sends it, then calls :meth:`landed` when the engine has answered.
        """
        if self._flying is not None or not self._waiting:
            return None
        messages: list[InboundMessage] = []
        parts: list[tuple[W, int]] = []
        while self._waiting:
            batch = self._waiting[0][0]
            if parts and len(messages) + len(batch) > self.max_flight_messages:
                break
            batch, waiter = self._waiting.popleft()
            self._waiting_messages -= len(batch)
            messages += batch
            parts.append((waiter, len(batch)))
        flight = Flight(messages=tuple(messages), parts=tuple(parts))
        self._flying = flight
        self._calls += 1
        self._submissions += len(parts)
        self._messages += len(messages)
        self._largest = max(self._largest, len(messages))
        return flight

    def landed(self, flight: Flight[W]) -> None:
        """The engine answered ``flight`` (results or an error): the next one may leave.

        Raises:
            EngineError: ``flight`` is not the one in flight (a bug in the caller).
        """
        if flight is not self._flying:
            raise EngineError("coalescer: a flight landed that was not in flight")
        self._flying = None

    @property
    def busy(self) -> bool:
        """A flight is in flight or submissions wait: the engine thread has work coming."""
        return self._flying is not None or bool(self._waiting)

    @property
    def waiting_messages(self) -> int:
        return self._waiting_messages

    @property
    def stats(self) -> FlightStats:
        return FlightStats(
            calls=self._calls,
            submissions=self._submissions,
            messages=self._messages,
            joined=self._submissions - self._calls,
            largest=self._largest,
            refused=self._refused,
        )


def refuse_waiting(messages: Sequence[InboundMessage], waiting: int, limit: int) -> list[Result]:
    """The answers to a submission :meth:`Coalescer.add` refused: ``capacity``, each."""
    detail = f"{waiting} messages wait to be submitted (max_waiting_messages={limit})"
    return [Rejected(message_id=m.message_id, reason="capacity", detail=detail) for m in messages]

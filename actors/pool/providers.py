"""AI providers as sans-IO objects: start a call, poll for the calls finished by ``now``.

The pool core drives every provider through the :class:`Provider` protocol and never
waits on one: ``start`` only records the call and ``poll(now)`` hands back what finished.
That is what lets one actor keep thousands of calls in flight without a thread or a
process per call. The embedded ``echo`` kind simulates latency with a heap of due times;
every kind registers a factory in :data:`actors.pool.kinds.PROVIDER_KINDS`.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from actors.cores._args import require_int, require_number
from actors.errors import EngineError
from protocols import MAX_TEXT_LEN, AIRequest, ProviderSpec

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "EchoProvider",
    "InFlightLimitError",
    "Provider",
    "ProviderClosedError",
    "ProviderFactory",
    "ProviderResult",
    "UnknownKindError",
    "check_can_start",
]

DEFAULT_MAX_IN_FLIGHT = 10_000
"""Calls one provider keeps in flight unless its factory is told otherwise."""


class InFlightLimitError(EngineError):
    """Raised by ``Provider.start`` when the provider already has ``max_in_flight`` calls.

    The pool core never lets this happen: it builds each provider with room for its whole
    capacity and skips a full provider. Seeing it means a caller bypassed the pool.
    """


class ProviderClosedError(EngineError):
    """Raised by ``Provider.start`` after ``close()``: you closed this provider."""


class UnknownKindError(ValueError):
    """Raised by :func:`~actors.pool.kinds.make_provider` for a kind with no registered factory."""


def check_can_start(
    name: str, message_id: str, *, closed: bool, calls: Collection[str], limit: int
) -> None:
    """The checks every provider makes before it starts a call.

    Raises:
        ProviderClosedError: the provider was closed.
        InFlightLimitError: ``limit`` calls are already in flight.
        ValueError: a call for ``message_id`` is already in flight.
    """
    if closed:
        raise ProviderClosedError(f"provider {name!r} is closed; cannot start {message_id!r}")
    if len(calls) >= limit:
        raise InFlightLimitError(
            f"provider {name!r}: in-flight limit ({limit}) reached; cannot start {message_id!r}"
        )
    if message_id in calls:
        raise ValueError(f"provider {name!r}: a call for {message_id!r} is already in flight")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderResult:
    """How one provider call ended.

    ``text`` is the reply when ``ok``; otherwise ``error`` is a short code
    (``provider_error``, ``rate_limited``, ...) and ``retry_after`` the seconds a 429 asked
    the caller to wait, if it said.

    Raises:
        ValueError: ``ok`` with an ``error``, not ``ok`` without one, or a ``retry_after``
            that is negative or not finite.
    """

    message_id: str
    ok: bool
    text: str = ""
    error: str = ""
    retry_after: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    detail: str = ""  # what went wrong, for the failure's detail (never a secret)

    def __post_init__(self) -> None:
        if self.ok == bool(self.error):
            state = "ok" if self.ok else "not ok"
            raise ValueError(f"result for {self.message_id!r} is {state} with error {self.error!r}")
        if self.retry_after is not None:
            where = f"result for {self.message_id!r}: retry_after"
            require_number(where, self.retry_after, minimum=0)


class Provider(Protocol):
    """One loaded AI provider, driven without I/O waits by the pool core.

    ``cancel`` forgets the call at once (its slot is free and its result is never
    returned), even when the underlying I/O cannot be stopped; a provider that cannot
    forget returns False and the pool counts the result as a late reply when it comes.
    """

    @property
    def name(self) -> str:
        """The ``ProviderSpec.name`` this provider was built from."""
        ...

    @property
    def in_flight(self) -> int:
        """Calls started and neither finished-and-polled nor cancelled."""
        ...

    @property
    def max_in_flight(self) -> int:
        """Most calls in flight at once; ``start`` beyond it raises ``InFlightLimitError``."""
        ...

    def start(self, request: AIRequest, now: float) -> None:
        """Begin one call for ``request``."""
        ...

    def poll(self, now: float) -> list[ProviderResult]:
        """Return the calls that finished by ``now`` (each exactly once)."""
        ...

    def next_due(self) -> float | None:
        """When the next call finishes, if the provider knows; None when none is in flight."""
        ...

    def cancel(self, message_id: str) -> bool:
        """Forget the call for ``message_id``; False when it was not in flight."""
        ...

    def close(self) -> None:
        """Forget every call and refuse new ones."""
        ...


class ProviderFactory(Protocol):
    """Builds a provider of one kind from its spec (``ValueError`` for bad options)."""

    def __call__(
        self, spec: ProviderSpec, rng: random.Random, *, max_in_flight: int = ...
    ) -> Provider: ...


@dataclass(slots=True)
class _Call:
    token: int  # which heap entry is live, so a cancelled-then-restarted id is not confused
    result: ProviderResult


class EchoProvider:
    """The embedded ``echo`` kind: replies ``echo: <text>`` after ``latency_s``.

    Options: ``latency_s`` (float >= 0, default 0.0), ``jitter_s`` (a uniform random extra
    latency up to it, default 0.0) and ``failure_rate`` (0..1, default
    0.0; each call fails with ``provider_error`` with that probability, drawn from ``rng``
    when the call starts). With latency 0 a call is ready at ``poll`` with the same ``now``.

    Args:
        spec: the provider's spec; ``spec.kind`` is not checked here.
        rng: source of failures; inject a seeded ``random.Random`` for reproducible runs.
        max_in_flight: most calls in flight at once.

    Raises:
        ValueError: an unknown option, or an option value outside its rule; the message
            names the provider, the option, the rule and the value.
    """

    __slots__ = (
        "_calls",
        "_closed",
        "_due",
        "_failure_rate",
        "_jitter_s",
        "_latency_s",
        "_max",
        "_rng",
        "_token",
        "name",
    )

    OPTIONS = ("failure_rate", "jitter_s", "latency_s")

    def __init__(
        self,
        spec: ProviderSpec,
        rng: random.Random,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self.name = spec.name
        for key in spec.options:
            if key not in self.OPTIONS:
                raise ValueError(
                    f"provider {spec.name!r}: unknown option {key!r} = {spec.options[key]!r} "
                    f"for kind 'echo' (known: {', '.join(self.OPTIONS)})"
                )
        where = f"provider {spec.name!r}: option"
        self._latency_s = require_number(
            f"{where} 'latency_s'", spec.options.get("latency_s", 0.0), minimum=0
        )
        self._jitter_s = require_number(
            f"{where} 'jitter_s'", spec.options.get("jitter_s", 0.0), minimum=0
        )
        self._failure_rate = require_number(
            f"{where} 'failure_rate'", spec.options.get("failure_rate", 0.0), minimum=0, maximum=1
        )
        self._max = require_int("max_in_flight", max_in_flight, minimum=1)
        self._rng = rng
        self._calls: dict[str, _Call] = {}
        self._due: list[tuple[float, int, str]] = []  # (due, token, message_id); lazy deletes
        self._token = 0
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Calls started and not yet returned by ``poll`` nor cancelled."""
        return len(self._calls)

    @property
    def max_in_flight(self) -> int:
        """Most calls in flight at once."""
        return self._max

    def start(self, request: AIRequest, now: float) -> None:
        """Begin the call; its result is ready at ``now + latency_s``.

        Raises:
            InFlightLimitError: ``max_in_flight`` calls are already in flight.
            ProviderClosedError: the provider was closed.
            ValueError: a call for ``request.message_id`` is already in flight.
        """
        mid = request.message_id
        check_can_start(self.name, mid, closed=self._closed, calls=self._calls, limit=self._max)
        if self._failure_rate > 0 and self._rng.random() < self._failure_rate:
            result = ProviderResult(message_id=mid, ok=False, error="provider_error")
        else:
            reply = f"echo: {request.text}"[:MAX_TEXT_LEN]
            result = ProviderResult(
                message_id=mid,
                ok=True,
                text=reply,
                prompt_tokens=len(request.text.split()),
                completion_tokens=len(reply.split()),
            )
        self._token += 1
        self._calls[mid] = _Call(self._token, result)
        jitter = self._rng.uniform(0.0, self._jitter_s) if self._jitter_s > 0 else 0.0
        heapq.heappush(self._due, (now + self._latency_s + jitter, self._token, mid))

    def poll(self, now: float) -> list[ProviderResult]:
        """Return every call due by ``now``, earliest first."""
        done: list[ProviderResult] = []
        due, calls = self._due, self._calls
        while due and due[0][0] <= now:
            _, token, mid = heapq.heappop(due)
            call = calls.get(mid)
            if call is not None and call.token == token:
                del calls[mid]
                done.append(call.result)
        return done

    def next_due(self) -> float | None:
        """The due time of the earliest call in flight, or None."""
        self._drop_stale_head()
        return self._due[0][0] if self._due else None

    def cancel(self, message_id: str) -> bool:
        """Forget the call for ``message_id``; False when none is in flight."""
        if self._calls.pop(message_id, None) is None:
            return False
        # Cancelled entries stay in the heap until popped; rebuild when they dominate so
        # the heap stays O(in_flight).
        if len(self._due) > 2 * len(self._calls) + 64:
            self._due = [e for e in self._due if self._live(e)]
            heapq.heapify(self._due)
        return True

    def close(self) -> None:
        """Forget every call; ``start`` raises ``ProviderClosedError`` from now on."""
        self._closed = True
        self._calls.clear()
        self._due.clear()

    def _live(self, entry: tuple[float, int, str]) -> bool:
        call = self._calls.get(entry[2])
        return call is not None and call.token == entry[1]

    def _drop_stale_head(self) -> None:
        due = self._due
        while due and not self._live(due[0]):
            heapq.heappop(due)

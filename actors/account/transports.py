"""Sans-IO transports: how an account hands a reply to WhatsApp, and the ``loopback`` kind.

A transport is driven like the cores: :meth:`Transport.start` begins a send at ``now``,
:meth:`Transport.poll` returns the sends that finished by ``now``, and
:meth:`Transport.next_due` says when to poll again. It never blocks and never reads a clock,
so one account keeps many sends in flight while its actor goes on handling messages.

``loopback`` is the embedded default: a simulated WhatsApp number that "sends" after a fixed
latency, fails at a configured rate, and keeps a bounded record of what it sent, so the
engine runs and is tested with no network. Every kind (``loopback``, ``cloud_api``) is
registered in :data:`actors.account.kinds.TRANSPORTS`.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from actors.cores._args import require_int, require_number
from actors.runtime.wiring import crosses_processes
from protocols import OutboundReply, Reason, Scalar

__all__ = [
    "LoopbackTransport",
    "SendResult",
    "SentRecord",
    "Transport",
    "TransportCrash",
    "TransportFactory",
]


# The name is the engine's contract (the supervisor tests use it), hence no Error suffix.
class TransportCrash(RuntimeError):  # noqa: N818
    """Raised by :meth:`LoopbackTransport.start` when a reply's text holds ``crash_text``.

    Fault injection: it stands for a bug in a transport that crashes the account actor's
    handler, so the supervisor's restart path can be tested on purpose.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """How one send ended.

    Attributes:
        message_id: the ``OutboundReply.message_id`` the send was for.
        ok: True when WhatsApp accepted the message.
        reason: when not ok, a reason code (``transport_error``, ``api_error:<code>``).
        detail: a human-readable explanation; never a secret.
        retry_after: when not ok, seconds after which the same send may succeed (e.g. a
            pair-rate error), or None when retrying is not expected to help.
        wamid: when ok, the id WhatsApp gave the message, if the transport learned one.
        maybe_sent: when not ok, the message may have reached WhatsApp all the same (no
            answer, or one cut short): it still counts against the recipient's allowance.
            False: WhatsApp refused it (or it never left), and the core gives the
            allowance it took back.
    """

    message_id: str
    ok: bool
    reason: str = ""
    detail: str = ""
    retry_after: float | None = None
    wamid: str = ""
    maybe_sent: bool = False


@crosses_processes
@dataclass(frozen=True, slots=True, kw_only=True)
class SentRecord:
    """One message the loopback transport "delivered": to whom, what, and when."""

    customer_id: str
    message_id: str
    text: str
    at: float


class Transport(Protocol):
    """What an account core needs from a transport; every method returns at once.

    The core guarantees that a ``message_id`` is in flight at most once at a time.
    """

    def start(self, reply: OutboundReply, now: float) -> None:
        """Begin sending ``reply`` at ``now``; its result comes from a later :meth:`poll`.

        Raises:
            TransportCrash: (loopback) fault injection; other kinds may raise on bugs.
        """

    def poll(self, now: float) -> list[SendResult]:
        """Return the results of the sends that finished by ``now``, each exactly once."""

    def next_due(self) -> float | None:
        """Return the earliest time a send may finish, or None when none is in flight."""

    def cancel(self, message_id: str) -> bool:
        """Abandon the send of ``message_id``; return whether it was in flight."""

    def close(self) -> None:
        """Abandon every send in flight and release resources; later polls return nothing."""

    @property
    def in_flight(self) -> int:
        """Sends started and not yet returned by :meth:`poll` or cancelled."""


TransportFactory = Callable[[str, Mapping[str, Scalar], random.Random], Transport]
"""``(account_id, options, rng) -> Transport``; raises ValueError for bad options."""


class _Send:
    """A loopback send in flight; ``seq`` tells its heap entry from a stale one."""

    __slots__ = ("ok", "reply", "seq")

    def __init__(self, reply: OutboundReply, ok: bool, seq: int) -> None:
        self.reply = reply
        self.ok = ok
        self.seq = seq


_LOOPBACK_KEYS = ("crash_text", "failure_rate", "latency_s", "record_limit")


class LoopbackTransport:
    """A simulated WhatsApp number: sends finish ``latency_s`` after they start.

    Sends wait in a heap keyed by completion time, so thousands in flight cost one heap
    entry each and a poll costs O(log n) per finished send.

    Args:
        account_id: the account this number belongs to (named in errors).
        options: ``latency_s`` (float >= 0, default 0.0), ``failure_rate`` (0..1, default
            0.0; drawn from ``rng`` at start), ``record_limit`` (int >= 0, default 1000:
            sent messages remembered), ``crash_text`` (str, default "": a reply whose text
            contains it makes :meth:`start` raise :class:`TransportCrash`).
        rng: the source of simulated failures, injected for reproducible runs.

    Raises:
        ValueError: an unknown option or a bad value, naming the account, key, value and
            rule, e.g. ``account 'a-1': loopback option latency_s must be a finite number
            >= 0, got -1``.
    """

    __slots__ = (
        "_account_id",
        "_closed",
        "_crash_text",
        "_failed_total",
        "_failure_rate",
        "_heap",
        "_in_flight",
        "_latency_s",
        "_records",
        "_rng",
        "_sent_total",
        "_seq",
    )

    kind = "loopback"

    def __init__(self, account_id: str, options: Mapping[str, Scalar], rng: random.Random) -> None:
        unknown = sorted(set(options) - set(_LOOPBACK_KEYS))
        if unknown:
            raise ValueError(
                f"account {account_id!r}: unknown loopback option {unknown[0]!r} "
                f"(known: {', '.join(_LOOPBACK_KEYS)})"
            )
        where = f"account {account_id!r}: loopback option"
        self._latency_s = require_number(
            f"{where} latency_s", options.get("latency_s", 0.0), minimum=0
        )
        self._failure_rate = require_number(
            f"{where} failure_rate", options.get("failure_rate", 0.0), minimum=0, maximum=1
        )
        record_limit = require_int(
            f"{where} record_limit", options.get("record_limit", 1000), minimum=0
        )
        crash_text = options.get("crash_text", "")
        if not isinstance(crash_text, str):
            raise ValueError(f"{where} crash_text must be a str, got {crash_text!r}")
        self._crash_text = crash_text
        self._account_id = account_id
        self._rng = rng
        self._records: deque[SentRecord] = deque(maxlen=record_limit)
        self._in_flight: dict[str, _Send] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._sent_total = 0
        self._failed_total = 0
        self._closed = False

    # -- the Transport interface ---------------------------------------------------------

    def start(self, reply: OutboundReply, now: float) -> None:
        """Begin sending ``reply``; it finishes at ``now + latency_s``.

        Raises:
            TransportCrash: ``crash_text`` is set and occurs in ``reply.text``.
            ValueError: ``reply.message_id`` is already in flight (a caller bug).
            RuntimeError: the transport was closed.
        """
        if self._closed:
            raise RuntimeError(f"account {self._account_id!r}: loopback transport is closed")
        if self._crash_text and self._crash_text in reply.text:
            raise TransportCrash(
                f"account {self._account_id!r}: reply {reply.message_id!r} contains "
                f"crash_text {self._crash_text!r} (fault injection)"
            )
        if reply.message_id in self._in_flight:
            raise ValueError(
                f"account {self._account_id!r}: message {reply.message_id!r} is already in flight"
            )
        # Drawing only when failures are configured keeps the rng untouched otherwise.
        ok = not (self._failure_rate > 0 and self._rng.random() < self._failure_rate)
        self._seq += 1
        self._in_flight[reply.message_id] = _Send(reply, ok, self._seq)
        heapq.heappush(self._heap, (now + self._latency_s, self._seq, reply.message_id))

    def poll(self, now: float) -> list[SendResult]:
        """Return the sends due by ``now``, in completion order (start order on ties)."""
        heap = self._heap
        results: list[SendResult] = []
        while heap and heap[0][0] <= now:
            due, seq, message_id = heapq.heappop(heap)
            send = self._in_flight.get(message_id)
            if send is None or send.seq != seq:
                continue  # cancelled
            del self._in_flight[message_id]
            if send.ok:
                self._sent_total += 1
                reply = send.reply
                self._records.append(
                    SentRecord(
                        customer_id=reply.customer_id,
                        message_id=message_id,
                        text=reply.text,
                        at=due,
                    )
                )
                results.append(SendResult(message_id=message_id, ok=True))
            else:
                self._failed_total += 1
                results.append(
                    SendResult(
                        message_id=message_id,
                        ok=False,
                        reason=Reason.TRANSPORT_ERROR.value,
                        detail=f"loopback: simulated failure (failure_rate={self._failure_rate})",
                    )
                )
        return results

    def next_due(self) -> float | None:
        """Return when the earliest send in flight finishes, or None when none is."""
        heap = self._heap
        while heap and self._stale(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def cancel(self, message_id: str) -> bool:
        """Abandon the send of ``message_id``; return whether it was in flight."""
        if self._in_flight.pop(message_id, None) is None:
            return False
        # Cancelled entries are skipped lazily; rebuild once they outnumber live ones so
        # the heap stays O(in_flight) whatever the cancel pattern.
        if len(self._heap) > 2 * len(self._in_flight) + 64:
            self._heap = [entry for entry in self._heap if not self._stale(entry)]
            heapq.heapify(self._heap)
        return True

    def close(self) -> None:
        """Abandon every send in flight; :meth:`start` raises afterwards. Idempotent."""
        self._closed = True
        self._in_flight.clear()
        self._heap.clear()

    @property
    def in_flight(self) -> int:
        """Sends started and not yet polled or cancelled."""
        return len(self._in_flight)

    # -- what the simulated number did ---------------------------------------------------

    def sent(self) -> tuple[SentRecord, ...]:
        """The most recent ``record_limit`` messages delivered, oldest first."""
        return tuple(self._records)

    @property
    def sent_total(self) -> int:
        """Messages delivered since construction, including those no longer recorded."""
        return self._sent_total

    @property
    def failed_total(self) -> int:
        """Sends that ended in a simulated failure since construction."""
        return self._failed_total

    @property
    def record_limit(self) -> int:
        """The most delivered messages remembered by :meth:`sent`."""
        maxlen = self._records.maxlen
        assert maxlen is not None  # always built with one
        return maxlen

    def _stale(self, entry: tuple[float, int, str]) -> bool:
        send = self._in_flight.get(entry[2])
        return send is None or send.seq != entry[1]

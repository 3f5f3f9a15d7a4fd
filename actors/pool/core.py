"""The AI provider pool's pure core: choose, call, fail over, wait or fail, within a deadline.

Pure core of the AI pool actor (seed: ``AIService``). Each request is served by the
best-ranked provider it has not tried yet (``ProviderSelector``: priority, UTC-daily quota,
cooldown). A failed call fails over to the next provider within the request's one
deadline; no provider is tried twice for one message. When every untried provider is
cooling down or over quota, the request waits for the first to free up if that happens
before its deadline. LiteLLM fails such a request at once (its "no deployments available"
complaint); a chat reply is worth the wait when the deadline allows.

Calls are sans-IO (:mod:`actors.pool.providers`): ``submit`` starts them, ``poll(now)``
collects what finished, and ``next_wakeup()`` says when to poll next, so thousands of
calls are in flight without a thread each. Per request the cost is O(log n) heap work plus
O(max_providers) per choice, and max_providers is a small constant (seed 50).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable

from actors.cores._args import require_int
from actors.cores.selector import Chosen, ProviderSelector, ProviderState
from actors.pool._parking import ParkingLot, Pending
from actors.pool.kinds import make_provider
from actors.pool.providers import Provider, ProviderFactory, ProviderResult
from actors.pool.roster import LoadReport, ProviderRoster, Refused
from protocols import (
    MAX_TEXT_LEN,
    AIFailure,
    AIReply,
    AIRequest,
    CommandResult,
    ProviderSpec,
    Reason,
)

# LoadReport and Refused are what load() returns; re-exported so callers need one import.
__all__ = ["LoadReport", "PoolCore", "PoolResult", "Refused"]

PoolResult = AIReply | AIFailure
"""What the pool answers for one request."""

_COUNTERS = (
    "calls",  # provider calls started
    "replies",  # AIReply results
    "failures",  # AIFailure results, whatever the reason
    "failovers",  # calls started on another provider after a failed call
    "call_errors",  # provider calls that failed (each may be failed over)
    "provider_errors",  # AIFailure provider_error: every provider tried failed
    "no_provider",  # AIFailure no_provider
    "timeouts",  # AIFailure timeout
    "over_capacity",  # AIFailure capacity
    "late_replies",  # provider results for requests no longer pending, dropped
    "duplicates",  # submissions of a message_id already pending, ignored
    "cancelled",  # pending requests the caller cancelled
    "parks",  # times a request started waiting for a provider to free up
)


def _clip(text: str) -> str:
    return text[:MAX_TEXT_LEN]


class PoolCore:
    """Serves ``AIRequest``s from at most ``max_providers`` providers, within each deadline.

    Args:
        max_providers: most providers loaded at once (seed ``MAX_PROVIDERS = 50``).
        cooldown_s: how long a failing provider is skipped (config ``provider_cooldown_s``).
        allowed_fails: consecutive failures before a cooldown (``provider_allowed_fails``).
        capacity: most requests pending (in flight or waiting); the next one fails with
            ``capacity``. Each provider is built with room for ``capacity`` calls.
        rng: passed to every provider factory (the echo kind draws failures from it).
        provider_factory: builds a provider from its spec; default :func:`make_provider`.

    Raises:
        ValueError: a bound is not of the documented type or range.
    """

    def __init__(
        self,
        *,
        max_providers: int,
        cooldown_s: float,
        allowed_fails: int,
        capacity: int,
        rng: random.Random,
        provider_factory: ProviderFactory = make_provider,
    ) -> None:
        self._selector: ProviderSelector[ProviderSpec] = ProviderSelector(
            max_providers=max_providers, cooldown_s=cooldown_s, allowed_fails=allowed_fails
        )
        self._capacity = require_int("capacity", capacity, minimum=1)
        self._rng = rng
        self._factory = provider_factory
        self._roster = ProviderRoster(self._selector, self._build)
        self._pending: dict[str, Pending] = {}
        self._deadlines: list[tuple[float, int, str]] = []  # lazy deletes, compacted
        self._parked = ParkingLot(self._pending)  # shares _pending: clear it, never rebind it
        self._recheck_at: float | None = None  # a provider was added: retry parked ones
        self._token = 0
        self._closed = False
        self._n = dict.fromkeys(_COUNTERS, 0)
        # A failover chain advances one provider per round, parked ones retry in the first.
        self._max_rounds = 2 * max_providers + 2

    # -- views ---------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Most requests pending at once."""
        return self._capacity

    @property
    def pending(self) -> int:
        """Requests in flight or waiting for a provider."""
        return len(self._pending)

    @property
    def loaded(self) -> tuple[str, ...]:
        """Loaded provider names, best rank first."""
        return self._selector.names

    @property
    def left_out(self) -> tuple[str, ...]:
        """Active providers the provider limit keeps out (by the last load or add)."""
        return self._roster.left_out

    def providers(self, now: float | None = None) -> tuple[ProviderState, ...]:
        """Per-provider stats, best rank first (see ``ProviderSelector.snapshot``)."""
        return self._selector.snapshot(now)

    def provider_stats(self) -> dict[str, dict[str, int | float]]:
        """Each loaded provider's own counters (HTTP kinds: calls, tokens, errors...)."""
        out: dict[str, dict[str, int | float]] = {}
        for state in self._selector.snapshot():
            stats = getattr(self._roster.provider(state.name), "stats", None)
            if callable(stats):
                out[state.name] = dict(stats())
        return out

    def stats(self) -> dict[str, int | float]:
        """Counters since construction, plus the current gauges."""
        return {
            **self._n,
            "parked": len(self._parked),
            "pending": len(self._pending),
            "capacity": self._capacity,
            "max_providers": self._selector.max_providers,
            "providers_loaded": len(self._selector),
            "providers_left_out": len(self._roster.left_out),
            "providers_draining": self._roster.draining,
            "cooldowns": self._selector.cooldowns_started,
        }

    # -- providers -----------------------------------------------------------------------

    def add_provider(self, spec: ProviderSpec, now: float) -> CommandResult:
        """Load ``spec`` or replace the provider of that name (see ``ProviderRoster.add``)."""
        result = self._roster.add(spec)
        if result.ok:
            self._wake_parked(now)
        return result

    def remove_provider(self, name: str, now: float) -> CommandResult:
        """Unload ``name``; its calls in flight still finish (``ProviderRoster.remove``)."""
        return self._roster.remove(name)

    def load(self, specs: Iterable[ProviderSpec], now: float) -> LoadReport:
        """Replace the pool with the best loadable specs (see ``ProviderRoster.load``)."""
        report = self._roster.load(specs)
        self._wake_parked(now)
        return report

    # -- requests ------------------------------------------------------------------------

    def submit(self, requests: Iterable[AIRequest], now: float) -> list[PoolResult]:
        """Start each request on a provider; return the results known at once.

        A request gets an immediate ``AIFailure`` when its deadline has passed
        (``timeout``), ``capacity`` requests are already pending (``capacity``), no provider
        can serve it before its deadline (``no_provider``), or the pool is closed
        (``shutting_down``). A ``message_id`` already pending is ignored and counted in
        ``duplicates``. Everything else ends later through :meth:`poll`.
        """
        out: list[PoolResult] = []
        for request in requests:
            mid = request.message_id
            if mid in self._pending:
                self._n["duplicates"] += 1
            elif self._closed:
                out.append(self._failure(mid, Reason.SHUTTING_DOWN, None, "the AI pool is closed"))
            elif request.deadline <= now:
                detail = "deadline passed before the call"
                out.append(self._failure(mid, Reason.TIMEOUT, None, detail))
            elif len(self._pending) >= self._capacity:
                detail = f"AI pool capacity ({self._capacity}) reached"
                out.append(self._failure(mid, Reason.CAPACITY, None, detail))
            else:
                self._token += 1
                p = Pending(request, self._token)
                self._pending[mid] = p
                heapq.heappush(self._deadlines, (request.deadline, p.token, mid))
                self._dispatch(p, now, out)
        return out

    def poll(self, now: float) -> list[PoolResult]:
        """Return what ended by ``now``: replies, failures after failover, and timeouts.

        Deadlines are enforced first, so no reply is returned at or after its deadline
        (the call is cancelled). Failed calls fail over at once, and waiting requests
        whose provider freed up are started.
        """
        out: list[PoolResult] = []
        if self._closed:
            return out
        self._expire(now, out)
        recheck, self._recheck_at = self._recheck_at is not None, None
        for _ in range(self._max_rounds):
            results = [(p, r) for p in self._roster.all() for r in p.poll(now)]
            due = self._parked.take(float("inf") if recheck else now)
            recheck = False
            if not results and not due:
                break
            for provider, result in results:
                self._on_result(provider, result, now, out)
            for p in due:
                self._dispatch(p, now, out)
        self._roster.close_drained()
        return out

    def cancel(self, message_ids: Iterable[str]) -> int:
        """Forget pending requests the caller gave up on (no result for them); how many."""
        n = 0
        for mid in message_ids:
            p = self._pending.get(mid)
            if p is not None:
                if p.provider is not None:
                    p.provider.cancel(mid)
                self._finish(p)
                n += 1
        self._n["cancelled"] += n
        return n

    def next_wakeup(self) -> float | None:
        """When :meth:`poll` has something to do next: a call due, a wait over, a deadline."""
        times = [t for p in self._roster.all() if (t := p.next_due()) is not None]
        if self._recheck_at is not None:
            times.append(self._recheck_at)
        while self._deadlines and not self._live_deadline(self._deadlines[0]):
            heapq.heappop(self._deadlines)
        if self._deadlines:
            times.append(self._deadlines[0][0])
        if (parked := self._parked.next_due()) is not None:
            times.append(parked)
        return min(times, default=None)

    def close(self) -> tuple[str, ...]:
        """Close every provider and refuse new requests; return the ids still pending."""
        self._closed = True
        self._roster.close()
        abandoned = tuple(self._pending)
        self._pending.clear()
        self._deadlines.clear()
        self._parked.clear()
        self._recheck_at = None
        return abandoned

    # -- internals -----------------------------------------------------------------------

    def _build(self, spec: ProviderSpec) -> Provider:
        # Room for the whole capacity: each pending request has at most one call in flight.
        return self._factory(spec, self._rng, max_in_flight=self._capacity)

    def _wake_parked(self, now: float) -> None:
        if self._parked:
            self._recheck_at = now if self._recheck_at is None else min(self._recheck_at, now)

    def _dispatch(self, p: Pending, now: float, out: list[PoolResult]) -> None:
        """Start ``p`` on the best provider it has not tried, park it, or fail it."""
        exclude = p.tried
        busy: list[Provider] = []
        choice = self._selector.choose(now, exclude=exclude)
        while isinstance(choice, Chosen):
            provider = self._roster.provider(choice.name)
            if provider.in_flight < provider.max_in_flight:
                self._selector.record_call(choice.name, now)
                provider.start(p.request, now)
                p.provider, p.provider_name = provider, choice.name
                self._n["calls"] += 1
                self._n["failovers"] += bool(p.tried)
                return
            # Full only when calls it could not cancel still run: skip it for this choice.
            busy.append(provider)
            exclude = exclude | {choice.name}
            choice = self._selector.choose(now, exclude=exclude)
        retry_at = min(
            (t for t in [choice.retry_at, *(b.next_due() for b in busy)] if t is not None),
            default=None,
        )
        mid, deadline = p.request.message_id, p.request.deadline
        if p.tried and all(name in p.tried for name in self._selector.names):
            self._finish(p)
            detail = f"all {len(p.tried)} providers failed (last {p.last!r}: {p.last_error})"
            out.append(self._failure(mid, Reason.PROVIDER_ERROR, p.last, _clip(detail)))
        elif retry_at is not None and retry_at < deadline:
            self._token += 1
            self._parked.park(p, retry_at, self._token)
            self._n["parks"] += 1
        else:
            self._finish(p)
            late = "; none frees up before the deadline" if retry_at is not None else ""
            out.append(self._failure(mid, Reason.NO_PROVIDER, p.last, choice.reason + late))

    def _on_result(
        self, provider: Provider, result: ProviderResult, now: float, out: list[PoolResult]
    ) -> None:
        p = self._pending.get(result.message_id)
        if p is None or p.provider is not provider:
            self._n["late_replies"] += 1
            return
        name, p.provider = p.provider_name, None
        error = result.error
        if result.ok:
            try:
                reply = AIReply(
                    message_id=result.message_id,
                    provider=name,
                    text=result.text,
                    prompt_tokens=result.prompt_tokens,
                    completion_tokens=result.completion_tokens,
                )
            except ValueError:
                error = "invalid_reply"  # empty, too long or bad tokens: fail over
            else:
                tokens = reply.prompt_tokens + reply.completion_tokens
                self._selector.record_success(name, now, tokens=tokens)
                self._finish(p)
                self._n["replies"] += 1
                out.append(reply)
                return
        self._selector.record_failure(name, now, retry_after=result.retry_after)
        self._n["call_errors"] += 1
        p.tried.add(name)
        p.last, p.last_error = name, f"{error}: {result.detail}" if result.detail else error
        self._dispatch(p, now, out)

    def _expire(self, now: float, out: list[PoolResult]) -> None:
        # Re-read self._deadlines each time: _finish may rebuild it.
        while self._deadlines and self._deadlines[0][0] <= now:
            entry = heapq.heappop(self._deadlines)
            if not self._live_deadline(entry):
                continue
            p = self._pending[entry[2]]
            name = p.last
            if p.provider is not None:
                name = p.provider_name
                p.provider.cancel(entry[2])
            self._finish(p)
            out.append(self._failure(entry[2], Reason.TIMEOUT, name, "deadline passed"))

    def _finish(self, p: Pending) -> None:
        del self._pending[p.request.message_id]
        self._parked.release(p)
        # Finished requests leave heap entries behind; rebuild when they dominate.
        if len(self._deadlines) > 2 * len(self._pending) + 64:
            self._deadlines = [(q.request.deadline, q.token, k) for k, q in self._pending.items()]
            heapq.heapify(self._deadlines)

    def _live_deadline(self, entry: tuple[float, int, str]) -> bool:
        p = self._pending.get(entry[2])
        return p is not None and p.token == entry[1]

    def _failure(self, mid: str, reason: Reason, provider: str | None, detail: str) -> AIFailure:
        key = {
            Reason.TIMEOUT: "timeouts",
            Reason.CAPACITY: "over_capacity",
            Reason.NO_PROVIDER: "no_provider",
            Reason.PROVIDER_ERROR: "provider_errors",
        }.get(reason)
        if key is not None:
            self._n[key] += 1
        self._n["failures"] += 1
        return AIFailure(message_id=mid, reason=reason.value, provider=provider, detail=detail)

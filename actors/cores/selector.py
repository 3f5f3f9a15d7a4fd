"""AI provider pool policy: which provider serves the next call, and when one is unusable.

Pure core for the AI pool actor (seed: ``AIService``). The seed loaded at most
``MAX_PROVIDERS = 50`` active providers ordered by ``priority desc`` and reset daily usage
from an hourly ``setInterval``; here the daily reset is exact at the UTC day boundary and
is computed from the ``now`` passed in, so no timer is needed.

Every query is O(max_providers): the loaded set is a list kept sorted by rank and
``choose`` walks it once. ``max_providers`` is a small constant (seed 50), so that is
constant per call and needs no heap or index.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from actors.cores._args import require_int, require_number

__all__ = [
    "SECONDS_PER_DAY",
    "Choice",
    "Chosen",
    "LoadResult",
    "ProviderLike",
    "ProviderSelector",
    "ProviderState",
    "Unavailable",
]

SECONDS_PER_DAY = 86_400


class ProviderLike(Protocol):
    """What the selector reads from a provider description (e.g. ``protocols.ProviderSpec``)."""

    # Read-only properties so frozen dataclasses satisfy the protocol.
    @property
    def name(self) -> str: ...

    @property
    def priority(self) -> int: ...

    @property
    def daily_limit(self) -> int | None: ...

    @property
    def active(self) -> bool: ...


S = TypeVar("S", bound=ProviderLike)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Outcome of ``load``/``add``: who this call put in the pool and who it left out.

    For ``load``, ``loaded`` is the whole new pool in rank order and ``left_out`` the active
    providers cut by ``max_providers`` (inactive ones are never reported). For ``add``,
    ``loaded`` is ``(name,)`` or ``()``, and ``left_out`` names the new provider (rejected,
    or inactive) or the provider it displaced.
    """

    loaded: tuple[str, ...]
    left_out: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Chosen(Generic[S]):
    """The provider to call next."""

    name: str
    spec: S


@dataclass(frozen=True, slots=True)
class Unavailable:
    """No provider can serve now; ``retry_at`` is when one can, or None if none ever can."""

    retry_at: float | None
    reason: str


Choice = Chosen[S] | Unavailable


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderState:
    """Stats view of one loaded provider.

    ``failures`` is the total, ``consecutive_failures`` the current streak, and
    ``cooldown_until`` is ``-inf`` for a provider that never cooled down.
    """

    name: str
    priority: int
    usage_today: int
    daily_limit: int | None
    cooldown_until: float
    failures: int
    consecutive_failures: int
    calls: int
    successes: int
    tokens: int


@dataclass(slots=True)
class _Slot(Generic[S]):
    """Mutable per-provider state; survives reloads while the provider stays loaded."""

    spec: S
    usage_day: float = -math.inf  # UTC day index that ``usage`` belongs to
    usage: int = 0
    cooldown_until: float = -math.inf
    consecutive_failures: int = 0
    failures: int = 0
    calls: int = 0
    successes: int = 0
    tokens: int = 0

    def usage_on(self, day: int) -> int:
        # A later day starts from zero; an earlier one (clock stepped back) keeps the count,
        # which is the conservative reading.
        return 0 if day > self.usage_day else self.usage


def _rank(spec: ProviderLike) -> tuple[int, str]:
    return (-spec.priority, spec.name)


def _day(now: float) -> int:
    return math.floor(now / SECONDS_PER_DAY)


def _check_spec(spec: ProviderLike) -> None:
    if not isinstance(spec.name, str) or not spec.name:
        raise ValueError(f"provider name must be a non-empty str, got {spec.name!r}")
    require_int(f"provider {spec.name!r}: priority", spec.priority)
    if spec.daily_limit is not None:
        require_int(f"provider {spec.name!r}: daily_limit", spec.daily_limit, minimum=0)


class ProviderSelector(Generic[S]):
    """Priority failover over at most ``max_providers`` providers, with quotas and cooldowns.

    Args:
        max_providers: most providers loaded at once (seed ``MAX_PROVIDERS = 50``).
        cooldown_s: how long a failing provider is skipped (engine default 5.0, as LiteLLM).
        allowed_fails: consecutive failures before a cooldown starts. Default 1: a chat
            reply is waiting and failing over to the next provider is cheap, so one failure
            is enough. LiteLLM uses 3 failures per minute; set 3 here for that tolerance.
            The streak only resets on success, so after a cooldown the first call is a
            probe (half-open): one more failure cools the provider down again at once.
            A failure with ``retry_after`` always starts a cooldown.

    The ``record_*`` outcome methods return False and record nothing for a ``name`` that is
    not loaded, e.g. one a reload removed while its call was in flight.

    Raises:
        ValueError: a bound is not of the documented type or range.
    """

    __slots__ = ("_allowed_fails", "_cooldown_s", "_cooldowns", "_max", "_order", "_slots")

    def __init__(self, *, max_providers: int, cooldown_s: float, allowed_fails: int = 1) -> None:
        self._max = require_int("max_providers", max_providers, minimum=1)
        self._cooldown_s = require_number("cooldown_s", cooldown_s, minimum=0)
        self._allowed_fails = require_int("allowed_fails", allowed_fails, minimum=1)
        self._slots: dict[str, _Slot[S]] = {}
        self._order: list[tuple[tuple[int, str], str]] = []  # (rank, name), best first
        self._cooldowns = 0

    # -- configuration and counters ------------------------------------------------------

    @property
    def max_providers(self) -> int:
        """Most providers loaded at once."""
        return self._max

    @property
    def cooldown_s(self) -> float:
        """Minimum cooldown after a failure that starts one."""
        return self._cooldown_s

    @property
    def allowed_fails(self) -> int:
        """Consecutive failures before a cooldown starts."""
        return self._allowed_fails

    @property
    def cooldowns_started(self) -> int:
        """How many cooldowns have been started or extended since construction."""
        return self._cooldowns

    @property
    def names(self) -> tuple[str, ...]:
        """Loaded provider names, best rank first."""
        return tuple(name for _, name in self._order)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, name: object) -> bool:
        return name in self._slots

    # -- the set of providers ------------------------------------------------------------

    def load(self, specs: Iterable[S]) -> LoadResult:
        """Replace the pool with the best ``max_providers`` active specs.

        Usage, cooldown and counters are kept for providers that stay loaded. A provider
        that is left out or removed is not remembered: call ``load`` again to refill.

        Raises:
            ValueError: two specs share a name, or a spec field is malformed. The pool is
                unchanged when this is raised.
        """
        seen: set[str] = set()
        active: list[S] = []
        for spec in specs:
            _check_spec(spec)
            if spec.name in seen:
                raise ValueError(f"duplicate provider name {spec.name!r} in load()")
            seen.add(spec.name)
            if spec.active:
                active.append(spec)
        active.sort(key=_rank)
        kept, cut = active[: self._max], active[self._max :]
        old = self._slots
        self._slots = {}
        for spec in kept:
            slot = old.get(spec.name)
            if slot is None:
                slot = _Slot(spec)
            else:
                slot.spec = spec
            self._slots[spec.name] = slot
        self._order = [(_rank(spec), spec.name) for spec in kept]
        return LoadResult(
            loaded=tuple(spec.name for spec in kept), left_out=tuple(spec.name for spec in cut)
        )

    def add(self, spec: S) -> LoadResult:
        """Add one provider; at capacity it displaces the worst-ranked one only if it ranks higher.

        An inactive spec is left out. Rank is ``priority`` desc, then ``name``.

        Raises:
            ValueError: the name is already loaded (``remove`` it first), or a field is malformed.
        """
        _check_spec(spec)
        if spec.name in self._slots:
            raise ValueError(f"provider {spec.name!r} is already loaded; remove it first")
        if not spec.active:
            return LoadResult(loaded=(), left_out=(spec.name,))
        rank = _rank(spec)
        displaced: tuple[str, ...] = ()
        if len(self._order) >= self._max:
            worst_rank, worst = self._order[-1]
            if rank >= worst_rank:
                return LoadResult(loaded=(), left_out=(spec.name,))
            self._order.pop()
            del self._slots[worst]
            displaced = (worst,)
        bisect.insort(self._order, (rank, spec.name))
        self._slots[spec.name] = _Slot(spec)
        return LoadResult(loaded=(spec.name,), left_out=displaced)

    def remove(self, name: str) -> bool:
        """Unload ``name`` and forget its state; False if it was not loaded."""
        slot = self._slots.pop(name, None)
        if slot is None:
            return False
        self._order.remove((_rank(slot.spec), name))
        return True

    # -- choosing ------------------------------------------------------------------------

    def choose(self, now: float, exclude: Collection[str] = ()) -> Chosen[S] | Unavailable:
        """Pick the best-ranked provider that is not excluded, cooling down or over quota.

        A pure query: it does not count usage (``record_call`` does).

        Returns:
            ``Chosen`` or ``Unavailable``. ``Unavailable.retry_at`` is the earliest moment a
            non-excluded provider becomes usable (its cooldown end, or the next UTC midnight
            for a used-up quota), or None when no provider could ever serve (none loaded,
            all excluded, or only ``daily_limit == 0`` left).
        """
        if not isinstance(exclude, set | frozenset | dict):
            exclude = frozenset(exclude)  # keep membership O(1) whatever the caller passed
        day = _day(now)
        midnight = float((day + 1) * SECONDS_PER_DAY)
        retry_at: float | None = None
        cooling = exhausted = never = 0
        for _, name in self._order:
            if name in exclude:
                continue
            slot = self._slots[name]
            limit = slot.spec.daily_limit
            is_cooling = slot.cooldown_until > now
            is_exhausted = limit is not None and slot.usage_on(day) >= limit
            if not is_cooling and not is_exhausted:
                return Chosen(name, slot.spec)
            if limit == 0:
                never += 1
                continue
            cooling += is_cooling
            exhausted += is_exhausted
            # Cooling past midnight means the quota has reset by the time the cooldown ends.
            ready = max(slot.cooldown_until, midnight) if is_exhausted else slot.cooldown_until
            if retry_at is None or ready < retry_at:
                retry_at = ready
        if not self._order:
            reason = "no providers loaded"
        elif cooling + exhausted + never == 0:
            reason = f"all {len(self._order)} providers excluded"
        else:
            counts = {"cooling down": cooling, "over daily limit": exhausted}
            counts["with daily_limit 0"] = never
            reason = "no provider available: " + ", ".join(
                f"{n} {what}" for what, n in counts.items() if n
            )
        return Unavailable(retry_at, reason)

    # -- outcomes ------------------------------------------------------------------------

    def record_call(self, name: str, now: float) -> bool:
        """Count one call against ``name``'s quota for the UTC day of ``now``."""
        slot = self._slots.get(name)
        if slot is None:
            return False
        day = _day(now)
        if day > slot.usage_day:
            slot.usage_day = day
            slot.usage = 0
        slot.usage += 1
        slot.calls += 1
        return True

    def record_success(self, name: str, now: float, *, tokens: int = 0) -> bool:
        """Record a successful call: ends the failure streak, adds ``tokens``.

        Raises:
            ValueError: ``tokens`` is not an int >= 0.
        """
        require_int("tokens", tokens, minimum=0)
        slot = self._slots.get(name)
        if slot is None:
            return False
        slot.consecutive_failures = 0
        slot.successes += 1
        slot.tokens += tokens
        return True

    def record_failure(self, name: str, now: float, *, retry_after: float | None = None) -> bool:
        """Record a failed call; may start (or extend, never shorten) a cooldown.

        The cooldown starts when the streak reaches ``allowed_fails`` or ``retry_after`` is
        given, and sets ``cooldown_until = max(cooldown_until, now + max(cooldown_s,
        retry_after or 0))``.

        Raises:
            ValueError: ``retry_after`` is negative or not finite.
        """
        if retry_after is not None:
            require_number("retry_after", retry_after, minimum=0)
        slot = self._slots.get(name)
        if slot is None:
            return False
        slot.failures += 1
        slot.consecutive_failures += 1
        if retry_after is not None or slot.consecutive_failures >= self._allowed_fails:
            until = now + max(self._cooldown_s, retry_after or 0.0)
            # Only ever extend: a short second cooldown must not cut a long one (LiteLLM bug).
            slot.cooldown_until = max(slot.cooldown_until, until)
            self._cooldowns += 1
        return True

    def snapshot(self, now: float | None = None) -> tuple[ProviderState, ...]:
        """Per-provider stats, best rank first.

        Args:
            now: if given, ``usage_today`` is for the UTC day of ``now`` (0 after midnight);
                otherwise it is the count for the last day a call was recorded.
        """
        day = None if now is None else _day(now)
        return tuple(_state(self._slots[name], day) for _, name in self._order)


def _state(slot: _Slot[S], day: int | None) -> ProviderState:
    return ProviderState(
        name=slot.spec.name,
        priority=slot.spec.priority,
        usage_today=slot.usage if day is None else slot.usage_on(day),
        daily_limit=slot.spec.daily_limit,
        cooldown_until=slot.cooldown_until,
        failures=slot.failures,
        consecutive_failures=slot.consecutive_failures,
        calls=slot.calls,
        successes=slot.successes,
        tokens=slot.tokens,
    )

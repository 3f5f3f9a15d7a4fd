"""The pool's set of providers: which are loaded, which were left out, which still drain.

One job: keep the built providers and the ``ProviderSelector`` in step through add,
remove, replace and bulk load. At ``max_providers`` the selector's rank (priority desc,
then name) decides who is left out, and a left-out provider is never built. An unloaded
provider with calls in flight keeps draining, so every call still ends in a result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from actors.cores.selector import ProviderSelector
from actors.pool.providers import Provider, UnknownKindError
from protocols import MAX_TEXT_LEN, CommandResult, ProviderSpec

__all__ = ["LoadReport", "ProviderRoster", "Refused"]


@dataclass(frozen=True, slots=True)
class Refused:
    """A spec :meth:`ProviderRoster.load` could not use.

    ``error`` is ``unknown_kind``, ``invalid_options`` or ``duplicate_name``; ``detail`` is
    the sentence.
    """

    name: str
    error: str
    detail: str


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What a bulk load did.

    ``loaded`` is the new pool in rank order, ``left_out`` the active specs the provider
    limit cut (best first; for the "N providers left out" warning), ``refused`` the specs
    that could not be used.
    """

    loaded: tuple[str, ...]
    left_out: tuple[str, ...]
    refused: tuple[Refused, ...] = ()


def _rank(spec: ProviderSpec) -> tuple[int, str]:
    # ProviderSelector's documented rank: priority desc, then name.
    return (-spec.priority, spec.name)


def _build_error(exc: ValueError) -> str:
    return "unknown_kind" if isinstance(exc, UnknownKindError) else "invalid_options"


class ProviderRoster:
    """Loaded providers with their specs and selector state, plus the ones draining.

    Args:
        selector: the policy object that ranks and gates the loaded providers; the roster
            is the only one that loads and removes providers in it.
        build: builds a provider from its spec; raises ``ValueError`` (``UnknownKindError``
            for an unknown kind) for a spec it cannot build.
    """

    __slots__ = ("_build", "_draining", "_left_out", "_live", "selector")

    def __init__(
        self,
        selector: ProviderSelector[ProviderSpec],
        build: Callable[[ProviderSpec], Provider],
    ) -> None:
        self.selector = selector
        self._build = build
        self._live: dict[str, tuple[ProviderSpec, Provider]] = {}
        self._draining: list[Provider] = []  # unloaded, still finishing calls in flight
        self._left_out: dict[str, None] = {}  # insertion-ordered set

    @property
    def left_out(self) -> tuple[str, ...]:
        """Active providers the provider limit keeps out (by the last load or add)."""
        return tuple(self._left_out)

    @property
    def draining(self) -> int:
        """Unloaded providers still finishing calls."""
        return len(self._draining)

    def provider(self, name: str) -> Provider:
        """The built provider of loaded ``name`` (``KeyError`` if not loaded)."""
        return self._live[name][1]

    def all(self) -> list[Provider]:
        """Every provider that may still return results: loaded, then draining."""
        return [p for _, p in self._live.values()] + self._draining

    def add(self, spec: ProviderSpec) -> CommandResult:
        """Load ``spec``, replacing a loaded provider of the same name.

        A replacement keeps the name's usage, quota and cooldown, and the replaced provider
        finishes its calls in flight. At ``max_providers`` the spec displaces the worst-ranked
        provider if it ranks higher, else it is left out (``provider_limit``) and not built.
        An inactive spec unloads the name. A spec that cannot be built (``unknown_kind``,
        ``invalid_options``) changes nothing.
        """
        name, cmd, sel = spec.name, "add_provider", self.selector
        old = self._live.get(name)
        if not spec.active:
            self._left_out.pop(name, None)
            if old is not None:
                self._unload(name)
            what = "unloaded it" if old is not None else "not loaded"
            return CommandResult(command=cmd, ok=True, detail=f"provider {name!r} inactive: {what}")
        if old is None and len(sel) >= sel.max_providers:
            worst = self._live[sel.names[-1]][0]
            if _rank(spec) >= _rank(worst):
                self._left_out[name] = None
                detail = (
                    f"provider {name!r} (priority {spec.priority}) left out: provider limit "
                    f"({sel.max_providers}) reached and the lowest loaded is {worst.name!r} "
                    f"(priority {worst.priority})"
                )
                return CommandResult(command=cmd, ok=False, error="provider_limit", detail=detail)
        try:
            provider = self._build(spec)
        except ValueError as exc:
            detail = str(exc)[:MAX_TEXT_LEN]
            return CommandResult(command=cmd, ok=False, error=_build_error(exc), detail=detail)
        if old is not None:
            # load() keeps the slot state of names that stay: a replacement must not reset
            # the daily quota or end a cooldown.
            sel.load([s for s, _ in self._live.values() if s.name != name] + [spec])
            self._retire(old[1])
            detail = f"replaced provider {name!r}"
        else:
            detail = f"loaded provider {name!r}"
            for gone in sel.add(spec).left_out:
                self._retire(self._live.pop(gone)[1])
                self._left_out[gone] = None
                detail += f"; left out {gone!r}: provider limit ({sel.max_providers}) reached"
        self._live[name] = (spec, provider)
        self._left_out.pop(name, None)
        return CommandResult(command=cmd, ok=True, detail=detail)

    def remove(self, name: str) -> CommandResult:
        """Unload ``name`` (``unknown_provider`` if neither loaded nor left out)."""
        cmd = "remove_provider"
        if name in self._live:
            in_flight = self._unload(name)
            tail = f"; {in_flight} calls in flight finish first" if in_flight else ""
            return CommandResult(command=cmd, ok=True, detail=f"removed provider {name!r}{tail}")
        if name in self._left_out:
            del self._left_out[name]
            return CommandResult(command=cmd, ok=True, detail=f"forgot left-out provider {name!r}")
        return CommandResult(
            command=cmd, ok=False, error="unknown_provider", detail=f"no provider {name!r} loaded"
        )

    def load(self, specs: Iterable[ProviderSpec]) -> LoadReport:
        """Replace the pool with the best ``max_providers`` active, buildable specs.

        Providers whose kind and options are unchanged are kept as they are; every name
        that stays keeps its usage and cooldown. Specs left out are not built. A spec that
        cannot be built, or repeats an earlier name, is refused and the next one takes
        its place.
        """
        refused: list[Refused] = []
        active: list[ProviderSpec] = []
        seen: set[str] = set()
        for spec in specs:
            if spec.name in seen:
                detail = f"provider {spec.name!r} is listed twice; the first one counts"
                refused.append(Refused(spec.name, "duplicate_name", detail))
                continue
            seen.add(spec.name)
            if spec.active:
                active.append(spec)
        active.sort(key=_rank)
        live: dict[str, tuple[ProviderSpec, Provider]] = {}
        left_out: list[str] = []
        for spec in active:
            if len(live) >= self.selector.max_providers:
                left_out.append(spec.name)
                continue
            old = self._live.get(spec.name)
            if old is not None and (old[0].kind, old[0].options) == (spec.kind, spec.options):
                live[spec.name] = (spec, old[1])
                continue
            try:
                live[spec.name] = (spec, self._build(spec))
            except ValueError as exc:
                refused.append(Refused(spec.name, _build_error(exc), str(exc)[:MAX_TEXT_LEN]))
        self.selector.load(spec for spec, _ in live.values())
        for name, (_, provider) in self._live.items():
            if name not in live or live[name][1] is not provider:
                self._retire(provider)
        self._live = live
        self._left_out = dict.fromkeys(left_out)
        return LoadReport(tuple(live), tuple(left_out), tuple(refused))

    def close_drained(self) -> None:
        """Close the draining providers whose last call has ended."""
        for provider in self._draining:
            if not provider.in_flight:
                provider.close()
        self._draining = [p for p in self._draining if p.in_flight]

    def close(self) -> None:
        """Close every provider and unload them all."""
        for provider in self.all():
            provider.close()
        self._live.clear()
        self._draining.clear()
        self.selector.load(())

    def _unload(self, name: str) -> int:
        self.selector.remove(name)
        provider = self._live.pop(name)[1]
        self._retire(provider)
        return provider.in_flight

    def _retire(self, provider: Provider) -> None:
        if provider.in_flight:
            self._draining.append(provider)  # its calls in flight still end in a result
        else:
            provider.close()

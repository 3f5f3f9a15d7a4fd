"""Lifecycles as data: an enum of states and one table of the transitions between them.

After h11: every lifecycle in the engine (a supervised child, the engine facade, a
message in the router, an account as the router sees it) is one :class:`Lifecycle` —
its states, the events that move it, and nothing else. A transition that the table does
not list raises :class:`LifecycleError`, which names the lifecycle, the event and the
state, instead of leaving an object in a state nobody planned for.

    CHILD = Lifecycle("child", ChildState, {
        (ChildState.STARTING, "configured"): ChildState.UP,
        ...
    })
    child.state = CHILD.next(child.state, "configured")
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

__all__ = ["Lifecycle", "LifecycleError"]

S = TypeVar("S", bound=enum.Enum)


class LifecycleError(RuntimeError):
    """An event arrived in a state whose table has no transition for it.

    Raised by :meth:`Lifecycle.next`; the message names the lifecycle, the event and the
    state ("child: can't handle 'crashed' when state=stopped"). It means a bug in the
    caller: the event should not have been applied in that state.
    """

    def __init__(self, lifecycle: str, event: str, state: enum.Enum) -> None:
        super().__init__(f"{lifecycle}: can't handle {event!r} when state={state.value}")
        self.lifecycle = lifecycle
        self.event = event
        self.state = state


class Lifecycle(Generic[S]):
    """The transition table of one lifecycle.

    Args:
        name: what the lifecycle is about, for error messages ("child", "engine").
        states: the enum of its states.
        table: ``(state, event) -> next state``; every pair not listed is illegal.

    Raises:
        ValueError: the table names a state that is not one of ``states``.
    """

    def __init__(self, name: str, states: type[S], table: Mapping[tuple[S, str], S]) -> None:
        for (state, _event), target in table.items():
            if not isinstance(state, states) or not isinstance(target, states):
                raise ValueError(f"{name}: the table names a state outside {states.__name__}")
        self.name = name
        self.states = states
        self._table = dict(table)

    def next(self, state: S, event: str) -> S:
        """Return the state that ``event`` moves ``state`` to.

        Raises:
            LifecycleError: the table has no transition for ``event`` in ``state``.
        """
        try:
            return self._table[(state, event)]
        except KeyError:
            raise LifecycleError(self.name, event, state) from None

    def allows(self, state: S, event: str) -> bool:
        """Whether ``event`` is legal in ``state``."""
        return (state, event) in self._table

    def events(self) -> frozenset[str]:
        """Every event the table knows."""
        return frozenset(event for _state, event in self._table)

    def reachable(self, start: S) -> frozenset[S]:
        """The states reachable from ``start`` (itself included)."""
        seen = {start}
        frontier: list[S] = [start]
        while frontier:
            state = frontier.pop()
            for (source, _event), target in self._table.items():
                if source is state and target not in seen:
                    seen.add(target)
                    frontier.append(target)
        return frozenset(seen)

    def table(self) -> Iterable[tuple[S, str, S]]:
        """The transitions as ``(state, event, next state)`` rows (docs, tests)."""
        return [(state, event, target) for (state, event), target in self._table.items()]

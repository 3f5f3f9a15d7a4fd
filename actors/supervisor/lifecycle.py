"""A supervised child's lifecycle: its states and the one table of moves between them.

::

    starting --configured--> up --crashed--> down --respawned--> starting
    starting --crashed-----> down --gave_up--> failed
    starting --refused-----> stopping                (its Configure failed; it is removed)
    starting, up --stop----> stopping --exited--> stopped
    down, failed --stop----> stopped                 (no actor runs: nothing to wait for)

A crash is two moves, ``crashed`` then ``gave_up`` when the restart policy says so, which
keeps the table free of guards. The states are ``str`` values, so the stats and
``/healthz`` that print a child's state keep printing ``"up"``, ``"down"``, ...
"""

from __future__ import annotations

import enum

from actors.cores.lifecycle import Lifecycle

__all__ = ["CHILD", "ChildState"]


class ChildState(enum.StrEnum):
    """Where one supervised actor is in its life."""

    STARTING = "starting"  # created, its Configure not answered yet
    UP = "up"
    DOWN = "down"  # crashed, a restart is pending
    FAILED = "failed"  # past its restart intensity; final until stopped
    STOPPING = "stopping"  # asked to exit, the exit not seen yet
    STOPPED = "stopped"


_S = ChildState

CHILD: Lifecycle[ChildState] = Lifecycle(
    "child",
    ChildState,
    {
        (_S.STARTING, "configured"): _S.UP,
        (_S.STARTING, "refused"): _S.STOPPING,
        (_S.STARTING, "crashed"): _S.DOWN,
        (_S.UP, "crashed"): _S.DOWN,
        (_S.DOWN, "gave_up"): _S.FAILED,
        (_S.DOWN, "respawned"): _S.STARTING,
        (_S.STARTING, "stop"): _S.STOPPING,
        (_S.UP, "stop"): _S.STOPPING,
        (_S.DOWN, "stop"): _S.STOPPED,
        (_S.FAILED, "stop"): _S.STOPPED,
        (_S.STOPPING, "exited"): _S.STOPPED,
    },
)

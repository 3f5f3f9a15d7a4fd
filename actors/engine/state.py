"""The engine facade's lifecycle: its states and the one table of moves between them.

::

    new --start--> running --shutdown--> stopping --stopped--> stopped
    new --shutdown-------------------------------------------> stopped

A failed ``start`` leaves the engine ``new``; a second ``shutdown`` is answered from the
first one's report (the facade checks ``allows`` before it moves).
"""

from __future__ import annotations

import enum

from actors.cores.lifecycle import Lifecycle

__all__ = ["ENGINE", "EngineState"]


class EngineState(enum.StrEnum):
    """Where an ``Engine`` is; its value is what the facade's errors say ("is stopped")."""

    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


ENGINE: Lifecycle[EngineState] = Lifecycle(
    "engine",
    EngineState,
    {
        (EngineState.NEW, "start"): EngineState.RUNNING,
        (EngineState.NEW, "shutdown"): EngineState.STOPPED,  # nothing was started
        (EngineState.RUNNING, "shutdown"): EngineState.STOPPING,
        (EngineState.STOPPING, "stopped"): EngineState.STOPPED,
    },
)

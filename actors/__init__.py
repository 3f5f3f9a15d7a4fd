"""wa-actor-engine: the actor side — the embedded ``Engine``, its configuration and cores.

The layout (README, Architecture): ``config`` and ``cores`` are pure; ``runtime`` is the
Thespian plumbing; ``engine`` is the facade a gateway embeds; ``supervisor``, ``router``,
``pool`` and ``account`` are the actor roles, each a thin ``actor.py`` over a pure
``core.py``. Importing this package loads nothing of Thespian: ``Engine`` (and with it
Thespian) is imported on first use of the name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.config import BASES, EngineConfig, load_config
from actors.errors import (
    ConfigError,
    EngineError,
    InstanceLimitError,
    ListenerLimitError,
    StoreError,
    StoreFullError,
    StoreLockedError,
)

if TYPE_CHECKING:
    from actors.engine import Engine, Subscription
    from actors.engine.aio_engine import AsyncEngine

__all__ = [
    "BASES",
    "AsyncEngine",
    "ConfigError",
    "Engine",
    "EngineConfig",
    "EngineError",
    "InstanceLimitError",
    "ListenerLimitError",
    "StoreError",
    "StoreFullError",
    "StoreLockedError",
    "Subscription",
    "load_config",
]

_LAZY = {
    "AsyncEngine": "actors.engine.aio_engine",
    "Engine": "actors.engine.facade",
    "Subscription": "actors.engine.listeners",
}


def __getattr__(name: str) -> Any:
    # PEP 562: the facade (and Thespian) load only when someone asks for them.
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'actors' has no attribute {name!r}")

"""wa-actor-engine: the actor side — the embedded ``Engine``, its configuration and cores."""

from actors.config import EngineConfig, load_config
from actors.engine import BASES, Engine
from actors.errors import ConfigError, EngineError, InstanceLimitError
from actors.listeners import ListenerLimitError, Subscription

__all__ = [
    "BASES",
    "ConfigError",
    "Engine",
    "EngineConfig",
    "EngineError",
    "InstanceLimitError",
    "ListenerLimitError",
    "Subscription",
    "load_config",
]

"""wa-actor-engine: the actor side — configuration, pure policy cores and (later) actors."""

from actors.config import EngineConfig, load_config
from actors.errors import ConfigError, EngineError, InstanceLimitError

__all__ = ["ConfigError", "EngineConfig", "EngineError", "InstanceLimitError", "load_config"]

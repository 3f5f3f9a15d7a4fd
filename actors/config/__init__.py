"""The engine's configuration: ``EngineConfig``, its keys as data, and loading.

Pure: importing it loads no Thespian. ``keys`` declares and checks keys, ``engine_config``
holds ``EngineConfig``, ``loading`` builds one from a TOML file, ``WAE_*`` variables and
overrides, ``envnames`` shows the names of variables that hold secrets without their values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from actors.config.engine_config import EngineConfig, settings
from actors.config.keys import CONFIG_PATH_ENV, ENV_PREFIX, Setting
from actors.config.loading import build, read_toml
from actors.config.loading import markdown_table as _markdown_table

__all__ = [
    "BASES",
    "CONFIG_PATH_ENV",
    "ENV_PREFIX",
    "EngineConfig",
    "Setting",
    "build",
    "load_config",
    "markdown_table",
    "read_toml",
    "settings",
]

BASES = ("multiprocTCPBase", "simpleSystemBase")
"""The Thespian bases an engine runs on: one process per actor (production), or everything
in the caller's thread (tests, tools)."""


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> EngineConfig:
    """Build an ``EngineConfig``; see ``EngineConfig.load``."""
    return EngineConfig.load(path, env=env, **overrides)


def markdown_table() -> str:
    """Return README's configuration table, generated from the keys themselves."""
    return _markdown_table(EngineConfig)

"""Environment variables set for a while and put back: the fakes' secrets in demos and runs.

Actor processes inherit the environment when they are forked, so the secrets the fake
servers check (a Graph token, an OpenAI key) are set in this process before the engine
starts, and the previous values are restored when the demo or the run ends.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["EnvOverlay"]


class EnvOverlay:
    """Sets variables with :meth:`set`; :meth:`restore` puts back what was there (idempotent)."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, values: Mapping[str, str]) -> None:
        """Set each variable, remembering its value before the first :meth:`set` of it."""
        for name, value in values.items():
            self._saved.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def restore(self) -> None:
        """Put every variable back as it was (removed if it was unset)."""
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()

"""Settings Thespian reads from the environment once, at import: how the engine sets them.

Several of Thespian's limits (the convention timers, the transmit limits) are module
globals that a Thespian module fills with ``getenvdef`` **when it is imported**. The
engine wants its own values in every process of its actor systems. :func:`apply` puts each
value into ``os.environ`` (so a module imported later reads it, and programs this process
starts inherit it) and, for a module imported already, sets the global too, which
Thespian's functions read at each call. Actor processes fork from the process that
started the system and inherit both. :func:`effective` reads back what Thespian holds.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from actors.runtime.thespian_fixes import require_pinned_thespian

__all__ = ["ThespianSetting", "apply", "effective"]


@dataclass(frozen=True, slots=True)
class ThespianSetting:
    """One variable: its name, the engine's value as text, where Thespian keeps it.

    ``text`` is ``M:S`` (minutes, seconds) for a period and a decimal for a count, as
    Thespian parses them; the module global has the variable's name unless ``attribute``
    says otherwise.
    """

    env: str
    text: str
    module: str
    attribute: str = ""

    @property
    def global_name(self) -> str:
        return self.attribute or self.env

    def value(self) -> Any:
        """The value as Thespian's global holds it once parsed."""
        if ":" in self.text:
            minutes, seconds = (int(part) for part in self.text.split(":"))
            return timedelta(minutes=minutes, seconds=seconds)
        return int(self.text)


def _as_text(value: Any) -> str:
    if isinstance(value, timedelta):
        minutes, seconds = divmod(int(value.total_seconds()), 60)
        return f"{minutes}:{seconds:02d}"
    return str(value)


def apply(settings: Iterable[ThespianSetting], *, by: str) -> None:
    """Make Thespian use ``settings`` in this process and those it forks (idempotent).

    ``by`` names the caller for :func:`require_pinned_thespian` (the globals are
    Thespian's internals: a different Thespian is refused rather than silently missed).
    """
    for setting in settings:
        os.environ[setting.env] = setting.text
        module = sys.modules.get(setting.module)
        if module is not None:
            require_pinned_thespian(by, f"the globals of {setting.module}")
            setattr(module, setting.global_name, setting.value())


def effective(settings: Iterable[ThespianSetting]) -> dict[str, str]:
    """What Thespian's modules hold (importing them), by variable, written as the text."""
    return {
        s.env: _as_text(getattr(importlib.import_module(s.module), s.global_name)) for s in settings
    }

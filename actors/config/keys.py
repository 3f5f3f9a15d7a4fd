"""Config keys as data: how a key is declared, described and checked.

``actors.config.engine_config.EngineConfig`` declares every key as a dataclass field made
by :func:`key`; :func:`settings_of` reads those fields back as :class:`Setting` values and
:func:`check` tests a value against one. Loading lives in ``actors.config.loading``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.errors import ConfigError

__all__ = [
    "CONFIG_PATH_ENV",
    "DURABILITIES",
    "ENV_PREFIX",
    "Setting",
    "check",
    "key",
    "rule_error",
    "settings_of",
]

ENV_PREFIX = "WAE_"
"""Environment variables ``WAE_<KEY>`` override config keys (``WAE_MAX_INSTANCES=50``)."""

CONFIG_PATH_ENV = "WAE_CONFIG"
"""Environment variable naming a TOML file to load when no path is given."""


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


DURABILITIES = ("fsync", "os", "off")
"""Values of the ``durability`` key (``actors.engine.intake`` says what each survives)."""


def _is_path(text: str) -> bool:
    return bool(text) and "\x00" not in text


# A string key may name a form its value must have: form -> (rule in words, test).
FORMS: dict[str, tuple[str, Callable[[str], bool]]] = {
    "ipv4": ("an IPv4 address literal", _is_ipv4),
    "durability": (
        "one of " + ", ".join(f"'{d}'" for d in DURABILITIES),
        lambda text: text in DURABILITIES,
    ),
    "path": ("a non-empty file path", _is_path),
}


def key(
    default: Any,
    *,
    doc: str,
    source: str,
    lo: float | None = None,
    hi: float | None = None,
    above: float | None = None,
    form: str | None = None,
) -> Any:
    """Declare one config key: a dataclass field whose metadata :func:`settings_of` reads."""
    return field(
        default=default,
        metadata={
            "doc": doc,
            "source": source,
            "lo": lo,
            "hi": hi,
            "above": above,
            "form": form,
        },
    )


@dataclass(frozen=True, slots=True)
class Setting:
    """The description of one config key: for validation, loading and the README table."""

    name: str
    type: type
    default: Any
    doc: str
    source: str
    lo: float | None
    hi: float | None
    above: float | None
    form: str | None = None

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def rule(self) -> str:
        """The rule in words, e.g. ``an integer >= 1``."""
        kind = {int: "an integer", float: "a finite number", bool: "a boolean", str: "a string"}
        if self.form is not None:
            return f"{kind[self.type]} holding {FORMS[self.form][0]}"
        parts = [kind[self.type]]
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.lo is not None:
            parts.append(f">= {self.lo:g}")
        if self.hi is not None:
            parts.append(f"<= {self.hi:g}")
        return " ".join(parts[:1]) + (" " + " and ".join(parts[1:]) if parts[1:] else "")


_SETTINGS: dict[type, tuple[Setting, ...]] = {}


def settings_of(cls: type) -> tuple[Setting, ...]:
    """Return the description of every key a config class declares, in declaration order."""
    found = _SETTINGS.get(cls)
    if found is None:
        types = {"int": int, "float": float, "bool": bool, "str": str}
        found = _SETTINGS[cls] = tuple(
            Setting(
                name=f.name,
                type=types[str(f.type)],
                default=f.default,
                doc=f.metadata["doc"],
                source=f.metadata["source"],
                lo=f.metadata["lo"],
                hi=f.metadata["hi"],
                above=f.metadata["above"],
                form=f.metadata["form"],
            )
            for f in dataclasses.fields(cls)
        )
    return found


def rule_error(spec: Setting, value: Any, origin: str | None) -> ConfigError:
    where = f" (from {origin})" if origin else ""
    return ConfigError(f"{spec.name} = {value!r}{where}: must be {spec.rule}")


def check(spec: Setting, value: Any, origin: str | None) -> Any:
    """Return ``value`` if it meets ``spec``'s rule (an int becomes a float for a float key).

    Raises:
        ConfigError: naming the key, the value, ``origin`` (when given) and the rule.
    """
    kind = type(value)
    if spec.type is float:
        try:
            ok = kind in (int, float) and math.isfinite(value)
        except OverflowError:  # an int too large for a float (TOML integers are unbounded)
            ok = False
        value = float(value) if ok else value
    else:
        ok = kind is spec.type  # exact: True is not an integer here
    if not ok or (spec.form is not None and not FORMS[spec.form][1](value)):
        raise rule_error(spec, value, origin)
    if spec.type in (int, float) and (
        (spec.lo is not None and value < spec.lo)
        or (spec.hi is not None and value > spec.hi)
        or (spec.above is not None and value <= spec.above)
    ):
        raise rule_error(spec, value, origin)
    return value

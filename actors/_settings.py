"""Config keys as data: their descriptions, validation, loading and the README table.

``actors.config.EngineConfig`` declares every key as a dataclass field made by :func:`key`;
this module reads those fields back as :class:`Setting` values, checks values against
them, and builds configs from a TOML file, ``WAE_*`` variables and keyword overrides.
``actors.config`` re-exports the public names; import them from there.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.errors import ConfigError

if TYPE_CHECKING:
    from actors.config import EngineConfig

__all__ = [
    "CONFIG_PATH_ENV",
    "ENV_PREFIX",
    "Setting",
    "check",
    "key",
    "load_config",
    "markdown_table",
    "settings",
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


# A string key may name a form its value must have: form -> (rule in words, test).
FORMS: dict[str, tuple[str, Callable[[str], bool]]] = {
    "ipv4": ("an IPv4 address literal", _is_ipv4),
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
    """Declare one config key: a dataclass field whose metadata :func:`settings` reads."""
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


_SETTINGS: tuple[Setting, ...] = ()


def settings() -> tuple[Setting, ...]:
    """Return the description of every config key, in declaration order."""
    global _SETTINGS
    if not _SETTINGS:
        from actors.config import EngineConfig  # not at the top: actors.config imports this module

        types = {"int": int, "float": float, "bool": bool, "str": str}
        _SETTINGS = tuple(
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
            for f in dataclasses.fields(EngineConfig)
        )
    return _SETTINGS


def _fail(spec: Setting, value: Any, origin: str | None) -> ConfigError:
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
        raise _fail(spec, value, origin)
    if spec.type in (int, float) and (
        (spec.lo is not None and value < spec.lo)
        or (spec.hi is not None and value > spec.hi)
        or (spec.above is not None and value <= spec.above)
    ):
        raise _fail(spec, value, origin)
    return value


def _parse_env(spec: Setting, raw: str, origin: str) -> Any:
    text = raw.strip()
    try:
        if spec.type is int:
            return int(text, 10)
        if spec.type is float:
            return float(text)
    except ValueError:
        raise _fail(spec, raw, origin) from None
    if spec.type is bool:
        words = {"1": True, "true": True, "yes": True, "on": True}
        words |= {"0": False, "false": False, "no": False, "off": False}
        if text.lower() not in words:
            raise _fail(spec, raw, origin)
        return words[text.lower()]
    return raw


def _unknown(name: str, origin: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {name!r} (from {origin}){hint}")


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> EngineConfig:
    """Build an ``EngineConfig``; see ``EngineConfig.load``."""
    from actors.config import EngineConfig  # not at the top: actors.config imports this module

    env = os.environ if env is None else env
    by_name = {spec.name: spec for spec in settings()}
    values: dict[str, Any] = {}

    if path is None and env.get(CONFIG_PATH_ENV):
        path = env[CONFIG_PATH_ENV]
    if path is not None:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except (OSError, ValueError) as exc:  # TOMLDecodeError, and tomllib's int digit limit
            raise ConfigError(f"cannot read config file {os.fspath(path)!r}: {exc}") from None
        table = doc.get("engine", {})
        if not isinstance(table, dict):
            raise ConfigError(f"[engine] in {os.fspath(path)!r} must be a table")
        for name, value in table.items():
            origin = f"{Path(path).name} [engine]"
            if name not in by_name:
                raise _unknown(name, origin, list(by_name))
            values[name] = check(by_name[name], value, origin)

    env_names = {spec.env_var: spec for spec in settings()}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_PATH_ENV:
            continue
        spec = env_names.get(var)
        if spec is None:
            raise _unknown(var, "environment", list(env_names))
        values[spec.name] = check(spec, _parse_env(spec, raw, var), var)

    for name, value in overrides.items():
        if name not in by_name:
            raise _unknown(name, "keyword argument", list(by_name))
        values[name] = check(by_name[name], value, "keyword argument")

    return EngineConfig(**values)


def _show(value: Any) -> str:
    if type(value) is int and abs(value) >= 10_000:
        return f"{value:_}"
    return repr(value)


def markdown_table() -> str:
    """Return README's configuration table, generated from the settings themselves."""
    rows = [
        "| key | default | rule | source | what it bounds |",
        "|---|---|---|---|---|",
    ]
    for spec in settings():
        rows.append(
            f"| `{spec.name}` | `{_show(spec.default)}` | {spec.rule} | {spec.source} "
            f"| {spec.doc} |"
        )
    return "\n".join(rows) + "\n"

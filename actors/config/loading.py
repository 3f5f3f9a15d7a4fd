"""Building a config from its sources: defaults, a TOML table, ``WAE_*`` variables, overrides.

Every value is checked against its key's rule (``actors.config.keys.check``) and an error
names the key, the value, where it came from and the rule. The functions take the config
class as an argument, so this module does not import it (``EngineConfig.load`` calls here).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from actors.config.keys import CONFIG_PATH_ENV, ENV_PREFIX, Setting, check, rule_error, settings_of
from actors.errors import ConfigError

__all__ = ["build", "load", "markdown_table", "read_toml"]

C = TypeVar("C")

TABLE = "engine"
"""The TOML table that holds the engine's keys."""


def _parse_env(spec: Setting, raw: str, origin: str) -> Any:
    text = raw.strip()
    try:
        if spec.type is int:
            return int(text, 10)
        if spec.type is float:
            return float(text)
    except ValueError:
        raise rule_error(spec, raw, origin) from None
    if spec.type is bool:
        words = {"1": True, "true": True, "yes": True, "on": True}
        words |= {"0": False, "false": False, "no": False, "off": False}
        if text.lower() not in words:
            raise rule_error(spec, raw, origin)
        return words[text.lower()]
    return raw


def _unknown(name: str, origin: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {name!r} (from {origin}){hint}")


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a TOML file.

    Raises:
        ConfigError: the file cannot be read or is not valid TOML.
    """
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, ValueError) as exc:  # TOMLDecodeError, and tomllib's int digit limit
        raise ConfigError(f"cannot read config file {os.fspath(path)!r}: {exc}") from None


def _engine_table(path: str | os.PathLike[str]) -> dict[str, Any]:
    # A file given for the engine must hold an [engine] table: a misspelled or missing one
    # would otherwise be ignored and the run would quietly use the defaults. Other tables
    # (a gateway's [[accounts]], say) may share the file, unless they look like a typo.
    doc = read_toml(path)
    name = os.fspath(path)
    for table in doc:
        if table != TABLE and difflib.get_close_matches(table, [TABLE], n=1, cutoff=0.6):
            raise ConfigError(f"unknown table [{table}] in {name!r}; did you mean [{TABLE}]?")
    if TABLE not in doc:
        found = ", ".join(f"[{t}]" for t in doc) or "no tables"
        raise ConfigError(f"no [{TABLE}] table in {name!r} (it has {found}): nothing to read")
    return doc[TABLE]  # type: ignore[no-any-return]


def build(
    cls: type[C],
    *,
    table: Any = None,
    table_origin: str = "",
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    overrides_origin: str = "keyword argument",
) -> C:
    """Build a ``cls`` from a TOML table's keys, ``WAE_*`` variables and overrides, in that order.

    Raises:
        ConfigError: ``table`` is not a table, an unknown key, or a value that breaks its rule.
    """
    env = os.environ if env is None else env
    specs = settings_of(cls)
    by_name = {spec.name: spec for spec in specs}
    values: dict[str, Any] = {}

    if table is not None:
        if not isinstance(table, dict):
            raise ConfigError(f"{table_origin} must be a table")
        for name, value in table.items():
            if name not in by_name:
                raise _unknown(name, table_origin, list(by_name))
            values[name] = check(by_name[name], value, table_origin)

    env_names = {spec.env_var: spec for spec in specs}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_PATH_ENV:
            continue
        spec = env_names.get(var)
        if spec is None:
            raise _unknown(var, "environment", list(env_names))
        values[spec.name] = check(spec, _parse_env(spec, raw, var), var)

    for name, value in (overrides or {}).items():
        if name not in by_name:
            raise _unknown(name, overrides_origin, list(by_name))
        values[name] = check(by_name[name], value, overrides_origin)

    return cls(**values)


def load(
    cls: type[C],
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    overrides_origin: str = "keyword argument",
) -> C:
    """Build a ``cls``; see ``EngineConfig.load``."""
    env = os.environ if env is None else env
    if path is None and env.get(CONFIG_PATH_ENV):
        path = env[CONFIG_PATH_ENV]
    table, origin = None, ""
    if path is not None:
        table, origin = _engine_table(path), f"{Path(path).name} [{TABLE}]"
    return build(
        cls,
        table=table,
        table_origin=origin,
        env=env,
        overrides=overrides,
        overrides_origin=overrides_origin,
    )


def _show(value: Any) -> str:
    if type(value) is int and abs(value) >= 10_000:
        return f"{value:_}"
    return repr(value)


def markdown_table(cls: type) -> str:
    """Return README's configuration table, generated from the settings themselves."""
    rows = [
        "| key | default | rule | source | what it bounds |",
        "|---|---|---|---|---|",
    ]
    for spec in settings_of(cls):
        rows.append(
            f"| `{spec.name}` | `{_show(spec.default)}` | {spec.rule} | {spec.source} "
            f"| {spec.doc} |"
        )
    return "\n".join(rows) + "\n"

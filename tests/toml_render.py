"""Write TOML from Python values, for tests that build config files with odd values.

Only what config tests need: tables and arrays of tables at the top, and as values
strings, integers (any size), floats (``nan``/``inf`` included), booleans, dates and
times, arrays and inline tables.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

__all__ = ["render_document", "render_value"]


def render_value(value: Any) -> str:
    """One TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_escape(ch) for ch in value) + '"'
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {render_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def render_document(doc: dict[str, Any]) -> str:
    """A document: scalars first, then ``[table]``s, then ``[[array]]``s of tables."""
    lines = [f"{k} = {render_value(v)}" for k, v in doc.items() if not _is_table(v)]
    for name, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"\n[{name}]")
            lines += [f"{k} = {render_value(v)}" for k, v in value.items()]
        elif _is_table(value):
            for item in value:
                lines.append(f"\n[[{name}]]")
                lines += [f"{k} = {render_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _escape(ch: str) -> str:
    if ch in '"\\':
        return "\\" + ch
    if ord(ch) < 0x20 or ord(ch) == 0x7F:  # control characters must be escaped in TOML
        return f"\\u{ord(ch):04x}"
    return ch


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )

"""Value types of the load runner's options: each says the rule a bad value broke.

argparse reports a ``ValueError`` from a type function as "invalid <name> value"; these
raise ``ArgumentTypeError`` with the rule instead (``must be a number >= 0, got 'fast'``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = [
    "MAX_SWEEP_STEPS",
    "count",
    "count_list",
    "fraction",
    "non_negative",
    "positive",
    "setting",
]

MAX_SWEEP_STEPS = 20
"""Most values ``--accounts-sweep`` takes: each is a whole run of its own."""


def _number(text: str, rule: str, ok: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number between 0 and 1."""
    return _number(text, "a number between 0 and 1", lambda v: 0.0 <= v <= 1.0)


def non_negative(text: str) -> float:
    """A number >= 0."""
    return _number(text, "a number >= 0", lambda v: v >= 0.0)


def positive(text: str) -> float:
    """A number > 0."""
    return _number(text, "a number > 0", lambda v: v > 0.0)


def _integer(text: str) -> int | None:
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        return None
    return value if value >= 1 else None


def count(text: str) -> int:
    """An integer >= 1; ``10_000`` and ``10,000`` are read as 10000."""
    value = _integer(text.replace(",", ""))
    if value is None:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def batch_size(text: str) -> int:
    """``auto`` (0: the load runner sizes each submission) or an integer >= 1."""
    return 0 if text.strip().lower() == "auto" else count(text)


def count_list(text: str) -> tuple[int, ...]:
    """Integers >= 1 separated by commas (``4,20,100``), at most :data:`MAX_SWEEP_STEPS`."""
    values = [_integer(part) for part in text.split(",")]
    if not text.strip() or any(v is None for v in values):
        raise argparse.ArgumentTypeError(
            f"must be integers >= 1 separated by commas (e.g. 4,20,100), got {text!r}"
        )
    if len(values) > MAX_SWEEP_STEPS:
        raise argparse.ArgumentTypeError(
            f"takes at most {MAX_SWEEP_STEPS} values (each is a run), got {len(values)}"
        )
    return tuple(v for v in values if v is not None)


def setting(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` for ``--set``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()

"""Argument validators shared by the pure cores, so every core refuses bad bounds alike.

Each validator returns the value when it is acceptable and otherwise raises ``ValueError``
in one wording that names the argument, the rule and the value, e.g.
``max_recipients must be an int >= 1, got 0`` or
``timeout_s must be a finite number > 0, got nan``.

``bool`` is refused everywhere although it subclasses ``int``: ``True`` passed as a limit
is a bug, not a 1.
"""

from __future__ import annotations

import math

__all__ = ["require_int", "require_number"]


def require_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Return ``value`` if it is an int (not bool), at least ``minimum`` when one is given.

    Args:
        name: how the message refers to the value: the argument's name, or a path to it
            such as ``"provider 'a': priority"``.
        value: the value to check.
        minimum: the smallest value allowed, or None for any int.

    Raises:
        ValueError: e.g. ``max_recipients must be an int >= 1, got 0``.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or (minimum is not None and value < minimum)
    ):
        rule = "an int" if minimum is None else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return value


def require_number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_exclusive: bool = False,
    max_exclusive: bool = False,
) -> float:
    """Return ``value`` as a float if it is a finite int or float (not bool) within bounds.

    Args:
        name: how the message refers to the value (see :func:`require_int`).
        value: the value to check.
        minimum: the lower bound, or None for none.
        maximum: the upper bound, or None for none.
        min_exclusive: refuse ``value == minimum`` too.
        max_exclusive: refuse ``value == maximum`` too.

    Raises:
        ValueError: e.g. ``timeout_s must be a finite number > 0, got nan``. An int too
            large to convert to a float is refused as not finite.
    """
    # Bounds are compared with ``value`` itself, not its float, so a large int is judged
    # exactly rather than after rounding.
    if not isinstance(value, bool) and isinstance(value, int | float) and _finite(value):
        low_ok = minimum is None or (value > minimum if min_exclusive else value >= minimum)
        high_ok = maximum is None or (value < maximum if max_exclusive else value <= maximum)
        if low_ok and high_ok:
            return float(value)
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>' if min_exclusive else '>='} {_bound(minimum)}")
    if maximum is not None:
        bounds.append(f"{'<' if max_exclusive else '<='} {_bound(maximum)}")
    rule = " ".join(["a finite number", " and ".join(bounds)]).rstrip()
    raise ValueError(f"{name} must be {rule}, got {value!r}")


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def _bound(bound: float) -> str:
    # 0 rather than 0.0, so the rule reads the same whatever type the caller wrote it in.
    if isinstance(bound, float) and bound.is_integer() and abs(bound) < 1e16:
        return repr(int(bound))
    return repr(bound)

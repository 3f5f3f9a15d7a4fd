"""Tests for the argument validators shared by the cores (actors.cores._args)."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

import pytest

from actors.cores._args import require_int, require_number


def refused(message: str) -> pytest.RaisesExc[ValueError]:
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


# -- require_int ---------------------------------------------------------------------------


class Count(int):
    pass


@pytest.mark.parametrize("value", [1, 2, 10**400, Count(3)])
def test_an_int_at_or_above_the_minimum_is_returned_unchanged(value: int) -> None:
    assert require_int("n", value, minimum=1) is value


def test_without_a_minimum_any_int_is_accepted() -> None:
    assert require_int("priority", -(10**400)) == -(10**400)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "max_recipients must be an int >= 1, got 0"),
        (True, "max_recipients must be an int >= 1, got True"),
        (1.0, "max_recipients must be an int >= 1, got 1.0"),
        ("1", "max_recipients must be an int >= 1, got '1'"),
        (None, "max_recipients must be an int >= 1, got None"),
    ],
)
def test_an_int_below_the_minimum_or_a_non_int_is_refused(value: object, message: str) -> None:
    with refused(message):
        require_int("max_recipients", value, minimum=1)


def test_bool_is_refused_even_without_a_minimum() -> None:
    with refused("provider 'a': priority must be an int, got False"):
        require_int("provider 'a': priority", False)


# -- require_number ------------------------------------------------------------------------


class Seconds(float):
    pass


@pytest.mark.parametrize("value", [1, 0.5, 5e-324, 1e308, Seconds(2.5)])
def test_a_finite_number_within_the_bounds_is_returned_as_a_float(value: float) -> None:
    result = require_number("timeout_s", value, minimum=0, min_exclusive=True)
    assert type(result) is float
    assert result == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "timeout_s must be a finite number > 0, got 0"),
        (-0.0, "timeout_s must be a finite number > 0, got -0.0"),
        (math.nan, "timeout_s must be a finite number > 0, got nan"),
        (math.inf, "timeout_s must be a finite number > 0, got inf"),
        (-math.inf, "timeout_s must be a finite number > 0, got -inf"),
        (True, "timeout_s must be a finite number > 0, got True"),
        ("5", "timeout_s must be a finite number > 0, got '5'"),
        (Decimal("5"), "timeout_s must be a finite number > 0, got Decimal('5')"),
        (Fraction(1, 2), "timeout_s must be a finite number > 0, got Fraction(1, 2)"),
    ],
)
def test_a_non_number_or_a_number_out_of_range_is_refused(value: object, message: str) -> None:
    with refused(message):
        require_number("timeout_s", value, minimum=0, min_exclusive=True)


def test_an_int_too_large_for_a_float_is_refused_as_not_finite() -> None:
    with pytest.raises(ValueError, match=r"^tick_s must be a finite number > 0, got 1000"):
        require_number("tick_s", 10**400, minimum=0, min_exclusive=True)


@pytest.mark.parametrize(
    ("kwargs", "accepted", "refused_value", "rule"),
    [
        ({"minimum": 0}, 0.0, -0.1, ">= 0"),
        ({"minimum": 0, "min_exclusive": True}, 0.1, 0.0, "> 0"),
        ({"maximum": 1}, 1.0, 1.5, "<= 1"),
        ({"maximum": 1, "max_exclusive": True}, 0.5, 1.0, "< 1"),
        ({"minimum": 0, "maximum": 1, "min_exclusive": True}, 1.0, 0.0, "> 0 and <= 1"),
        ({"minimum": 0.1}, 0.1, 0.05, ">= 0.1"),
        ({"minimum": 1.0}, 1, 0.5, ">= 1"),
        ({}, -1e308, math.nan, ""),
    ],
)
def test_each_bound_is_inclusive_unless_marked_exclusive_and_is_named_in_the_rule(
    kwargs: dict[str, float], accepted: float, refused_value: float, rule: str
) -> None:
    assert require_number("x", accepted, **kwargs) == accepted  # type: ignore[arg-type]
    expected = f"x must be a finite number {rule}".rstrip()
    with refused(f"{expected}, got {refused_value!r}"):
        require_number("x", refused_value, **kwargs)  # type: ignore[arg-type]


def test_a_large_int_is_compared_exactly_not_after_rounding_to_float() -> None:
    # float(2**60 - 1) == 2.0**60, so comparing the float would wrongly accept it.
    with refused("n must be a finite number >= 1.152921504606847e+18, got 1152921504606846975"):
        require_number("n", 2**60 - 1, minimum=float(2**60))

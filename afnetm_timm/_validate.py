"""Checks of scalar arguments, shared by the preprocessing, the synthetic set and the trainer: a bad value is a
ValueError naming the argument and the allowed range, never a TypeError from deep inside."""
from __future__ import annotations

import math
import operator
from typing import Any

__all__ = ["check_finite", "check_int"]


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int if it is an integer in [low, high] (bools and floats are not), else a ValueError."""
    allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be {allowed}, got {value!r}") from None
    if number < low or (high is not None and number > high):
        raise ValueError(f"{name} must be {allowed}, got {number}")
    return number


def check_finite(name: str, value: Any) -> float:
    """``value`` as a finite float, else a ValueError naming ``name``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number

"""Ramp and shift step lists: percentages of traffic, validated in one place.

Used by ``failover_settings.failback.ramp_steps`` (a config error with its key path) and by
``shift`` (an ``OperatorError``). Kept free of plugin imports so ``settings`` can call it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def check_steps(steps: Any) -> tuple[float, ...]:
    """The steps as floats, or ``ValueError`` saying what is wrong: each in (0, 100], strictly
    increasing, the last exactly 100 (a ramp that never reaches full traffic never ends)."""
    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence):
        raise ValueError(f"steps must be a list of percentages (got {steps!r})")
    if not steps:
        raise ValueError("steps must not be empty (the last step must be 100)")
    values: list[float] = []
    for index, raw in enumerate(steps):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError(f"step {index + 1} must be a number (got {raw!r})")
        value = float(raw)
        if not math.isfinite(value) or value <= 0 or value > 100:
            raise ValueError(f"step {index + 1} must be in (0, 100] percent (got {raw!r})")
        if values and value <= values[-1]:
            raise ValueError(
                f"steps must be strictly increasing (step {index + 1}: {value:g} after {values[-1]:g})"
            )
        values.append(value)
    if values[-1] != 100.0:
        raise ValueError(f"the last step must be 100 (got {values[-1]:g})")
    return tuple(values)


def check_interval(interval_s: Any, what: str = "interval_s") -> float:
    """A positive, finite number of seconds, or ``ValueError``."""
    if isinstance(interval_s, bool) or not isinstance(interval_s, int | float):
        raise ValueError(f"{what} must be a number of seconds (got {interval_s!r})")
    value = float(interval_s)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be more than 0 seconds (got {interval_s!r})")
    return value

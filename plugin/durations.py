"""One grammar for every duration the CLI and the control commands take.

A duration is a number of seconds, written as a number with an optional unit::

    DURATION := [+|-] NUMBER [UNIT]        spaces allowed around each part, case-insensitive
    NUMBER   := 90 | 1.5 | .5
    UNIT     := ms | s | m | h | d | w     (no unit: seconds)

So ``500ms``, ``90``, ``90s``, ``1.5m``, ``2h``, ``1d`` and ``1w`` are all durations. A sign is
accepted only so that ``-5m`` is refused for being negative rather than for its spelling. Where a
value arrives as JSON rather than typed (a control command from another replica), a plain int or
float is a number of seconds too.

Every error message starts with what was being read (``--for``, ``--interval``) and shows the
value as given, so the person who typed it can find it. ``--since`` takes a duration (that long
ago) or an ISO-8601 time.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

_DURATION = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d+)?|\.\d+))\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

# The grammar in one line, for the CLI's help texts.
DURATION_HELP = "a number with a unit ms, s, m, h, d or w (no unit: seconds), e.g. 500ms, 90s, 5m, 2h, 1d"


class DurationError(ValueError):
    """A value that is not a duration, or one out of range; the message names the flag or key."""


def parse_duration(value: Any, what: str, *, allow_zero: bool = False) -> float:
    """``value`` (a string in the grammar above, or a number) as seconds: finite, more than 0.

    ``allow_zero`` also takes 0 (for a wait that may be skipped). ``what`` names the flag or key
    in the error message; an empty ``what`` leaves it out (argparse adds the flag itself).
    """
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            problem = f"not a duration (got {value!r}; use e.g. 90, 500ms, 30s, 5m, 2h)"
            raise DurationError(_named(what, problem))
        number = float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise DurationError(_named(what, f"must be a number of seconds (got {value!r})"))
    if allow_zero:
        if not math.isfinite(number) or number < 0:
            raise DurationError(_named(what, f"must be 0 or more seconds (got {value!r})"))
    elif not math.isfinite(number) or number <= 0:
        raise DurationError(_named(what, f"must be more than 0 seconds (got {value!r})"))
    return number


def duration_arg(*, allow_zero: bool = False) -> Callable[[str], float]:
    """An argparse ``type=`` for a duration flag; on a bad value argparse names the flag, exits 2."""

    def parse(value: str) -> float:
        try:
            return parse_duration(value, "", allow_zero=allow_zero)
        except DurationError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def parse_since(value: str, now: datetime | None = None, what: str = "--since") -> datetime:
    """An ISO-8601 time (no zone: UTC), or a duration meaning that long before ``now``.

    The ISO form is tried first, so a date written without dashes (``20250531``) stays a date
    rather than a number of seconds.
    """
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        pass
    else:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    try:
        seconds = parse_duration(value, what, allow_zero=True)
    except DurationError:
        raise DurationError(
            f"invalid {what} value {value!r}: use a duration such as 30s, 10m, 2h, 1d, 1w "
            "or an ISO-8601 time such as 2025-01-31T12:00:00Z"
        ) from None
    return (now or datetime.now(UTC)) - timedelta(seconds=seconds)


def _named(what: str, problem: str) -> str:
    return f"{what}: {problem}" if what else problem

"""Checks for input that came from outside this replica: fleet messages, command rows, Redis entries.

Anything that can write to the fleet's Redis channel or the command table can send this replica
any JSON at all, so every number and string read from there goes through one of these two
helpers before it is used: a number must be finite and inside bounds the caller states (which
come from this replica's own settings where there are any), a string must be short and free of
control characters (it ends up in logs, events and the CLI's tables). Both raise
``UntrustedError`` (a ``ValueError``, so pydantic validators turn it into a validation error).
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_TEXT = 255
"""Identifiers: the store's identifier columns hold this many characters."""
MAX_REASON = 1000
"""Free text (a reason, a message): long enough for any reason this plugin writes."""
LATEST_EPOCH_S = 253_402_300_799.0
"""The last second of the year 9999: the latest time a ``datetime`` can hold."""

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class UntrustedError(ValueError):
    """A remote value that is not acceptable; the message names the field and the bound."""


def bounded_number(value: Any, what: str, *, low: float, high: float) -> float:
    """``value`` as a float if it is a real number (not a bool), finite and in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UntrustedError(f"{what}: must be a number (got {type(value).__name__})")
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float (JSON integers have no size limit)
        number = math.inf
    if not math.isfinite(number):
        raise UntrustedError(f"{what}: must be finite (got {str(value)[:40]})")
    if not low <= number <= high:
        raise UntrustedError(f"{what}: must be between {low:g} and {high:g} (got {number:g})")
    return number


def bounded_text(value: Any, what: str, *, max_len: int = MAX_TEXT, allow_empty: bool = True) -> str:
    """``value`` if it is a string of at most ``max_len`` characters without control characters."""
    if not isinstance(value, str):
        raise UntrustedError(f"{what}: must be a string (got {type(value).__name__})")
    if len(value) > max_len:
        raise UntrustedError(f"{what}: at most {max_len} characters (got {len(value)})")
    if _CONTROL_CHARS.search(value):
        raise UntrustedError(f"{what}: must not contain control characters (got {value[:80]!r})")
    if not value and not allow_empty:
        raise UntrustedError(f"{what}: must not be empty")
    return value

"""The one error every probe reader raises for an answer it cannot read.

Its own module because the lowest layer raises it too: the probe HTTP client (a body over the
limit, an invalid URL) sits below the adapter interface in ``base`` and must not import it.
"""

from __future__ import annotations

import math


class MalformedAnswer(ValueError):
    """A probe answer that could not be read (not JSON, bad Prometheus text, NaN, too big)."""


def finite(value: float, what: str) -> float:
    """Reject NaN and infinities, which Prometheus text allows but no threshold can compare."""
    if math.isnan(value) or math.isinf(value):
        raise MalformedAnswer(f"{what} is {value}")
    return value

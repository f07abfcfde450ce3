"""How long a stream may wait for its first token (``streams.first_token_timeout_s``).

A fixed number when the setting has one. Otherwise derived per model group from its own recent
streams: ``rescue.first_token_p99_multiplier`` times the p99 of their time to first token,
within ``rescue.first_token_floor_s`` and ``rescue.first_token_ceiling_s``, so a stuck prefill
is noticed in seconds on a group that usually answers in milliseconds, while a group that
serves long prompts keeps a long limit. Until a group has ``first_token_min_samples`` streams
the ceiling applies.

The limit is read on every stream's pick and a sort is not free, so the derived value is
recomputed only every few samples (and cached in between).
"""

from __future__ import annotations

import math
from collections import deque

from litellm_failover.settings import RescueSettings

_RECOMPUTE_EVERY = 16  # samples between two recomputations of a group's derived limit


class FirstTokenClock:
    def __init__(self, fixed_s: float | None, settings: RescueSettings) -> None:
        self.fixed_s = fixed_s
        self.settings = settings
        self._samples: dict[str, deque[float]] = {}
        self._since: dict[str, int] = {}
        self._limit: dict[str, float] = {}

    def observe(self, group: str, seconds: float) -> None:
        """A stream of ``group`` got its first token after ``seconds`` (finite, >= 0 only)."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        samples = self._samples.get(group)
        if samples is None:
            samples = self._samples[group] = deque(maxlen=self.settings.first_token_window)
        samples.append(seconds)
        since = self._since.get(group, 0) + 1
        if since >= _RECOMPUTE_EVERY or len(samples) == self.settings.first_token_min_samples:
            since = 0
            self._limit[group] = self._derive(samples)
        self._since[group] = since

    def limit(self, group: str) -> float:
        """The first-token timeout for a new stream of ``group``, in seconds."""
        if self.fixed_s is not None:
            return self.fixed_s
        return self._limit.get(group, self.settings.first_token_ceiling_s)

    def p99(self, group: str) -> float | None:
        samples = self._samples.get(group)
        return _p99(samples) if samples else None

    def stats(self) -> dict[str, dict[str, float | int | None]]:
        return {
            group: {
                "samples": len(samples),
                "p99_s": _round(_p99(samples)),
                "limit_s": round(self.limit(group), 3),
            }
            for group, samples in self._samples.items()
        }

    def _derive(self, samples: deque[float]) -> float:
        s = self.settings
        if len(samples) < s.first_token_min_samples:
            return s.first_token_ceiling_s
        return min(
            max(s.first_token_p99_multiplier * _p99(samples), s.first_token_floor_s), s.first_token_ceiling_s
        )


def _p99(samples: deque[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)

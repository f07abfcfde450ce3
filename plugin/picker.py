"""Pickers: immutable choosers over one tier's members, built off the hot path.

After gRPC's picker: a picker is rebuilt whenever health or weights change, and a request only
calls ``pick``. The weighted picker keeps cumulative weights so a pick is one random draw and a
binary search, O(log n) whatever the group size. Exclusions (deployments that already failed for
this request) are rare, so that path may rebuild a small list on the fly.
"""

from __future__ import annotations

import itertools
import random
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate


class WeightedPicker:
    """Picks in proportion to weight; a zero weight is picked only when no member has more."""

    __slots__ = ("_cumulative", "_ids", "_total", "_weights")

    def __init__(self, ids: Sequence[str], weights: Sequence[float]) -> None:
        self._ids = tuple(ids)
        self._weights = tuple(max(0.0, w) for w in weights)
        self._cumulative = tuple(accumulate(self._weights))
        self._total = self._cumulative[-1] if self._cumulative else 0.0

    @property
    def ids(self) -> tuple[str, ...]:
        return self._ids

    def pick(self, exclude: frozenset[str] = frozenset()) -> str | None:
        if not exclude:
            total = self._total
            if total > 0.0:  # ``_draw``'s usual case inline: this runs on every pick
                ids = self._ids
                return ids[min(bisect_right(self._cumulative, random.random() * total), len(ids) - 1)]
            return self._draw(self._ids, self._cumulative, total)
        kept = [(i, w) for i, w in zip(self._ids, self._weights, strict=True) if i not in exclude]
        if not kept:
            return None
        ids = tuple(i for i, _ in kept)
        cumulative = tuple(accumulate(w for _, w in kept))
        return self._draw(ids, cumulative, cumulative[-1])

    @staticmethod
    def _draw(ids: tuple[str, ...], cumulative: tuple[float, ...], total: float) -> str | None:
        if not ids:
            return None
        if total <= 0.0:
            return random.choice(ids)  # every member is at zero: none is better than another
        index = bisect_right(cumulative, random.random() * total)
        return ids[min(index, len(ids) - 1)]


class RoundRobinPicker:
    """Members in turn. The counter is shared by every request on this picker; ``next`` on an
    ``itertools.count`` is atomic under the GIL, so no lock is needed."""

    __slots__ = ("_counter", "_ids")

    def __init__(self, ids: Sequence[str]) -> None:
        self._ids = tuple(ids)
        self._counter = _turns_of(self._ids)

    @property
    def ids(self) -> tuple[str, ...]:
        return self._ids

    def pick(self, exclude: frozenset[str] = frozenset()) -> str | None:
        if not self._ids:
            return None
        start = next(self._counter)
        if not exclude:
            return self._ids[start % len(self._ids)]
        for offset in range(len(self._ids)):
            candidate = self._ids[(start + offset) % len(self._ids)]
            if candidate not in exclude:
                return candidate
        return None


Picker = WeightedPicker | RoundRobinPicker

# A group's table is rebuilt on every health change and weight refresh. A fresh counter with a
# random start each time would let one member take two turns in a row across a rebuild, so the
# turn is kept per member list (the random start still spreads replicas). Built on the event loop
# only; bounded, because member lists change with health.
_TURNS: dict[tuple[str, ...], Iterator[int]] = {}
_MAX_TURNS = 4096


def _turns_of(ids: tuple[str, ...]) -> Iterator[int]:
    turns = _TURNS.get(ids)
    if turns is None:
        if len(_TURNS) >= _MAX_TURNS:
            _TURNS.clear()
        turns = _TURNS[ids] = itertools.count(random.randrange(max(1, len(ids))))
    return turns


def make_picker(kind: str, ids: Sequence[str], weights: Sequence[float]) -> Picker:
    if kind == "round-robin":
        return RoundRobinPicker(ids)
    return WeightedPicker(ids, weights)

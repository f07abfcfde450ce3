"""``GroupPlan``: what traffic switching asks of one group's next routing table.

Part of the core layer: the routing table and the core read it, and the switching feature
(``litellm_failover.switching``) produces it, so the core never imports a feature package. The
switching state changes; each time it does, the core rebuilds the group's table from the health
records and this plan, so a request only ever reads an immutable snapshot (DESIGN principle 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Split:
    """``share`` (0..1) of the group's new requests go to ``ids`` (those of them the table admits);
    the rest go to ``base`` first when it is set (the target of an earlier, completed shift), else
    to the normal tiers without ``ids``. ``ids`` stay a last fallback either way."""

    ids: frozenset[str]
    share: float
    base: frozenset[str] | None = None


def _empty() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class GroupPlan:
    draining: frozenset[str] = frozenset()  # no new requests, ever, while drained
    held: frozenset[str] = frozenset()  # routable, but waiting for hold-down or manual failback
    ramp: Mapping[str, float] = field(default_factory=_empty)  # slow-start factor (0..1) per member
    split: Split | None = None


EMPTY_PLAN = GroupPlan()

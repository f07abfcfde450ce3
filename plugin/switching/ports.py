"""What traffic switching reads from the rest of the plugin: two narrow interfaces.

- ``InFlightView``: attempts in flight per deployment (what a drain waits for). The request path
  owns the book of attempts; switching only counts.
- ``CoreView``: the core's published snapshot, its clock, and a table built under another plan
  (``preview``) without swapping it in. Switching never changes the core itself: it returns
  ``Effects`` that the core applies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from litellm_failover.plan import GroupPlan
from litellm_failover.routing_table import RoutingTable
from litellm_failover.snapshot import CoreSnapshot


class InFlightView(Protocol):
    def count(self, deployment_id: str) -> int: ...

    def counts(self) -> dict[str, int]: ...

    def stats(self) -> dict[str, Any]: ...

    @property
    def expired(self) -> Mapping[str, int]:
        """Attempts forgotten per deployment (lost end signals), since start."""
        ...


class CoreView(Protocol):
    @property
    def snapshot(self) -> CoreSnapshot: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    def preview(self, group: str, plan: GroupPlan) -> RoutingTable: ...


__all__ = ["CoreView", "InFlightView"]

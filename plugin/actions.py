"""What a planner asks of the core: announce an event, eject a deployment, rebuild a group.

Traffic switching (``litellm_failover.switching``) decides; it does not act. Each of its entry
points returns ``Effects``, an ordered tuple of these values, and ``FailoverCore.apply`` carries
them out in that order. The planner is therefore never inside one of its own calls while the core
calls it back (an ejection it asked for reaches it again as a health transition only once it has
returned), which is what the old ``rebuild=False`` flags and re-entrancy guards papered over.

Part of the core layer, like ``plan``: the core reads these types, the feature package builds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


def _no_details() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Announce:
    """An event of ``event_type`` (an ``EventType`` value) for ``group``; the core stamps its
    instance id and hands it to the sink and the listeners."""

    event_type: str
    group: str
    reason: str
    deployment_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=_no_details)


@dataclass(frozen=True, slots=True)
class Eject:
    """Eject a routable deployment on a switching decision (a ramp aborted on its errors)."""

    deployment_id: str
    reason: str
    source: str
    details: Mapping[str, Any] = field(default_factory=_no_details)


@dataclass(frozen=True, slots=True)
class Rebuild:
    """Rebuild ``group``'s table from the planner's current plan; a change of the serving set is
    a ``failover`` event with ``details["source"] = source``."""

    group: str
    source: str
    reason: str
    deployment_id: str | None = None


Action = Announce | Eject | Rebuild
Effects = tuple[Action, ...]
NOTHING: Effects = ()

__all__ = ["NOTHING", "Action", "Announce", "Effects", "Eject", "Rebuild"]

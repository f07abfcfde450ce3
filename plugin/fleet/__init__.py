"""Fleets: several proxy replicas sharing what each one learns, through Redis.

With ``failover_settings.redis_url`` set, every replica publishes its own ejections, recoveries
and session pins (pub/sub, plus state keys with a TTL for replicas that start later) and applies
the others' within a second, while still running its own probes. ``messages`` is the wire format,
``sync`` the Redis link, ``fleet`` the receive/dispatch logic, ``apply`` the bridge to the core.
"""

from __future__ import annotations

from litellm_failover.fleet.apply import CoreApplier, PinListener, fleet_for
from litellm_failover.fleet.fleet import Fleet, FleetApplier
from litellm_failover.fleet.messages import SCHEMA_VERSION, Ejection, Envelope, MessageError, Pin, Recovery
from litellm_failover.fleet.naming import require_redis_client

__all__ = [
    "SCHEMA_VERSION",
    "CoreApplier",
    "Ejection",
    "Envelope",
    "Fleet",
    "FleetApplier",
    "MessageError",
    "Pin",
    "PinListener",
    "Recovery",
    "fleet_for",
    "require_redis_client",
]

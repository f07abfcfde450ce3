"""Audit records: what the plugin decided, in the shape the events table stores.

Events are plain frozen dataclasses so the hot path can build one without touching SQL; the
store writer turns them into rows later, in batches, off the request path.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    STATE_CHANGE = "state_change"  # a deployment moved between health states
    FAILOVER = "failover"  # the deployment(s) a group serves from changed
    REQUEST_FAILOVER = "request_failover"  # one request was served by other than its first pick
    PANIC_MODE = "panic_mode"  # a whole group is out: routing to all of it (or leaving that mode)
    SESSION_REPINNED = "session_repinned"  # a session moved to another deployment (failover)
    CONTEXT_REBUILT = "context_rebuilt"  # a stateful request's history was rebuilt from the store
    ALERT_FAILED = "alert_failed"  # an alert could not be delivered after its retries
    # Traffic switching (litellm_failover.switching).
    DRAIN_STARTED = "drain_started"  # no new requests to a deployment; in-flight work finishes
    DRAIN_COMPLETED = "drain_completed"  # its in-flight work finished (or was cut at the timeout)
    UNDRAINED = "undrained"  # a drained deployment takes traffic again, through the ramp
    FAILBACK_PENDING = "failback_pending"  # a recovered primary is held (hold-down or manual)
    FAILBACK_STEP = "failback_step"  # a failback ramp step: the primary tier gets `percent` %
    FAILBACK_COMPLETED = "failback_completed"  # the primary tier serves the group again
    RAMP_STEP = "ramp_step"  # slow start of one deployment inside its tier: weight x `percent` %
    RAMP_COMPLETED = "ramp_completed"  # that deployment is at its full weight
    RAMP_ABORTED = "ramp_aborted"  # a failback ramp or slow start stopped on errors (re-ejected)
    SHIFT_STEP = "shift_step"  # a canary shift step: the target gets `percent` %
    SHIFT_COMPLETED = "shift_completed"  # the target gets all of the group's traffic
    SHIFT_ROLLED_BACK = "shift_rolled_back"  # a shift stopped (errors, operator) and was undone
    # Mid-stream failover (litellm_failover.streams).
    STREAM_RESUMED = "stream_resumed"  # a stream that broke continued on another deployment
    STREAM_BROKEN = "stream_broken"  # a stream broke and could not be continued: the client saw an error
    # Fault injection for drills (litellm_failover.chaos); never one per injected request.
    CHAOS_INJECTED = "chaos_injected"  # an operator started a fault on a deployment
    CHAOS_CLEARED = "chaos_cleared"  # an operator ended it (or replaced it); details: injected count
    CHAOS_EXPIRED = "chaos_expired"  # it reached its end time; details: injected count


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class FailoverEvent:
    """One row of ``failover_events``. ``details`` must be JSON-serialisable and secret-free."""

    event_type: str
    model_group: str
    deployment_id: str | None = None
    from_deployment: str | None = None
    to_deployment: str | None = None
    reason: str = ""
    request_id: str | None = None
    instance_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True, slots=True)
class DeploymentStateRow:
    """The current state of one deployment: upserted into ``failover_deployment_state``."""

    deployment_id: str
    model_group: str
    state: str
    reason: str
    instance_id: str
    checks: dict[str, Any] = field(default_factory=dict)
    ejection_count: int = 0
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class SessionRow:
    """Upserted into ``failover_sessions``: one row per (session, model group).

    ``turns`` is the number of completed turns the writer adds to the stored count (an upsert
    adds, so replicas writing turns of one session never lose each other's counts).
    """

    session_id: str
    model_group: str
    pinned_deployment: str | None
    turns: int = 0
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One message of a session in ``failover_messages``; ``seq`` is its position in the
    conversation (0-based), and (session_id, seq) is unique: storing the same position twice
    (a client resending its history, a replica restarting) keeps the first row.

    ``content`` is None when content storage is off or the message is over the size cap; the
    hash (sha256 of the text) and the token counts are always kept.
    """

    session_id: str
    seq: int
    role: str
    content: str | None
    content_hash: str
    content_chars: int
    deployment_id: str | None = None
    response_id: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    truncated: bool = False
    created_at: datetime = field(default_factory=utcnow)

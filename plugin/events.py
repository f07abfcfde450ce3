"""Audit records: what the plugin decided, in the shape the events table stores.

Events are plain frozen dataclasses so the hot path can build one without touching SQL; the
store writer turns them into rows later, in batches, off the request path.

``EVENT_TYPES`` is the registry of every event type: what it records and the keys of its
``details``. The docs' event reference is generated from it, so a new type without a
description fails the docs build instead of going undocumented.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
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
    # Rescue (litellm_failover.rescue): an attempt that waited on a sick node was retried elsewhere.
    REQUEST_RESCUED = "request_rescued"
    # Fault injection for drills (litellm_failover.chaos); never one per injected request.
    CHAOS_INJECTED = "chaos_injected"  # an operator started a fault on a deployment
    CHAOS_CLEARED = "chaos_cleared"  # an operator ended it (or replaced it); details: injected count
    CHAOS_EXPIRED = "chaos_expired"  # it reached its end time; details: injected count
    # Operator commands (litellm_failover.control): one per replica and command.
    OPERATOR_COMMAND = "operator_command"  # a replica received an operator command
    MESSAGE_REJECTED = "message_rejected"  # a command or fleet message failed authentication
    DEPLOYMENT_ADDED = "deployment_added"  # a deployment LiteLLM routes is now managed too
    DEPLOYMENT_UPDATED = "deployment_updated"  # a managed deployment's fields changed in LiteLLM
    DEPLOYMENT_REMOVED = "deployment_removed"  # deleted from LiteLLM: its state, pins, counts released
    DEPLOYMENT_REFUSED = "deployment_refused"  # added with an invalid model_info.failover: not routed


@dataclass(frozen=True, slots=True)
class EventDoc:
    """What one event type records, and the meaning of each key its ``details`` may carry."""

    description: str
    details: Mapping[str, str] = field(default_factory=dict)


_FAULT = {
    "fault_id": "the fault's id",
    "deployment_id": "the deployment it targets",
    "kind": "`error`, `latency` or `stream_cut`",
    "probability": "the share of attempts it hits",
    "started_at": "when it started (ISO-8601, UTC)",
    "ends_at": "when it ends by itself (ISO-8601, UTC)",
    "issued_by": "`user@host` of the CLI that asked for it",
    "source": "how it was asked for: `api` from Python, else the operator command that carried it",
    "status": "`error` faults: the HTTP status raised",
    "delay_s": "`latency` faults: the added delay",
    "after_chunks": "`stream_cut` faults: chunks of text before the cut",
}
_FAULT_ENDED = {
    **_FAULT,
    "injected": "attempts the fault hit while it was active",
    "ended_via": "what ended it (the command's transport, `expiry`)",
}
_STEP = {
    "step": "the step's number, from 1",
    "steps": "every step's percent",
    "percent": "the share of the group's new requests that goes to `to` from this step on",
    "to": "where traffic moves: the tier (`tier:N`) or deployment",
    "deployments": "the deployments that take that share",
    "via": "who asked (an operator command's issuer, or the plugin itself)",
    "source": "`failback` or `shift`",
}

_JOIN = {"tier": "its tier (`order`)", "weight": "its static weight", "source": "`litellm`: its model list"}

EVENT_TYPES: Mapping[EventType, EventDoc] = {
    EventType.STATE_CHANGE: EventDoc(
        "A deployment moved between `healthy`, `degraded`, `unhealthy` and `recovering`. "
        "`request_id` is the request whose failure ejected it, when traffic did.",
        {
            "from_state": "the state it left",
            "to_state": "the state it entered",
            "source": "what moved it: `probe`, `traffic`, `timer`, `fleet` (another replica) or `ramp` "
            "(an aborted failback ramp)",
            "outcome": "`traffic`: the attempt outcome that ejected it (a 5xx, a timeout, a refused "
            "connection, a cut stream)",
            "ejection_count": "ejections counted for flap damping (each doubles the next ejection time)",
            "error": "`traffic`: the error text, redacted, at most 300 characters",
            "origin_instance": "`fleet`: the replica that decided it",
            "remaining_s": "`fleet`: the ejection time the other replica had left",
            "group_ramp": "`ramp`: the failback ramp that was aborted",
        },
    ),
    EventType.FAILOVER: EventDoc(
        "The deployments a group serves from changed, e.g. the primary tier to the standby "
        "(`from_deployment` and `to_deployment` list them, comma-separated).",
        {
            "from": "the deployments it served from before",
            "to": "the deployments it serves from now",
            "from_tier": "the tier it served from before",
            "to_tier": "the tier it serves from now",
            "panic": "true while it routes to every deployment (panic mode)",
            "source": "what caused it: a health source (`probe`, `traffic`, `timer`, `fleet`), or `drain`, "
            "`manual` (planned failover), `failback`, `ramp` (a ramp aborted), `shift`, `membership`",
        },
    ),
    EventType.REQUEST_FAILOVER: EventDoc(
        "One request was served by other than its first pick: `from_deployment` is the first pick, "
        "`to_deployment` the deployment that served it, `request_id` the request."
    ),
    EventType.PANIC_MODE: EventDoc(
        "A whole group went out and the plugin routes to all of it (panic mode), or it left that mode.",
        {
            "entered": "true when panic mode started, false when it ended",
            "deployments": "the group's deployments",
        },
    ),
    EventType.SESSION_REPINNED: EventDoc(
        "A session was answered by another deployment than its pin (a failover, a failback, a retry "
        "that landed elsewhere) and is pinned there now: `from_deployment`, `to_deployment`, the "
        "reason, the request id.",
        {"session_id": "the session", "caller": "whose session: a hash of the caller's key, team or app id"},
    ),
    EventType.CONTEXT_REBUILT: EventDoc(
        "A Responses API request whose `previous_response_id` names a deployment that is down was "
        "sent to another one with its conversation read back from `failover_messages`.",
        {
            "session_id": "the session (or the conversation's first response id)",
            "caller": "whose conversation: a hash of the caller's key, team or app id",
            "previous_response_id": "the response id the request continued",
            "messages": "how many stored messages were sent",
        },
    ),
    EventType.ALERT_FAILED: EventDoc(
        "An alert could not be delivered to a destination after its retries; `reason` names the "
        "destination safely and the last error (such as `HTTP 503`).",
        {
            "alert_type": "the event type of the alert",
            "alert_event_id": "the event id of the alert",
            "target": "the destination's safe name (key path, scheme, host or service)",
            "target_kind": "`apprise` or `webhook`",
            "attempts": "delivery attempts made",
            "error": "the last error, secret-free",
        },
    ),
    EventType.DRAIN_STARTED: EventDoc(
        "A deployment drains: no new requests; in-flight requests and streams finish.",
        {
            "in_flight": "attempts in flight when the drain started",
            "timeout_s": "how long the drain waits for them",
            "cause": "`drain` or `failover` (a planned failover drains the primary tier)",
            "via": "who asked",
        },
    ),
    EventType.DRAIN_COMPLETED: EventDoc(
        "A drain's in-flight work ended, or the drain timed out (the deployment stays drained), or "
        "it was undrained first.",
        {
            "in_flight": "attempts in flight when the drain started",
            "finished": "those that ended",
            "cut": "those still running at the timeout",
            "expired": "those forgotten after `drain.in_flight_ttl_s` without an end signal",
            "timed_out": "true when the drain stopped waiting at its timeout",
            "duration_s": "seconds from the start of the drain",
            "timeout_s": "the drain's timeout",
            "cancelled": "true when it was undrained before its work finished",
            "cause": "`drain` or `failover`",
            "via": "who asked",
        },
    ),
    EventType.UNDRAINED: EventDoc(
        "A drained deployment takes traffic again, through the ramp.",
        {"drained_for_s": "how long it was drained", "via": "who asked"},
    ),
    EventType.FAILBACK_PENDING: EventDoc(
        "A recovered primary is held: its hold-down runs, or it waits for `failback` in manual mode.",
        {
            "tier": "the primary's tier",
            "mode": "`auto` or `manual`",
            "hold_down_s": "the hold-down (null in manual mode)",
        },
    ),
    EventType.FAILBACK_STEP: EventDoc(
        "A failback ramp step: the primary tier now gets `percent` % of the group's new requests.",
        _STEP,
    ),
    EventType.FAILBACK_COMPLETED: EventDoc(
        "The primary tier serves the group again.",
        {
            "to": "the tier that serves again",
            "deployments": "its deployments",
            "duration_s": "seconds the ramp took",
            "immediate": "true when the standby lost its last routable deployment and the primary took "
            "the group at once",
            "via": "who asked",
            "source": "`failback`",
        },
    ),
    EventType.RAMP_STEP: EventDoc(
        "A slow-start step of one deployment inside its tier: its weight times `factor`.",
        {
            "step": "the step's number, from 1",
            "steps": "every step's percent",
            "percent": "this step's percent",
            "factor": "the weight factor (percent / 100)",
        },
    ),
    EventType.RAMP_COMPLETED: EventDoc(
        "A slow-starting deployment is at its full weight.",
        {"steps": "every step's percent", "duration_s": "seconds the slow start took"},
    ),
    EventType.RAMP_ABORTED: EventDoc(
        "A failback ramp or a slow start stopped on errors or an ejection; the deployments that "
        "failed are ejected again.",
        {
            "scope": "`group` (a failback ramp) or `deployment` (a slow start)",
            "tier": "`group`: the ramping tier",
            "step": "the step it stopped at",
            "percent": "that step's percent",
            "errors": "failed attempts within the step",
            "ejected": "the deployments ejected again",
            "via": "`group`: who started the ramp",
        },
    ),
    EventType.SHIFT_STEP: EventDoc(
        "A canary shift step: the target gets `percent` % of new requests.", _STEP
    ),
    EventType.SHIFT_COMPLETED: EventDoc(
        "A canary shift's target takes all of the group's traffic.",
        {
            "to": "the shift's target",
            "deployments": "its deployments",
            "duration_s": "seconds the shift took",
            "via": "who asked",
            "source": "`shift`",
        },
    ),
    EventType.SHIFT_ROLLED_BACK: EventDoc(
        "A shift stopped (errors on its target, the target lost, or `failback`) and traffic went back "
        "to where it went before.",
        {
            "to": "the shift's target",
            "deployments": "its deployments",
            "step": "the step it stopped at",
            "percent": "that step's percent",
            "errors": "failed attempts on the target within the step",
            "restored": "where traffic went back to (a previous shift's target, or normal routing)",
            "via": "who started the shift",
            "source": "`shift`",
        },
    ),
    EventType.REQUEST_RESCUED: EventDoc(
        "An attempt that had delivered nothing was failed on purpose and retried by LiteLLM on another "
        "deployment at once: its deployment (`deployment_id`, `from_deployment`) was ejected for not "
        "answering, or a stream's first token was late (`streams.first_token_timeout_s`). `request_id` "
        "is the request. Capped by `rescue.max_per_ejection` and `rescue.max_per_s`.",
        {
            "cause": "`ejected` (its deployment stopped answering) or `first_token_timeout`",
            "stream": "true for a streaming request",
            "waited_ms": "how long the attempt had waited on the deployment",
            "limit_s": "`first_token_timeout`: the first-token timeout that applied",
        },
    ),
    EventType.STREAM_RESUMED: EventDoc(
        "A stream that broke continued on another deployment (`from_deployment`, `to_deployment`).",
        {
            "from": "the deployment the stream broke on",
            "to": "the deployment that continues it",
            "chars_sent": "characters the client already had",
            "gap_ms": "the client's silence from its last chunk to the first continued one",
            "resume_ms": "the part of that gap after the break was seen",
            "resume": "which continuation of this stream it is: 1, 2, ...",
            "exact": "true when the target continues at the exact character",
            "kind": "the target's provider kind",
            "cause": "the break, redacted; `<deployment> was ejected (...)` when its ejection broke it",
        },
    ),
    EventType.STREAM_BROKEN: EventDoc(
        "A stream broke and nothing could continue it: the client got an error.",
        {
            "chars_sent": "characters the client had",
            "resumes": "continuations started before it",
            "cause": "the break, redacted",
            "why": "why it could not be continued",
        },
    ),
    EventType.DEPLOYMENT_ADDED: EventDoc("Added to LiteLLM at run time: probed and routed now.", _JOIN),
    EventType.DEPLOYMENT_UPDATED: EventDoc(
        "A managed deployment's fields changed in LiteLLM (`changed`: their names, never values; "
        "`health_kept`: only its weight or tier changed, so its health carries over).",
        {**_JOIN, "changed": "the fields that changed", "health_kept": "its health carried over"},
    ),
    EventType.DEPLOYMENT_REMOVED: EventDoc("Deleted from LiteLLM: unrouted; pins, counts released.", _JOIN),
    EventType.DEPLOYMENT_REFUSED: EventDoc(
        "Added at run time with an invalid `model_info.failover`: kept out of every pick and listed "
        "under `unmanaged` in `status`; the running deployments are untouched.",
        {"problems": "what is wrong, each with its key path", "source": "`litellm`"},
    ),
    EventType.CHAOS_INJECTED: EventDoc("An operator started a fault on a deployment.", _FAULT),
    EventType.CHAOS_CLEARED: EventDoc(
        "An operator ended a fault early, or replaced it with a new one of the same kind.",
        {**_FAULT_ENDED, "ended_by": "`user@host` of the CLI that cleared it"},
    ),
    EventType.CHAOS_EXPIRED: EventDoc("A fault reached its end time.", _FAULT_ENDED),
    EventType.OPERATOR_COMMAND: EventDoc(
        "A replica received an operator command (drain, undrain, failover, failback, shift, status, "
        "chaos): who issued it, what it was, and its outcome there.",
        {
            "command_id": "the command's id",
            "kind": "the command",
            "target": "its deployment or group",
            "args": "its arguments",
            "issued_by": "`user@host` of the CLI",
            "issued_at": "when it was issued (ISO-8601, UTC)",
            "via": "`redis` or `database`",
            "outcome": "`applied`, `refused`, `expired` or `error`",
            "restored": "true when a starting replica took over a standing drain or failover",
        },
    ),
    EventType.MESSAGE_REJECTED: EventDoc(
        "A replica rejected an operator command or fleet message that was not validly signed (no tag, "
        "an unknown key, a wrong HMAC, too old or from the future) and did not act on it. At most one "
        "per transport and reason a minute: `not_recorded_before` counts the ones held back.",
        {
            "transport": "`redis` (a fleet message or command), `database` (a command row) or `standing` "
            "(standing state read at start)",
            "reason": "`unsigned`, `malformed_tag`, `unknown_key`, `bad_signature`, `too_old` or `future`",
            "not_recorded_before": "rejections of this transport and reason not recorded since the last",
        },
    ),
}


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

"""What an alert says: a title and body for people (apprise) and a JSON payload for machines.

One ``AlertMessage`` per admitted event, built once and sent to every destination. The payload
carries the event's own fields under stable names (type, group, deployment, from, to, reason,
instance, time, details) so a webhook consumer does not depend on the wording of the title.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from litellm_failover.alerts.policy import Admission
from litellm_failover.events import FailoverEvent

Severity = Literal["info", "success", "warning", "critical"]

_DETAILS_CHARS = 1000  # a body line, not a dump: the payload has the full details

_FIXED_SEVERITY: dict[str, Severity] = {
    "failback_step": "info",
    "failback_completed": "success",
    "ramp_aborted": "warning",
    "drain_started": "info",
    "drain_completed": "info",
}


@dataclass(frozen=True, slots=True)
class AlertMessage:
    title: str
    body: str
    severity: Severity
    payload: dict[str, Any]
    event_type: str
    group: str


def severity_of(event: FailoverEvent) -> Severity:
    """How loud: losing the group is critical, losing capacity or a tier a warning, getting it
    back a success; anything this module does not know (event types added later) is info."""
    if event.event_type == "panic_mode":
        return "critical" if event.details.get("entered", True) else "success"
    if event.event_type == "failover":
        before, after = event.details.get("from"), event.details.get("to")
        if before is None or after is None:  # no details: judge by the from/to text
            before = (event.from_deployment or "").split(",")
            after = (event.to_deployment or "").split(",")
        if not [d for d in after if d]:
            return "critical"
        from_tier, to_tier = event.details.get("from_tier"), event.details.get("to_tier")
        if isinstance(from_tier, int) and isinstance(to_tier, int) and from_tier != to_tier:
            return "warning" if to_tier > from_tier else "success"
        return "warning" if len(after) < len(before) else "success"
    if event.event_type == "drain_completed" and _positive(event.details.get("cut")):
        return "warning"  # work in flight was cut at the drain timeout
    return _FIXED_SEVERITY.get(event.event_type, "info")


def build_message(admission: Admission, instance_id: str) -> AlertMessage:
    event = admission.event
    instance = event.instance_id or instance_id
    severity = severity_of(event)
    title = _title(event)
    if admission.digest:
        title = f"{title} (latest of {admission.suppressed} suppressed alerts)"
    when = event.created_at.isoformat()
    lines = [event.reason or "(no reason given)"]
    where = [f"group: {event.model_group}"]
    if event.deployment_id:
        where.append(f"deployment: {event.deployment_id}")
    if event.from_deployment or event.to_deployment:
        where.append(f"from: {event.from_deployment or '-'}")
        where.append(f"to: {event.to_deployment or '-'}")
    lines.append(" | ".join(where))
    lines.append(f"instance: {instance} | time: {when} | severity: {severity}")
    if event.details:
        details = json.dumps(event.details, default=str, sort_keys=True)
        if len(details) > _DETAILS_CHARS:
            details = details[: _DETAILS_CHARS - 3] + "..."
        lines.append(f"details: {details}")
    if admission.suppressed:
        lines.append(
            f"{admission.suppressed} similar alert(s) for group {event.model_group} were suppressed "
            f"since the last one ({admission.suppressed_dedup} duplicate(s), "
            f"{admission.suppressed_rate} over the rate limit)."
        )
    body = "\n".join(lines)
    payload = {
        "source": "litellm-failover",
        "type": event.event_type,
        "group": event.model_group,
        "deployment": event.deployment_id,
        "from": event.from_deployment,
        "to": event.to_deployment,
        "reason": event.reason,
        "instance": instance,
        "time": when,
        "details": _jsonable(event.details),
        "severity": severity,
        "title": title,
        "message": body,
        "event_id": event.event_id,
        "request_id": event.request_id,
        "digest": admission.digest,
        "suppressed": {
            "total": admission.suppressed,
            "duplicates": admission.suppressed_dedup,
            "rate_limited": admission.suppressed_rate,
        },
    }
    return AlertMessage(title, body, severity, payload, event.event_type, event.model_group)


def _title(event: FailoverEvent) -> str:
    group = event.model_group
    if event.event_type == "failover":
        return f"failover in group {group}: {event.from_deployment or '-'} -> {event.to_deployment or '-'}"
    if event.event_type == "panic_mode":
        if event.details.get("entered", True):
            return f"PANIC MODE in group {group}: every deployment is out, routing to all of them"
        return f"panic mode over in group {group}"
    title = f"{event.event_type.replace('_', ' ')} in group {group}"
    if event.deployment_id:
        title += f": {event.deployment_id}"
    if event.from_deployment or event.to_deployment:
        title += f" ({event.from_deployment or '-'} -> {event.to_deployment or '-'})"
    return title


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _jsonable(details: dict[str, Any]) -> Any:
    """Events promise JSON-serialisable details; a stray object must not fail a delivery."""
    try:
        json.dumps(details)
        return details
    except (TypeError, ValueError):
        return json.loads(json.dumps(details, default=str))

"""Turning the core's in-memory records into table rows, defensively.

The writer converts at flush time, off the hot path. Conversion never trusts its input: a row the
database would refuse forever (an over-long id, details that are not JSON) would otherwise sit at
the head of the buffer and block every row behind it, so values are clipped to their column and
details are forced through JSON.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from litellm_failover.events import DeploymentStateRow, FailoverEvent
from litellm_failover.store.models import ID_LENGTH


def _text(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return value


def _clip(value: Any, length: int = ID_LENGTH) -> Any:
    value = _text(value)
    if isinstance(value, str) and len(value) > length:
        return value[:length]
    return value


def jsonable(value: Any) -> Any:
    """A JSON-safe copy: unknown types become strings, and anything unencodable a marker."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return {"unserialisable": repr(value)[:200]}


def event_row(event: FailoverEvent) -> dict[str, Any]:
    return {
        "id": _clip(event.event_id, 64),
        "created_at": event.created_at,
        "event_type": _clip(event.event_type, 64),
        "model_group": _clip(event.model_group),
        "deployment_id": _clip(event.deployment_id),
        "from_deployment": _clip(event.from_deployment),
        "to_deployment": _clip(event.to_deployment),
        "reason": _text(event.reason) or "",
        "request_id": _clip(event.request_id),
        "instance_id": _clip(event.instance_id) or "",
        "details": jsonable(event.details or {}),
    }


def state_row(row: DeploymentStateRow) -> dict[str, Any]:
    return {
        "deployment_id": _clip(row.deployment_id),
        "model_group": _clip(row.model_group),
        "state": _clip(row.state, 64),
        "reason": _text(row.reason) or "",
        "instance_id": _clip(row.instance_id) or "",
        "checks": jsonable(row.checks or {}),
        "ejection_count": int(row.ejection_count or 0),
        "updated_at": row.updated_at,
    }

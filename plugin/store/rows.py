"""Turning the core's in-memory records into table rows, defensively.

The writer converts at flush time, off the hot path. Conversion never trusts its input: a row the
database would refuse forever (an over-long id, details that are not JSON, text PostgreSQL cannot
store) would otherwise be rejected and lost, so values are clipped to their column, every text (ids,
reasons, message text, the keys and strings inside JSON) is made storable, and JSON is made
strict: NaN and +/-Infinity, which ``json.dumps`` writes by default and PostgreSQL's ``jsonb``
refuses, become the strings "NaN", "Infinity" and "-Infinity" (strings rather than null, so the
audit trail still says what the upstream reported). Counts are kept within a 32-bit column.

Conversation rows arrive with the product's content rules already applied (``content`` is None
when storing content is off or the message is over ``max_message_chars``); the checks here are a
last line of defence, not the policy.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from enum import Enum
from typing import Any

from litellm_failover.events import FailoverEvent
from litellm_failover.records import DeploymentStateRow, MessageRow, SessionRow
from litellm_failover.store.history import chain_hash
from litellm_failover.store.models import (
    CALLER_LENGTH,
    HASH_LENGTH,
    ID_LENGTH,
    ROLE_LENGTH,
    SESSION_ID_LENGTH,
)

MAX_STORED_CONTENT_CHARS = 16_000_000
"""Text longer than this is never stored, whatever the settings say: it is kept as hash only and
marked truncated. Far above any sensible ``max_message_chars``; it only guards the database (and
the writer's memory) against a producer that skipped the cap."""


MAX_COUNT = 2**31 - 1
"""The largest value an ``Integer`` column holds on PostgreSQL."""


def _text(value: Any) -> Any:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, str):
        return storable_text(value)
    return value


def _clip(value: Any, length: int = ID_LENGTH) -> Any:
    value = _text(value)
    if isinstance(value, str) and len(value) > length:
        return value[:length]
    return value


def _count(value: Any) -> int | None:
    """A non-negative int, or None: token counts come from provider responses, not from us."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return min(max(number, 0), MAX_COUNT)


def storable_text(text: str) -> str:
    """Text both databases accept: PostgreSQL refuses NUL characters in ``text``, and no driver
    can encode a lone surrogate (half of an emoji cut by a client); both become U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # rare: only then pay for a pass over every character
        text = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)
    return text


_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _strict_json(value: Any) -> Any:
    """``value`` (already through a JSON round trip) with storable strings and finite numbers."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else _NON_FINITE[value]
    if isinstance(value, dict):
        return {storable_text(key): _strict_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strict_json(item) for item in value]
    return value


def jsonable(value: Any) -> Any:
    """A strict JSON-safe copy: unknown types become strings, NUL and lone surrogates U+FFFD,
    non-finite numbers strings, and anything unencodable a marker."""
    try:
        return _strict_json(json.loads(json.dumps(value, default=str)))
    except (TypeError, ValueError, RecursionError):
        return {"unserialisable": storable_text(repr(value)[:200])}


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
        "ejection_count": _count(row.ejection_count) or 0,
        "updated_at": row.updated_at,
    }


def session_row(row: SessionRow, created_at: datetime | None = None) -> dict[str, Any]:
    """``created_at`` is when the writer first saw the session among coalesced rows; an upsert
    onto an existing row keeps the stored one."""
    return {
        "session_id": _clip(row.session_id, SESSION_ID_LENGTH),
        "caller": _clip(row.caller, CALLER_LENGTH),
        "model_group": _clip(row.model_group),
        "pinned_deployment": _clip(row.pinned_deployment),
        "turn_count": _count(row.turns) or 0,
        "created_at": created_at or row.updated_at,
        "updated_at": row.updated_at,
    }


def message_row(row: MessageRow) -> dict[str, Any]:
    content = row.content
    truncated = bool(row.truncated)
    if content is not None:
        content = storable_text(str(content))
        if len(content) > MAX_STORED_CONTENT_CHARS:
            content, truncated = None, True
    # A row without its chain hash (a producer other than the recorder) is hashed here, so the
    # unique key is never empty.
    parent = _clip(row.parent_hash, HASH_LENGTH) or ""
    chained = row.chain_hash or chain_hash(parent, int(row.seq), str(row.role), str(row.content_hash))
    return {
        "session_id": _clip(row.session_id, SESSION_ID_LENGTH),
        "caller": _clip(row.caller, CALLER_LENGTH),
        "parent_hash": parent,
        "chain_hash": _clip(chained, HASH_LENGTH),
        "seq": int(row.seq),
        "role": _clip(row.role, ROLE_LENGTH),
        "content": content,
        "content_hash": _clip(row.content_hash, HASH_LENGTH),
        "content_chars": _count(row.content_chars) or 0,
        "deployment_id": _clip(row.deployment_id),
        "response_id": _clip(row.response_id),
        "prompt_tokens": _count(row.prompt_tokens),
        "completion_tokens": _count(row.completion_tokens),
        "truncated": truncated,
        "created_at": row.created_at,
    }

"""The rows the plugin writes besides events: each deployment's state, and the conversations
(sessions and their messages). Frozen dataclasses, like ``events.FailoverEvent``, so the hot path
builds one without touching SQL; the store writer turns them into rows off the request path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from litellm_failover.events import utcnow


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
    caller: str = "anonymous"  # whose session (``sessions.identity.caller_of``): part of the key


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One message of a session in ``failover_messages``; ``seq`` is its position in the
    conversation (0-based), and (caller, session_id, chain_hash) is unique: storing the same
    history twice (a client resending it, a replica restarting) keeps one row, while a different
    message at the same position (an edited or regenerated turn) is a branch of its own.

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
    caller: str = "anonymous"  # whose session (``sessions.identity.caller_of``): part of the key
    # The history chain (``sessions.content.chain_hash``): this message's hash covers every message
    # before it, so divergent histories of one session are separate branches, never overwritten.
    # ``chain_hash`` None: the writer computes it from ``parent_hash`` and this message.
    parent_hash: str = ""
    chain_hash: str | None = None

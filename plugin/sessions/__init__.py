"""Conversation state and session affinity (issue 3, sections 1 to 3).

- ``identity``: which session a request belongs to (header, metadata, litellm_session_id, user).
- ``pins``: the in-memory session -> deployment pins the hot path reads.
- ``content`` / ``recorder``: answered requests as ``failover_messages`` / ``failover_sessions`` rows.
- ``continuity``: rebuilding a Responses API conversation whose deployment is down.
- ``warmup``: optional proactive move and prefix warm-up after a failover.
- ``manager``: the glue the plugin calls from ``route`` and the LiteLLM hooks.
"""

from __future__ import annotations

from litellm_failover.sessions.identity import MAX_SESSION_ID_CHARS, SessionId, SessionIdError, identify
from litellm_failover.sessions.manager import SessionManager, SessionRequest
from litellm_failover.sessions.pins import PinListener, PinStore
from litellm_failover.sessions.warmup import self_hosted_deployments

__all__ = [
    "MAX_SESSION_ID_CHARS",
    "PinListener",
    "PinStore",
    "SessionId",
    "SessionIdError",
    "SessionManager",
    "SessionRequest",
    "identify",
    "self_hosted_deployments",
]

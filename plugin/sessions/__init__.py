"""Conversation state and session affinity (issue 3, sections 1 to 3).

- ``identity``: which session a request belongs to (header, metadata, litellm_session_id, user).
- ``pins``: the in-memory session -> deployment pins the hot path reads.
- ``content`` / ``recorder``: answered requests as ``failover_messages`` / ``failover_sessions`` rows.
- ``continuity``: rebuilding a Responses API conversation whose deployment is down.
- ``warmup``: optional proactive move and prefix warm-up after a failover.
- ``affinity``: where a session's request should go (its pin, its conversation's creator).
- ``request`` / ``answers``: what ``route`` learned of a request's session; its answer as a turn.
- ``manager``: the glue the request path calls from ``route`` and the LiteLLM hooks.
"""

from __future__ import annotations

from litellm_failover.sessions.identity import MAX_SESSION_ID_CHARS, SessionId, SessionIdError, identify
from litellm_failover.sessions.manager import SessionManager
from litellm_failover.sessions.pins import PinListener, PinStore
from litellm_failover.sessions.request import SessionRequest

__all__ = [
    "MAX_SESSION_ID_CHARS",
    "PinListener",
    "PinStore",
    "SessionId",
    "SessionIdError",
    "SessionManager",
    "SessionRequest",
    "identify",
]

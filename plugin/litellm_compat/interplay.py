"""LiteLLM 1.109+ settings that overlap the plugin's own features, and what the plugin does about them.

- ``enable_mid_stream_fallback_continuation``: LiteLLM continues a cut stream on the *fallback
  group* with the partial text as an assistant prefill. Inside LiteLLM's stream wrapper it catches
  the cut before the plugin sees it, so the plugin would neither resume in-group (its own
  ``streams.resume``) nor count the cut against the deployment. With ``streams.resume`` on, the plugin
  wins: it turns LiteLLM's off and says so. With ``streams.resume: false`` LiteLLM's stays on.
- ``session_affinity_repin_on_failover``: LiteLLM moves a session pin only off a deployment *in
  LiteLLM's cooldown*, which the plugin switches off (unless ``keep_litellm_cooldowns``): the repin
  then never happens, and a pin to a dead deployment narrows every pick to it. The plugin leaves it
  as set and warns; its own sessions (``sessions.enabled``) re-pin on failover.
"""

from __future__ import annotations

import logging
from typing import Any

from litellm_failover.litellm_compat import router_access

logger = logging.getLogger("litellm_failover")

CONTINUATION = "enable_mid_stream_fallback_continuation"
REPIN = "session_affinity_repin_on_failover"


def reconcile(router: Any, *, resume_streams: bool, keep_litellm_cooldowns: bool) -> list[str]:
    """Apply the rules above to ``router``; returns what was done or found, one line each (also
    logged as warnings). Settings this LiteLLM lacks read as off."""
    notes: list[str] = []
    if resume_streams and router_access.router_setting(router, CONTINUATION, False) is True:
        try:
            router_access.set_setting(router, CONTINUATION, False)
            notes.append(
                f"{CONTINUATION} turned off: the plugin resumes broken streams itself (streams.resume); "
                f"set streams.resume: false to keep LiteLLM's continuation instead"
            )
        except Exception as exc:  # a LiteLLM that refuses the change: both run, say so
            notes.append(f"{CONTINUATION} is on and could not be turned off ({type(exc).__name__})")
    if not keep_litellm_cooldowns and router_access.router_setting(router, REPIN, False) is True:
        notes.append(
            f"{REPIN} has no effect next to the plugin: it repins only off deployments in LiteLLM's "
            f"cooldown, which the plugin turns off; use the plugin's sessions instead"
        )
    for note in notes:
        logger.warning("litellm-failover: %s", note)
    return notes

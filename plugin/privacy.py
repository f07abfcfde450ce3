"""Whether message text may be stored: LiteLLM's own privacy settings, unless overridden.

A team that turned off message logging in LiteLLM (``litellm.turn_off_message_logging = True``,
or ``litellm_settings: turn_off_message_logging: true`` in the proxy's config.yaml) has said that
conversation text must not leave the request path. The plugin's conversation store would
otherwise be the one place it still lands, so by default it follows that setting: only each
message's SHA-256 hash, its length and the token counts are kept. ``sessions.store_content``
decides when set: ``true`` stores text even with LiteLLM's logging off (an explicit choice in
``failover_settings``), ``false`` never does.

LiteLLM is read through ``sys.modules`` rather than imported: if nothing has imported LiteLLM,
nothing can have set its flag, and this module stays importable without it (the CLI, the GPU
agent). The flag is read per message, not cached: LiteLLM's proxy sets it while loading its
config, which may be after the plugin was attached, and an operator may flip it at runtime.
"""

from __future__ import annotations

import sys

from litellm_failover.settings import SessionSettings


def litellm_turns_off_message_logging() -> bool:
    """True when LiteLLM is set to keep message text out of its logs and callbacks."""
    litellm = sys.modules.get("litellm")
    return litellm is not None and getattr(litellm, "turn_off_message_logging", False) is True


def message_text_stored(settings: SessionSettings) -> bool:
    """Whether ``failover_messages.content`` may hold the text (else hash, length, tokens only)."""
    if settings.store_content is not None:
        return settings.store_content  # an explicit choice in failover_settings wins
    return not litellm_turns_off_message_logging()


def content_storage(settings: SessionSettings) -> str:
    """What ``status()`` and the docs call the current choice: why text is or is not stored."""
    if settings.store_content is not None:
        return "text" if settings.store_content else "hash-only (sessions.store_content: false)"
    if litellm_turns_off_message_logging():
        return "hash-only (litellm turn_off_message_logging)"
    return "text"

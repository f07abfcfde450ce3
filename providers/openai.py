"""OpenAI itself (``openai/`` with no ``api_base``, or one on api.openai.com).

Probed with ``GET https://api.openai.com/v1/models``: free, authenticated, and it fails the
way completions would when the key is revoked or the org is out of quota.

OpenAI's chat API always opens a new assistant turn: a broken stream has no exact continuation
here, only the best effort that ``streams.inexact_continuation`` may allow.
"""

from __future__ import annotations

from litellm_failover.providers.continuation import NO_EXACT_CONTINUATION
from litellm_failover.providers.openai_compatible import ModelsListAdapter


class OpenAIAdapter(ModelsListAdapter):
    kind = "openai"
    default_api_base = "https://api.openai.com/v1"
    api_base_env = ("OPENAI_BASE_URL", "OPENAI_API_BASE")
    api_key_env = ("OPENAI_API_KEY",)
    continuation_rule = NO_EXACT_CONTINUATION


ADAPTER = OpenAIAdapter()

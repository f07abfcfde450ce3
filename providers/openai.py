"""OpenAI itself (``openai/`` with no ``api_base``, or one on api.openai.com).

Probed with ``GET https://api.openai.com/v1/models``: free, authenticated, and it fails the
way completions would when the key is revoked or the org is out of quota.
"""

from __future__ import annotations

from litellm_failover.providers.openai_compatible import ModelsListAdapter


class OpenAIAdapter(ModelsListAdapter):
    kind = "openai"
    default_api_base = "https://api.openai.com/v1"
    api_base_env = ("OPENAI_BASE_URL", "OPENAI_API_BASE")
    api_key_env = ("OPENAI_API_KEY",)


ADAPTER = OpenAIAdapter()

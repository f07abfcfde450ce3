"""Anthropic (``anthropic/``): ``GET {api_base}/v1/models`` with ``x-api-key``.

The models list is free and needs the same key and ``anthropic-version`` header as messages.

A broken stream continues here exactly from an assistant prefill: LiteLLM sends a trailing
assistant message as Anthropic's prefill, which the model continues (``providers.continuation``).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from litellm_failover.providers.base import ProbeTarget
from litellm_failover.providers.continuation import ASSISTANT_PREFILL
from litellm_failover.providers.openai_compatible import ModelsListAdapter

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicAdapter(ModelsListAdapter):
    kind = "anthropic"
    default_api_base = "https://api.anthropic.com"
    api_base_env = ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL")
    api_key_env = ("ANTHROPIC_API_KEY",)
    continuation_rule = ASSISTANT_PREFILL

    def models_url(self, api_base: str, api_version: str | None) -> str:
        parts = urlsplit(api_base)
        path = parts.path.rstrip("/")
        for suffix in ("/v1/messages", "/v1"):  # LiteLLM configs carry either form
            if path.endswith(suffix):
                path = path[: -len(suffix)]
                break
        return urlunsplit((parts.scheme, parts.netloc, f"{path}/v1/models", "", ""))

    def headers(self, target: ProbeTarget) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if target.api_key:
            headers["x-api-key"] = target.api_key
        return headers


ADAPTER = AnthropicAdapter()

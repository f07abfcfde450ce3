"""Azure OpenAI (``azure/``): ``GET {api_base}/openai/models?api-version=...`` with ``api-key``.

The data-plane models list needs an ``api-version``; without one in ``litellm_params`` (or
``AZURE_API_VERSION``, which LiteLLM also reads) the probe uses ``DEFAULT_API_VERSION``, a GA
version that has the endpoint. Only key authentication is probed; a deployment that uses Entra
ID tokens should set ``model_info.failover.health_url`` to an endpoint it can read, or
``probe: false``.

Like OpenAI's, Azure's chat API has no exact continuation of a broken stream (best effort only,
under ``streams.inexact_continuation``).
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from litellm_failover.providers import litellm_param
from litellm_failover.providers.base import ProbeTarget
from litellm_failover.providers.continuation import NO_EXACT_CONTINUATION
from litellm_failover.providers.openai_compatible import ModelsListAdapter

DEFAULT_API_VERSION = "2024-10-21"


class AzureAdapter(ModelsListAdapter):
    kind = "azure"
    api_base_env = ("AZURE_API_BASE",)
    api_key_env = ("AZURE_API_KEY",)
    continuation_rule = NO_EXACT_CONTINUATION

    def api_version(self, litellm_params: dict, where: str) -> str | None:
        version = litellm_param(litellm_params, "api_version", where=where, env=("AZURE_API_VERSION",))
        return version or DEFAULT_API_VERSION

    def models_url(self, api_base: str, api_version: str | None) -> str:
        parts = urlsplit(api_base)
        path = parts.path.rstrip("/")
        for suffix in ("/openai/v1", "/openai"):  # accept a base given with the API path
            if path.endswith(suffix):
                path = path[: -len(suffix)]
                break
        query = urlencode({"api-version": api_version or DEFAULT_API_VERSION})
        return urlunsplit((parts.scheme, parts.netloc, f"{path}/openai/models", query, ""))

    def headers(self, target: ProbeTarget) -> dict[str, str]:
        return {"api-key": target.api_key} if target.api_key else {}


ADAPTER = AzureAdapter()

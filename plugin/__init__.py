"""litellm-failover: GPU-aware health checks, failover routing and an audit trail for LiteLLM.

Public API:
- ``attach(router, settings) -> FailoverPlugin``: put the plugin in front of a ``litellm.Router``;
  ``async with plugin:`` runs its background work; ``plugin.status()`` reports every deployment.
- ``proxy_handler``: the LiteLLM proxy callback, named in config.yaml as
  ``litellm_settings: {callbacks: ["litellm_failover.proxy_handler"]}``.
- ``FailoverSettings`` / ``FailoverConfigError``: the settings model and its validation error.
- ``AlreadyAttachedError``: ``attach`` to a Router that has a plugin attached (one per Router).

Names resolve lazily so that light commands (``fake-vllm``, ``gpu-agent``) don't import LiteLLM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "AlreadyAttachedError",
    "FailoverConfigError",
    "FailoverPlugin",
    "FailoverSettings",
    "attach",
    "proxy_handler",
]

if TYPE_CHECKING:
    from litellm_failover.attachments import AlreadyAttachedError
    from litellm_failover.plugin import FailoverPlugin, attach
    from litellm_failover.settings import FailoverConfigError, FailoverSettings


def __getattr__(name: str) -> Any:
    if name in ("attach", "FailoverPlugin"):
        from litellm_failover import plugin

        return getattr(plugin, name)
    if name == "AlreadyAttachedError":
        from litellm_failover.attachments import AlreadyAttachedError

        return AlreadyAttachedError
    if name in ("FailoverSettings", "FailoverConfigError"):
        from litellm_failover import settings

        return getattr(settings, name)
    if name == "proxy_handler":
        from litellm_failover.proxy import proxy_handler

        return proxy_handler()
    raise AttributeError(f"module 'litellm_failover' has no attribute {name!r}")

"""Endpoint adapters: one module per kind of endpoint, behind ``ProviderAdapter``.

This module is the registry, and the one entry point the plugin core needs::

    prober = build_prober(deployment_id, litellm_params, config, settings.health.thresholds(),
                          where="model_list[2]")
    report = await run_probe(prober, session)      # providers.runner; never raises

The core keeps one prober per deployment (it holds between-round memory such as DCGM's last
XID code) and never looks at its kind. Adapter modules are imported lazily: ``settings``
imports ``providers.thresholds``, which runs this file, so nothing here may import ``settings`` (or an
adapter, which does) at import time.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from litellm_failover.providers.base import ProbeTarget
from litellm_failover.providers.thresholds import ProbeThresholds

if TYPE_CHECKING:
    from litellm_failover.providers.base import Prober, ProviderAdapter
    from litellm_failover.settings import DeploymentFailoverConfig, HealthOverrides

_ADAPTER_MODULES: dict[str, str] = {
    "vllm": "vllm",
    "sglang": "sglang",
    "llamacpp": "llamacpp",
    "tgi": "tgi",
    "openai-compatible": "openai_compatible",
    "openai": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
}
KINDS: tuple[str, ...] = tuple(_ADAPTER_MODULES)

_OPENAI_HOST = "api.openai.com"


def _config_error(message: str) -> Exception:
    from litellm_failover.settings import FailoverConfigError

    return FailoverConfigError(message)


def get_adapter(kind: str) -> ProviderAdapter:
    """The adapter of a kind; each module exposes its singleton as ``ADAPTER``."""
    module = _ADAPTER_MODULES.get(kind)
    if module is None:
        raise _config_error(f"unknown provider kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return importlib.import_module(f"{__name__}.{module}").ADAPTER


def env_ref(value: Any, *, where: str, required: bool = False) -> str | None:
    """Resolve LiteLLM's ``os.environ/NAME`` convention; other values pass through as strings.

    An unset variable gives ``None`` (a missing key then shows as "authentication rejected"),
    or a configuration error naming ``where`` when the value is ``required``.
    """
    if value is None:
        return None
    text = str(value)
    if not text.startswith("os.environ/"):
        return text
    name = text.removeprefix("os.environ/")
    resolved = os.environ.get(name)
    if resolved is None and required:
        raise _config_error(f"invalid configuration: {where}: environment variable {name} is not set")
    return resolved


def litellm_param(
    litellm_params: Mapping[str, Any],
    key: str,
    *,
    where: str,
    env: Iterable[str] = (),
    required: bool = False,
) -> str | None:
    """A LiteLLM param, resolved, falling back to the environment variables LiteLLM itself reads."""
    path = f"{where}.litellm_params.{key}"
    value = env_ref(litellm_params.get(key), where=path, required=required)
    if value:
        return value
    for name in env:
        if os.environ.get(name):
            return os.environ[name]
    return None


def _model_prefix(litellm_params: Mapping[str, Any]) -> tuple[str, str]:
    model = str(litellm_params.get("model") or "")
    custom = litellm_params.get("custom_llm_provider")
    if custom:
        return str(custom), model
    prefix, sep, _ = model.partition("/")
    return (prefix if sep else ""), model


def infer_kind(litellm_params: Mapping[str, Any], configured: str | None, where: str) -> str:
    """The provider kind of a deployment: ``configured`` (``model_info.failover.provider``) wins.

    Otherwise from LiteLLM's model prefix (or ``custom_llm_provider``). ``openai/`` pointing
    anywhere but api.openai.com is ``openai-compatible``: a vLLM or SGLang server reached through
    ``openai/`` is probed as a plain OpenAI-compatible endpoint (no engine metrics) unless its
    ``provider`` says otherwise. ``where`` is the provider key path, named in the error.
    """
    if configured:
        if configured not in _ADAPTER_MODULES:
            raise _config_error(
                f"invalid configuration: {where}: unknown provider kind {configured!r} "
                f"(known: {', '.join(KINDS)})"
            )
        return configured
    prefix, model = _model_prefix(litellm_params)
    api_base = env_ref(litellm_params.get("api_base"), where=where)
    if prefix == "hosted_vllm":
        return "vllm"
    if prefix in ("openai", "text-completion-openai"):
        if not api_base:
            return "openai"
        try:
            host = (urlsplit(api_base).hostname or "").lower()
        except ValueError:
            host = ""
        return "openai" if host == _OPENAI_HOST else "openai-compatible"
    if prefix == "azure":
        return "azure"
    if prefix == "anthropic":
        return "anthropic"
    if prefix == "huggingface" and api_base:
        return "tgi"
    raise _config_error(
        f"invalid configuration: {where}: cannot infer the provider kind from "
        f"litellm_params.model {model!r}; set {where} to one of: {', '.join(KINDS)}"
    )


def merge_thresholds(base: ProbeThresholds, overrides: HealthOverrides | None) -> ProbeThresholds:
    """Apply a deployment's ``model_info.failover.health`` overrides. Idempotent, so a caller
    that already merged them gets the same thresholds back."""
    if overrides is None:
        return base
    changes = {
        f.name: getattr(overrides, f.name)
        for f in dataclasses.fields(base)
        if getattr(overrides, f.name, None) is not None
    }
    return dataclasses.replace(base, **changes) if changes else base


def build_target(
    deployment_id: str,
    litellm_params: Mapping[str, Any],
    config: DeploymentFailoverConfig,
    thresholds: ProbeThresholds,
    *,
    where: str = "model_list[?]",
) -> ProbeTarget:
    """The probe target of one deployment, built by its kind's adapter.

    ``thresholds`` are the group-wide ones (``HealthSettings.thresholds()``); the deployment's
    own ``health`` overrides are merged here. ``where`` is the deployment's key path
    (``model_list[2]``); configuration errors name the exact key under it.
    """
    from litellm_failover.providers.egress import egress_for

    kind = infer_kind(litellm_params, config.provider, f"{where}.model_info.failover.provider")
    merged = merge_thresholds(thresholds, config.health)
    adapter = get_adapter(kind)
    target = adapter.default_target(deployment_id, dict(litellm_params), config, merged, where=where)
    # The route is the same rule for every kind: hosted ones follow LiteLLM's egress.
    egress = egress_for(adapter.self_hosted, litellm_params, config, where=where)
    return dataclasses.replace(target, egress=egress)


def build_prober(
    deployment_id: str,
    litellm_params: Mapping[str, Any],
    config: DeploymentFailoverConfig,
    thresholds: ProbeThresholds,
    *,
    where: str = "model_list[?]",
) -> Prober:
    """A ready prober for one deployment: kind inferred, target built, memory fresh.

    Build it once at start-up (configuration errors surface then) and keep it for the
    deployment's lifetime; run a round with ``providers.runner.run_probe(prober, session)``.
    """
    kind = infer_kind(litellm_params, config.provider, f"{where}.model_info.failover.provider")
    target = build_target(deployment_id, litellm_params, config, thresholds, where=where)
    return get_adapter(kind).new_prober(target)


__all__ = [
    "KINDS",
    "build_prober",
    "build_target",
    "env_ref",
    "get_adapter",
    "infer_kind",
    "litellm_param",
    "merge_thresholds",
]

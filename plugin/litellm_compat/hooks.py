"""The ``CustomLogger`` hooks the plugin's handler relies on, and how to tell they are there.

LiteLLM calls each hook by keyword, so a hook is usable when LiteLLM's base class still defines it
and each parameter the base declares is one the plugin's override accepts. A hook LiteLLM dropped
or renamed would never be called: the plugin would route or observe nothing, silently.
"""

from __future__ import annotations

import inspect
from typing import Any

REQUIRED_HOOKS: dict[str, str] = {
    "async_filter_deployments": "routes every pick, retries and fallbacks included",
    "async_pre_call_deployment_hook": "sees each attempt once its deployment is picked (fault injection)",
    "async_post_call_failure_deployment_hook": "reports each failed attempt",
    "async_log_success_event": "reports each answered request",
    "async_log_failure_event": "reports a stream cut after it started",
    "async_pre_call_hook": "checks session ids in the proxy",
    "async_post_call_streaming_iterator_hook": "resumes broken streams in the proxy",
}


def _parameters(function: Any) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


def missing_hooks(base: type, handler: type) -> list[str]:
    """Each required hook ``base`` (LiteLLM's ``CustomLogger``) lacks, or whose parameters the
    ``handler`` class's override does not accept, as one readable line each."""
    problems: list[str] = []
    for name, why in REQUIRED_HOOKS.items():
        theirs = getattr(base, name, None)
        if not callable(theirs):
            problems.append(f"CustomLogger.{name} (the plugin's hook that {why}) does not exist")
            continue
        ours = getattr(handler, name, None)
        if ours is None or ours is theirs:
            continue
        accepted = _parameters(ours)
        if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(ours).parameters.values()):
            continue
        unknown = [param for param in _parameters(theirs) if param not in accepted]
        if unknown:
            problems.append(
                f"CustomLogger.{name} now passes {', '.join(unknown)}, which the plugin's hook does not take"
            )
    return problems

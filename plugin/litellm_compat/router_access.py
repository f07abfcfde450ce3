"""The Router members the plugin uses, one function each, chosen by what the Router offers.

LiteLLM 1.110 keeps the old members (``model_list``, ``disable_cooldowns``, ...) only as deprecated
shims due for removal; its public entry points are ``registry()``, ``settings()``, ``apply()`` and
``select()``. Each function here prefers the entry point when the Router has it and uses the old
member otherwise (1.108.7), so the plugin keeps working when the shims go.
"""

from __future__ import annotations

from typing import Any


def has_entry_points(router: Any) -> bool:
    """Whether the Router has 1.110's public entry points (``registry()`` and ``apply()``)."""
    return callable(getattr(router, "registry", None)) and callable(getattr(router, "apply", None))


def current_deployments(router: Any) -> list[dict]:
    """The Router's deployments as it has them now (the live list: deployments added or deleted at
    run time show up here)."""
    if has_entry_points(router):
        return list(router.registry().all() or [])
    return list(router.model_list or [])


def disable_cooldowns(router: Any) -> None:
    """Switch LiteLLM's timer cooldown off: the plugin decides health itself."""
    set_setting(router, "disable_cooldowns", True)


def set_setting(router: Any, name: str, value: Any) -> None:
    """Set one Router setting, and check it took.

    On 1.110 through ``apply(ChangeSet(...))``: the runtime-updatable settings (those
    ``settings().as_dict()`` lists, e.g. ``enable_mid_stream_fallback_continuation``) only through
    ``settings=`` (``assign=`` refuses them), the others (``disable_cooldowns``) only through
    ``assign=`` (``settings=`` silently ignores them); checked on 1.110.2.
    """
    if has_entry_points(router):
        from litellm.router_api import ChangeSet

        runtime = name in router.settings().as_dict()
        router.apply(ChangeSet(settings={name: value}) if runtime else ChangeSet(assign={name: value}))
    else:
        setattr(router, name, value)
    if router_setting(router, name) != value:
        raise RuntimeError(f"LiteLLM's Router kept {name}={router_setting(router, name)!r}")


def router_setting(router: Any, name: str, default: Any = None) -> Any:
    """One Router setting's current value; ``default`` where this LiteLLM has no such setting."""
    if has_entry_points(router):
        settings = router.settings()
        if hasattr(settings, name):
            value = getattr(settings, name)
            return default if value is None else value
        exported = settings.as_dict()
        if name in exported:
            return exported[name]
    return getattr(router, name, default)


async def pick(router: Any, group: str, request_kwargs: dict[str, Any], messages: list[dict]) -> Any:
    """One pick for ``group`` without calling the deployment (runs LiteLLM's routing callbacks)."""
    select = getattr(router, "select", None)
    if callable(select):
        return await select(group, request_kwargs, messages=messages)
    return await router.async_get_available_deployment(
        model=group, request_kwargs=request_kwargs, messages=messages
    )

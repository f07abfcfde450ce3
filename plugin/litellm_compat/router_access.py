"""The Router members the plugin uses, one function each, chosen by what the Router offers.

LiteLLM 1.110 keeps the old members (``model_list``, ``disable_cooldowns``, ...) only as deprecated
shims due for removal; its public entry points are ``registry()``, ``settings()``, ``apply()`` and
``select()``. Each function here prefers the entry point when the Router has it and uses the old
member otherwise (1.108.7), so the plugin keeps working when the shims go.
"""

from __future__ import annotations

from collections.abc import Callable
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


def marker_reader(router: Any) -> Callable[[], tuple[Any, ...]]:
    """A reader of a change marker of the Router's deployments, in constant time. 1.110: the
    registry's ``version``, which every add, upsert and delete bumps. 1.108.7: the list, its
    length and its last deployment, held by reference: adding a deployment appends a new dict,
    updating one removes it and appends a new dict, deleting one shortens the list; each changes
    the marker.

    The Router's kind is decided once, here and in ``marker_check``: the request path checks the
    marker on every pick, and on 1.110 every attribute read on a Router goes through its
    deprecation shim (about a microsecond each; ``has_entry_points`` makes two). The bound
    ``registry`` method is kept; the registry itself is asked for on every read."""
    if has_entry_points(router):
        registry = router.registry
        return lambda: ("version", registry().version)

    def listed() -> tuple[Any, ...]:
        model_list = getattr(router, "model_list", None) or ()
        return ("list", model_list, len(model_list), model_list[-1] if model_list else None)

    return listed


def marker_check(router: Any) -> Callable[[tuple[Any, ...]], bool]:
    """A check that nothing changed since ``marker`` (one that ``marker_reader(router)`` read), made
    without building the current marker: the request path asks on every pick. By identity for
    the list form: two dicts with the same fields are still two deployments' dicts."""
    if has_entry_points(router):
        registry = router.registry
        return lambda marker: marker[0] == "version" and marker[1] == registry().version

    def unchanged(marker: tuple[Any, ...]) -> bool:
        model_list = getattr(router, "model_list", None) or ()
        if marker[0] != "list" or marker[1] is not model_list or marker[2] != len(model_list):
            return False
        return marker[3] is (model_list[-1] if model_list else None)

    return unchanged


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

"""The start-up check: every LiteLLM piece the plugin relies on exists and fires, or it refuses.

A plugin that attaches half-way is worse than none: with its routing hook never called it would
report deployments healthy and record failovers that never happen. So before anything is
registered, ``check_hooks`` and ``check_router`` look for every hook and Router member, and on
start ``check_fires`` makes one real pick through the Router with a probe filter beside the
plugin's own and checks that LiteLLM called it. A failure raises ``LiteLLMCompatError`` with one
message naming the LiteLLM version and each missing piece.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from litellm_failover.litellm_compat import router_access
from litellm_failover.litellm_compat.hooks import missing_hooks
from litellm_failover.litellm_compat.version import SUPPORTED_RANGE, litellm_version

logger = logging.getLogger("litellm_failover")

_probing: contextvars.ContextVar[bool] = contextvars.ContextVar("litellm_failover_probing", default=False)


class LiteLLMCompatError(RuntimeError):
    """The installed LiteLLM lacks something the plugin needs; the plugin does not start."""

    def __init__(self, problems: list[str]) -> None:
        self.version = litellm_version()
        self.problems = list(problems)
        lines = "; ".join(self.problems)
        super().__init__(
            f"litellm-failover cannot run on LiteLLM {self.version} (supported: litellm{SUPPORTED_RANGE}): "
            f"{lines}. The plugin was not attached."
        )


def probing() -> bool:
    """True inside the start-up check's own pick: the plugin's handler lets it through untouched,
    so the check neither books a request nor moves a round-robin turn."""
    return _probing.get()


@contextmanager
def _probe() -> Iterator[None]:
    token = _probing.set(True)
    try:
        yield
    finally:
        _probing.reset(token)


def check_hooks(handler: type) -> None:
    """Every ``CustomLogger`` hook the plugin's ``handler`` class overrides exists and takes what
    LiteLLM passes."""
    try:
        from litellm.integrations.custom_logger import CustomLogger
    except ImportError as exc:
        problem = f"litellm.integrations.custom_logger.CustomLogger cannot be imported ({exc})"
        raise LiteLLMCompatError([problem]) from None
    problems = missing_hooks(CustomLogger, handler)
    try:
        import litellm

        manager = litellm.logging_callback_manager
        for member in ("add_litellm_callback", "remove_callback_from_all_lists"):
            if not callable(getattr(manager, member, None)):
                problems.append(f"litellm.logging_callback_manager.{member} does not exist")
    except AttributeError:
        problems.append("litellm.logging_callback_manager does not exist")
    if problems:
        raise LiteLLMCompatError(problems)


def router_problems(router: Any) -> list[str]:
    """Each Router member the plugin needs that ``router`` lacks, naming what it looks for."""
    problems = []
    acompletion = {"acompletion": "Router.acompletion (the SDK path the stream resumer wraps)"}
    if router_access.has_entry_points(router):
        wanted = {**acompletion, "settings": "Router.settings() (reading LiteLLM's settings)"}
    else:
        wanted = {
            "model_list": "Router.registry().all() or Router.model_list (the deployments)",
            "disable_cooldowns": "Router.apply() or Router.disable_cooldowns (LiteLLM's cooldown off)",
            **acompletion,
            "async_get_available_deployment": "Router.select() or Router.async_get_available_deployment "
            "(one pick, for the start-up check)",
        }
    for member, described in wanted.items():
        try:
            getattr(router, member)
        except AttributeError:
            problems.append(f"{described} does not exist")
    return problems


def check_router(router: Any) -> None:
    problems = router_problems(router)
    if problems:
        raise LiteLLMCompatError(problems)


async def check_fires(router: Any) -> None:
    """Make one pick through ``router`` and check LiteLLM ran the routing hook on it.

    A Router set up so that it skips the routing callbacks (on 1.108.7, one given a custom routing
    strategy with ``set_custom_routing_strategy``) would route around the plugin entirely.
    """
    deployments = router_access.current_deployments(router)
    if not deployments:
        return  # nothing to route, nothing to check
    import litellm
    from litellm.integrations.custom_logger import CustomLogger

    fired: list[str] = []

    class FilterProbe(CustomLogger):
        async def async_filter_deployments(
            self,
            model: str,
            healthy_deployments: list,
            messages: Any,
            request_kwargs: dict | None = None,
            parent_otel_span: Any = None,
        ) -> list:
            if _probing.get():
                fired.append(model)
            return healthy_deployments

    probe = FilterProbe()
    group = str(deployments[0].get("model_name"))
    request = {"litellm_trace_id": f"litellm-failover-startup-check-{uuid.uuid4().hex}"}
    litellm.logging_callback_manager.add_litellm_callback(probe)
    error: Exception | None = None
    try:
        with _probe():
            await router_access.pick(router, group, request, [{"role": "user", "content": "startup check"}])
    except Exception as exc:  # a pick may refuse for reasons of its own; the hook may still have run
        error = exc
    finally:
        litellm.logging_callback_manager.remove_callback_from_all_lists(probe)
    if fired:
        return
    if error is not None:
        # A pick that fails before the filters (a pre-call check of the user's refusing the probe's
        # request) says nothing about them: refusing to start on it would be a false alarm.
        logger.warning(
            "litellm-failover: the start-up pick for %r raised %s before LiteLLM's routing hooks ran; "
            "could not confirm that async_filter_deployments fires",
            group,
            type(error).__name__,
        )
        return
    raise LiteLLMCompatError(
        [
            f"the Router picked a deployment for model group {group!r} without calling "
            f"CustomLogger.async_filter_deployments (a custom routing strategy replaces LiteLLM's "
            f"pick, its routing hooks included)"
        ]
    )

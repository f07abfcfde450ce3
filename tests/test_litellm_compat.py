"""The LiteLLM adapters and the start-up check (litellm_failover.litellm_compat), on whichever
LiteLLM the environment has: CI runs this file on the oldest (1.108.7) and the newest (1.110.x)
supported release.

A LiteLLM without a piece the plugin relies on must be refused at start, with one message naming
the LiteLLM version and the piece, and nothing of the plugin left attached.
"""

from __future__ import annotations

import copy
import inspect
import signal
from typing import Any

import litellm
import pytest
import uvicorn
from litellm.types.router import CustomRoutingStrategyBase

from litellm_failover import attach
from litellm_failover.handler import FailoverHandler
from litellm_failover.litellm_compat import (
    LiteLLMCompatError,
    check_fires,
    check_hooks,
    current_deployments,
    litellm_version,
)
from litellm_failover.litellm_compat.hooks import REQUIRED_HOOKS, missing_hooks
from litellm_failover.litellm_compat.offers import OfferMatcher
from litellm_failover.litellm_compat.router_access import router_setting
from litellm_failover.litellm_compat.server import server_of

# CI runs these on the oldest and the newest supported LiteLLM (.ci/run).
pytestmark = pytest.mark.litellm_range


def model_list(api_base: str = "http://127.0.0.1:9/v1") -> list[dict]:
    return [
        {
            "model_name": "chat",
            "litellm_params": {"model": "hosted_vllm/fake-model", "api_base": api_base, "order": 1},
            "model_info": {"id": "d1", "failover": {"probe": False}},
        },
        {
            "model_name": "chat",
            "litellm_params": {"model": "hosted_vllm/fake-model", "api_base": api_base, "order": 1},
            "model_info": {"id": "d2", "failover": {"probe": False}},
        },
    ]


def settings(tmp_path) -> dict:
    return {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db"}


def handler_attached(plugin) -> bool:
    return plugin.handler in litellm.callbacks


class FirstDeployment(CustomRoutingStrategyBase):
    """A user's custom routing strategy: it replaces LiteLLM's whole pick, routing hooks included."""

    def __init__(self, router: Any) -> None:
        self.router = router

    async def async_get_available_deployment(
        self, model, messages=None, input=None, specific_deployment=False, request_kwargs=None
    ):
        return current_deployments(self.router)[0]

    def get_available_deployment(
        self, model, messages=None, input=None, specific_deployment=False, request_kwargs=None
    ):
        return current_deployments(self.router)[0]


class RouterWithout:
    """A real Router seen without some members, as an older or newer LiteLLM might have it."""

    def __init__(self, router: Any, hidden: set[str]) -> None:
        self._router = router
        self._hidden = hidden

    def __getattr__(self, name: str) -> Any:
        if name in self._hidden:
            raise AttributeError(name)
        return getattr(self._router, name)


async def test_the_running_litellm_passes_the_check_and_the_plugin_routes(tmp_path):
    router = litellm.Router(model_list=model_list())
    plugin = attach(router, settings(tmp_path))
    try:
        async with plugin:
            assert handler_attached(plugin)
            assert set(plugin.core.health) == {"d1", "d2"}  # the deployments came through the adapter
            assert sorted(d["model_info"]["id"] for d in current_deployments(router)) == ["d1", "d2"]
            # Routed by the plugin: its table answers, one deployment per pick.
            picked = await router.async_get_available_deployment(
                model="chat", request_kwargs={}, messages=[{"role": "user", "content": "x"}]
            )
            assert picked["model_info"]["id"] in {"d1", "d2"}
            assert router_setting(router, "disable_cooldowns") is True  # LiteLLM's cooldown off
    finally:
        plugin.detach()


async def test_a_router_whose_pick_skips_the_routing_hook_is_refused(tmp_path):
    router = litellm.Router(model_list=model_list())
    router.set_custom_routing_strategy(FirstDeployment(router))
    plugin = attach(router, settings(tmp_path))
    with pytest.raises(LiteLLMCompatError) as refused:
        async with plugin:
            pass
    message = str(refused.value)
    assert f"LiteLLM {litellm_version()}" in message
    assert "async_filter_deployments" in message
    assert not handler_attached(plugin)  # refused: nothing stays attached
    assert plugin.handler.plugin is None


@pytest.mark.parametrize(
    ("hidden", "named"),
    [
        ({"registry", "model_list"}, "Router.registry().all() or Router.model_list"),
        ({"apply", "disable_cooldowns"}, "Router.apply() or Router.disable_cooldowns"),
        ({"acompletion"}, "Router.acompletion"),
    ],
)
async def test_a_router_missing_a_member_is_refused_before_anything_attaches(tmp_path, hidden, named):
    callbacks_before = list(litellm.callbacks)
    router = RouterWithout(litellm.Router(model_list=model_list()), hidden)
    with pytest.raises(LiteLLMCompatError) as refused:
        attach(router, settings(tmp_path))
    assert f"LiteLLM {litellm_version()}" in str(refused.value)
    assert named in str(refused.value)
    assert list(litellm.callbacks) == callbacks_before


def test_a_hook_that_no_longer_takes_what_litellm_passes_is_refused():
    class OutdatedHandler(FailoverHandler):
        async def async_filter_deployments(self, model, healthy_deployments, messages):  # type: ignore[override]
            return healthy_deployments

    with pytest.raises(LiteLLMCompatError) as refused:
        check_hooks(OutdatedHandler)
    message = str(refused.value)
    assert f"LiteLLM {litellm_version()}" in message
    assert "async_filter_deployments" in message and "request_kwargs" in message


def test_every_required_hook_is_named_when_litellm_lacks_it():
    class NoHooks:
        pass

    problems = missing_hooks(NoHooks, FailoverHandler)
    assert len(problems) == len(REQUIRED_HOOKS)
    assert all("does not exist" in problem for problem in problems)
    check_hooks(FailoverHandler)  # the plugin's own handler fits the running LiteLLM


async def test_the_start_up_pick_leaves_no_trace_in_the_plugin(tmp_path):
    router = litellm.Router(model_list=model_list())
    plugin = attach(router, settings(tmp_path))
    try:
        await check_fires(router)
        await check_fires(router)
        assert plugin.book.excluded("litellm-failover-startup-check") == frozenset()
        assert len(plugin.book) == 0  # the check's picks booked no request
    finally:
        plugin.detach()


def test_offers_are_matched_by_identity_then_by_value_the_latest_claimant_winning():
    ours = model_list()[0]
    theirs = copy.deepcopy(ours)  # another Router over the same node, read by another plugin
    first = OfferMatcher({"d1": ours})
    second = OfferMatcher({"d1": theirs})
    offered_copy = copy.deepcopy(ours)  # what LiteLLM 1.110's core hands the routing hook
    assert first.owns(ours) and second.owns(theirs)  # identity: each Router's own dict
    assert second.owns(offered_copy) and not first.owns(offered_copy)  # by value: the latest
    second.release()
    assert first.owns(offered_copy)
    changed = copy.deepcopy(ours)
    changed["litellm_params"]["api_base"] = "http://127.0.0.1:10/v1"
    assert not first.owns(changed)  # a different deployment under the same id is not ours
    assert not first.owns({"model_info": {"id": "unknown"}})
    first.release()


def test_the_server_behind_a_wrapped_sigterm_handler_is_found():
    server = uvicorn.Server(uvicorn.Config(app=None))
    previous = server.handle_exit

    def handle_sigterm(signum, frame):  # how LiteLLM 1.110's proxy wraps uvicorn's handler
        signal.getsignal(signal.SIGTERM)
        previous(signum, frame)

    assert server_of(previous) is server
    assert server_of(handle_sigterm) is server
    assert server_of(signal.default_int_handler) is None
    assert inspect.iscoroutinefunction(server_of(handle_sigterm).shutdown)


def test_litellms_own_stream_continuation_gives_way_to_the_plugins(tmp_path):
    parameters = inspect.signature(litellm.Router).parameters
    if "enable_mid_stream_fallback_continuation" not in parameters:
        pytest.skip(f"LiteLLM {litellm_version()} has no enable_mid_stream_fallback_continuation")
    router = litellm.Router(
        model_list=model_list(),
        enable_mid_stream_fallback_continuation=True,
        session_affinity_repin_on_failover=True,
    )
    plugin = attach(router, settings(tmp_path))
    try:
        assert router_setting(router, "enable_mid_stream_fallback_continuation") is False
        assert any("enable_mid_stream_fallback_continuation turned off" in n for n in plugin.litellm_notes)
        assert any("session_affinity_repin_on_failover has no effect" in n for n in plugin.litellm_notes)
    finally:
        plugin.detach()
    # Detached, LiteLLM has its own continuation back, as the user configured it.
    assert router_setting(router, "enable_mid_stream_fallback_continuation") is True

    kept = litellm.Router(model_list=model_list(), enable_mid_stream_fallback_continuation=True)
    plugin = attach(kept, {**settings(tmp_path), "streams": {"resume": False}})
    try:
        assert router_setting(kept, "enable_mid_stream_fallback_continuation") is True
        assert plugin.litellm_notes == []
    finally:
        plugin.detach()

"""The pick honours what LiteLLM narrows it to after the filters, through a real ``litellm.Router``.

LiteLLM 1.108.7 asks ``async_filter_deployments`` with the whole group offered, then keeps only
the deployments of an order fallback's ``_target_order``, drops weighted failover's
``_excluded_deployment_ids``, and skips a retry's ``_retry_skipped_deployment_ids`` unless that
leaves none. A pick outside that narrowing left LiteLLM nothing: a client's 400 on the primary
tier came back as "No deployments available" (429) instead of being tried on the standby tier,
and every such pick counted an attempt in flight that never ran (what a drain then waited for).
The end-to-end case is ``test_client_errors.py`` (two tiers) and ``test_chaos.py`` (an injected
400); here each hint is checked at the pick itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import litellm
import pytest

from litellm_failover import attach
from litellm_failover.plugin import FailoverPlugin

# Group "chat": a1 and a2 in tier 1, b1 in tier 2. Group "other": o1. No server is ever called.
DEPLOYMENTS = {"a1": ("chat", 1), "a2": ("chat", 1), "b1": ("chat", 2), "o1": ("other", 1)}


@pytest.fixture
def plugin(tmp_path: Any) -> Iterator[FailoverPlugin]:
    model_list = [
        {
            "model_name": group,
            "litellm_params": {"model": "hosted_vllm/m", "api_base": "http://127.0.0.1:9/v1", "order": order},
            "model_info": {"id": name, "failover": {"probe": False}},
        }
        for name, (group, order) in DEPLOYMENTS.items()
    ]
    router = litellm.Router(model_list=model_list)
    attached = attach(router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db"})
    try:
        yield attached
    finally:
        attached.detach()


def offer(plugin: FailoverPlugin, group: str = "chat") -> list[dict]:
    """What LiteLLM offers the filter: the Router's own deployment dicts of the group."""
    return [d for d in plugin.router.model_list if d["model_name"] == group]


def picks(plugin: FailoverPlugin, count: int, **hints: Any) -> Counter[str]:
    seen: Counter[str] = Counter()
    for index in range(count):
        chosen = plugin.route("chat", offer(plugin), {"litellm_trace_id": f"r{index}", **hints})
        assert len(chosen) == 1
        seen[chosen[0]["model_info"]["id"]] += 1
    return seen


def test_an_order_fallback_is_picked_inside_its_tier_and_counted_once_in_flight(plugin):
    assert set(picks(plugin, 20)) <= {"a1", "a2"}  # tier 1 while nothing narrows the pick
    before = plugin.book.stats()["started"]
    assert picks(plugin, 20, _target_order=2) == {"b1": 20}
    assert plugin.book.stats()["started"] == before + 20
    assert plugin.in_flight_counts()["b1"] == 20


def test_an_order_with_nothing_offered_hands_back_the_offer_and_counts_nothing(plugin):
    given = offer(plugin)
    assert plugin.route("chat", given, {"litellm_trace_id": "r", "_target_order": 3}) == given
    # An order that is not a number is compared as LiteLLM compares it: it matches nothing.
    assert plugin.route("chat", given, {"litellm_trace_id": "r", "_target_order": "1"}) == given
    assert plugin.book.stats()["started"] == 0 and plugin.in_flight_counts() == {}


def test_weighted_failovers_exclusions_are_never_picked(plugin):
    assert picks(plugin, 20, _excluded_deployment_ids=["a1"]) == {"a2": 20}
    assert picks(plugin, 5, _excluded_deployment_ids=["a1", "a2"]) == {"b1": 5}
    # Ids LiteLLM would not read as ids narrow nothing here either.
    assert set(picks(plugin, 20, _excluded_deployment_ids="a1")) <= {"a1", "a2"}


def test_a_retrys_skip_is_a_preference_that_gives_way_to_no_pick(plugin):
    assert picks(plugin, 20, _retry_skipped_deployment_ids=("a1",)) == {"a2": 20}
    # a2 failed this request and a1 is to be skipped: within tier 1, a1 rather than nothing.
    plugin.book.record_failure("r", "a2")
    hints = {"litellm_trace_id": "r", "_retry_skipped_deployment_ids": ("a1",), "_target_order": 1}
    [chosen] = plugin.route("chat", offer(plugin), hints)
    assert chosen["model_info"]["id"] == "a1"


def test_a_model_that_is_not_the_offered_groups_is_left_to_litellm(plugin):
    # The table of "other" cannot place a pick among chat's deployments: hand them back as given.
    given = offer(plugin)
    assert plugin.route("other", given, {"litellm_trace_id": "r"}) == given
    assert plugin.route("no-such-group", given, {"litellm_trace_id": "r"}) == given
    assert plugin.book.stats()["started"] == 0

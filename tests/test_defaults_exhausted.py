"""A request that every deployment has failed gets the upstream's error, not a 429 (drill, 2026-12-07).

At the plugin's default settings on a loaded machine, ``http_500`` answered 5 clients "No
deployments available ... cooldown_list=[]" (429): the request had failed on p1 (its 500) and on
s1 (a timeout, or an attempt the rescue interrupted when s1 was ejected), panic mode had put both
back into the table, yet the pick left out every deployment that had failed the request and
answered LiteLLM with nothing while LiteLLM still had a retry and an order fallback to make.
LiteLLM raises the latest error, so the client got that 429 instead of the upstream's 500. Now
such an attempt goes to the routable deployment that failed the request longest ago.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import litellm
import openai
import pytest
from factories import fake_vllm_deployment
from fake_nodes import proxy_running, running, serving
from openai import AsyncOpenAI
from test_proxy_failover import proxy_config  # the same two tiers, fast probes, short failback
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.plugin import FailoverPlugin
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.store.queries import list_events

# CI runs these on the oldest and the newest supported LiteLLM (.ci/run).
pytestmark = pytest.mark.litellm_range

GOOD = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, FakeVLLM]]:
    async with serving({name: FakeVLLM(name, tokens_per_s=0) for name in ("p1", "s1")}) as started:
        yield started


def model_list(servers: dict[str, FakeVLLM]) -> list[dict[str, Any]]:
    """The drill's shape: one group, p1 in tier 1 and s1 in tier 2, no probes (only traffic and
    the test move a deployment's state)."""
    tiers = {"p1": 1, "s1": 2}
    return [fake_vllm_deployment(name, s, tiers[name], probe=False) for name, s in servers.items()]


async def answer(router: litellm.Router, stream: bool) -> tuple[str, int | None]:
    """What the caller sees: the exception's class and status, or ``ok``."""
    try:
        response = await router.acompletion(model="chat", messages=GOOD, stream=stream)
        if stream:
            async for _ in response:
                pass
    except Exception as exc:
        return type(exc).__name__, getattr(exc, "status_code", None)
    return "ok", 200


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("panic", [False, True], ids=["healthy", "panic"])
async def test_a_request_every_deployment_failed_gets_the_upstreams_error(servers, tmp_path, stream, panic):
    for server in servers.values():
        server.set_fault("http_500")
    plain = litellm.Router(model_list=model_list(servers), num_retries=2, retry_after=0)
    expected = await answer(plain, stream)
    assert expected == ("InternalServerError", 500)
    attempts = sum(s.state()["requests"]["total"] for s in servers.values())  # without the plugin

    router = litellm.Router(model_list=model_list(servers), num_retries=2, retry_after=0)
    plugin = attach(router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db"})
    try:
        async with plugin:
            if panic:
                # The drill: p1 ejected by probes, then s1 by traffic: every deployment out.
                for deployment_id in ("p1", "s1"):
                    assert plugin.core.eject(deployment_id, "test", source="probe")
                assert plugin.core.snapshot.tables["chat"].panic
            served_before = {name: s.state()["requests"]["total"] for name, s in servers.items()}
            # Before the fix: ("RateLimitError", 429), "No deployments available".
            assert await answer(router, stream) == expected
            served = {
                name: s.state()["requests"]["total"] - served_before[name] for name, s in servers.items()
            }
            # As many attempts as without the plugin (a first try and two retries on the group,
            # then as many on the order fallback to tier 2): p1, s1, then p1 again (it failed
            # the request longest ago), then s1 three times.
            assert served == {"p1": 2, "s1": attempts - 2}, served
            assert plugin.in_flight_counts() == {}
            stats = plugin.book.stats()
            assert stats["in_flight"] == 0 and stats["started"] == stats["ended"]
    finally:
        plugin.detach()


# Pick level: group "chat" with a1 and a2 in tier 1, b1 in tier 2. No server is ever called.
DEPLOYMENTS = {"a1": 1, "a2": 1, "b1": 2}


@pytest.fixture
def picker(tmp_path: Any) -> Iterator[FailoverPlugin]:
    model_list = [
        {
            "model_name": "chat",
            "litellm_params": {"model": "hosted_vllm/m", "api_base": "http://127.0.0.1:9/v1", "order": order},
            "model_info": {"id": name, "failover": {"probe": False}},
        }
        for name, order in DEPLOYMENTS.items()
    ]
    router = litellm.Router(model_list=model_list)
    attached = attach(router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db"})
    try:
        yield attached
    finally:
        attached.detach()


def pick(plugin: FailoverPlugin, **hints: Any) -> str | None:
    offered = [d for d in plugin.router.model_list if d["model_name"] == "chat"]
    chosen = plugin.route("chat", offered, {"litellm_trace_id": "r", **hints})
    return chosen[0]["model_info"]["id"] if chosen else None


def test_when_every_deployment_failed_the_request_the_longest_ago_is_tried_again(picker):
    for deployment_id in ("a2", "b1", "a1"):
        picker.book.record_failure("r", deployment_id)
    assert pick(picker) == "a2"  # failed it first
    picker.book.record_failure("r", "a2")  # failed it again: now the latest
    assert pick(picker) == "b1"
    # Inside LiteLLM's narrowing: an order fallback to tier 2 gets b1, never a tier-1 member.
    assert pick(picker, _target_order=2) == "b1"
    assert pick(picker, _target_order=1) == "a1"
    # An excluded id stays excluded: LiteLLM drops it after the filters whatever they answer.
    assert pick(picker, _target_order=1, _excluded_deployment_ids=["a1"]) == "a2"


def test_the_only_healthy_deployment_failed_the_request_it_is_tried_again(picker):
    # The midstream_drop case: p1 ejected, s1 healthy but failed this request once.
    assert picker.core.eject("a1", "test", source="probe")
    assert picker.core.eject("a2", "test", source="probe")
    assert not picker.core.snapshot.tables["chat"].panic
    picker.book.record_failure("r", "a1")
    picker.book.record_failure("r", "b1")
    assert pick(picker) == "b1"  # the one routable, though it failed the request
    # An ejected deployment is not made routable by it: an order fallback to tier 1 finds
    # nothing and LiteLLM's own error stands.
    assert pick(picker, _target_order=1) is None


# Behind the proxy: the drill's state, both nodes answering 500 to probes and requests alike, the
# probes ejecting both, panic mode routing to both.


@pytest.fixture
def nodes() -> Iterator[dict[str, FakeVLLMProcess]]:
    with running({name: FakeVLLMProcess(name, tokens_per_s=400) for name in ("p1", "s1")}) as started:
        yield started


@pytest.mark.proxy
async def test_in_panic_mode_the_proxy_answers_the_upstreams_500_not_429(nodes, tmp_path):
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    with proxy_running(proxy_config(nodes, database_url), tmp_path, database_url) as proxy:
        for node in nodes.values():
            node.set_fault("http_500")

        async def panicking() -> bool:
            try:
                rows = await list_events(database_url, event_type="panic_mode")
            except Exception:
                return False  # the table appears with the plugin's first flush
            return any(row["details"].get("entered") for row in rows)

        await wait_until(panicking, timeout=20, what="panic mode entered")
        client = AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=30)
        for stream in (False, True):
            # Before the fix: openai.RateLimitError, 429 "No deployments available".
            with pytest.raises(openai.InternalServerError) as caught:
                response = await client.chat.completions.create(model="chat", messages=GOOD, stream=stream)
                if stream:
                    async for _ in response:  # type: ignore[union-attr]
                        pass
            assert caught.value.status_code == 500

"""Rescue (issue 12 §1) through the real ``litellm.Router``: no request waits on a node the
plugin has given up on.

A primary (p1) and a standby (s1), fake vLLM servers; every deployment's own timeout is 20 s,
so a request LiteLLM left waiting on p1 would take 20 s. With the rescue, requests in flight on
p1 that have delivered nothing are answered by s1 within the detection time plus 1 s. Every
test runs on both ends of the LiteLLM range (1.108.7's Router frame, 1.110's step runner, see
``litellm_failover.litellm_compat.attempt_frames``): ``untracked == 0`` says the rescue found the
attempts on the LiteLLM it ran on.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import litellm
import pytest
from fake_nodes import serving
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.drill.loadgen import RequestResult, Sender, router_sender
from litellm_failover.litellm_compat.attempt_frames import StepRunner
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.rescue.interrupt import AttemptState, state
from litellm_failover.settings import RescueSettings
from litellm_failover.streams.first_token import FirstTokenClock

pytestmark = pytest.mark.litellm_range

FAST_HEALTH = {"interval_s": 0.2, "failure_interval_s": 0.05, "max_probe_latency_s": 1.0}
OWN_TIMEOUT_S = 20.0


def deployments(servers: dict[str, FakeVLLM], probe: dict[str, bool] | None = None) -> list[dict]:
    order = {"p1": 1, "s1": 2}
    return [
        {
            "model_name": "chat",
            "litellm_params": {
                "model": "hosted_vllm/fake-model",
                "api_base": server.api_base,
                "order": order[name],
                "timeout": OWN_TIMEOUT_S,
                "stream_timeout": OWN_TIMEOUT_S,
            },
            "model_info": {"id": name, "failover": {"probe": (probe or {}).get(name, True)}},
        }
        for name, server in servers.items()
    ]


@pytest.fixture
async def servers():
    async with serving({name: FakeVLLM(name, tokens_per_s=0) for name in ("p1", "s1")}) as started:
        yield started


@pytest.fixture
def make_plugin(tmp_path):
    made = []

    def make(model_list, settings=None):
        router = litellm.Router(model_list=model_list, num_retries=2, retry_after=0)
        merged = {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db", "health": FAST_HEALTH}
        merged.update(settings or {})
        plugin = attach(router, merged)
        made.append(plugin)
        return router, plugin

    yield make
    for plugin in made:
        plugin.detach()


async def warm_up(send) -> None:
    """A request of each kind first: LiteLLM builds its clients on a deployment's first call."""
    for i, stream in enumerate((False, True)):
        assert (await send(100 + i, stream=stream)).ok


def state_of(plugin, deployment_id: str) -> str:
    return plugin.core.health[deployment_id].state.value


def rescued_events(plugin) -> list:
    return [e for e in plugin.core.recent_events if e.event_type == "request_rescued"]


def chats(server: FakeVLLM) -> int:
    return server.state()["requests"]["by_endpoint"].get("/v1/chat/completions", 0)


async def test_hung_primary_in_flight_requests_are_answered_elsewhere_within_detection_plus_1s(
    servers, make_plugin
):
    router, plugin = make_plugin(deployments(servers))
    send = router_sender(router, "chat")
    async with plugin:
        await wait_until(lambda: plugin.prober.rounds >= 2, timeout=10, what="probes ran")
        await warm_up(send)
        # All six on p1 before its probes can fail (~1 s after a hang): a stalled engine holds
        # them first, then p1 hangs whole (tests/test_rescue_proxy.py says why).
        servers["p1"].set_fault("engine_hang")
        tasks = [asyncio.create_task(send(i, stream=i % 2 == 1)) for i in range(6)]
        await wait_until(lambda: servers["p1"].state()["waiting"] >= 6, timeout=10, what="6 held on p1")
        servers["p1"].set_fault("hang")
        hung_at = time.monotonic()
        await wait_until(lambda: state_of(plugin, "p1") == "unhealthy", timeout=10, what="eject")
        ejected_at = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=OWN_TIMEOUT_S / 2)
        # The originals were cancelled, not left running: p1 holds none of them any more.
        await wait_until(lambda: servers["p1"].state()["waiting"] == 0, timeout=2, what="p1 freed")
    assert [r.error for r in results if not r.ok] == []
    assert {r.served_by for r in results} == {"s1"}
    assert {r.stream for r in results} == {False, True}
    latest = max(r.ended_at for r in results)
    assert latest <= ejected_at + 1.0, f"answered {latest - ejected_at:.2f}s after the ejection"
    assert latest - hung_at <= (ejected_at - hung_at) + 1.0
    events = rescued_events(plugin)
    assert len(events) == 6 and {e.details["cause"] for e in events} == {"ejected"}
    assert {e.deployment_id for e in events} == {"p1"}
    assert plugin.status()["rescue"]["rescued"]["ejected"] == 6
    assert plugin.status()["rescue"]["untracked"] == 0 and plugin.status()["rescue"]["missed"] == 0


async def four_on_a_node_turned_slow(p1: Any, send: Sender) -> list[RequestResult]:
    """The false positive, on ``p1`` (a ``FakeVLLM`` or its process): four requests held on p1 by
    a stalled engine, so that all are there before its slow probes can eject it; then p1 turns
    slow (each held request answers 3 s later). With a cap of one rescue per ejection, one is
    answered elsewhere and its original leaves p1 before the other three are answered there."""
    p1.set_fault("engine_hang")
    tasks = [asyncio.create_task(send(i, False)) for i in range(4)]
    await wait_until(lambda: p1.state()["waiting"] >= 4, timeout=10, what="4 held on p1")
    p1.set_fault("slow", delay_s=3.0)
    await wait_until(lambda: any(t.done() for t in tasks), timeout=5, what="the rescued one answered")
    assert not all(t.done() for t in tasks)
    # p1 sees the rescued original's closed connection on its own time: waited for, not read once.
    await wait_until(lambda: p1.state()["waiting"] == 3, timeout=2, what="one original off p1")
    return await asyncio.wait_for(asyncio.gather(*tasks), timeout=OWN_TIMEOUT_S / 2)


async def test_a_false_positive_does_not_double_the_work_of_a_slow_node(servers, make_plugin):
    """A slow but healthy p1 is ejected (its probes are slower than max_probe_latency_s). The cap
    lets one ejection rescue one attempt; the rest finish on p1. Each request is generated once:
    the rescued original was cancelled on p1, the others were never copied."""
    router, plugin = make_plugin(deployments(servers), {"rescue": {"max_per_ejection": 1}})
    send = router_sender(router, "chat")
    async with plugin:
        await wait_until(lambda: plugin.prober.rounds >= 2, timeout=10, what="probes ran")
        await warm_up(send)
        before = {name: chats(server) for name, server in servers.items()}
        results = await four_on_a_node_turned_slow(servers["p1"], send)
        status = plugin.status()["rescue"]
    assert [r.error for r in results if not r.ok] == []
    served = sorted(r.served_by for r in results)
    assert served == ["p1", "p1", "p1", "s1"]
    assert chats(servers["p1"]) - before["p1"] == 4
    assert chats(servers["s1"]) - before["s1"] == 1  # one copy of one request, never of the others
    assert status["rescued"]["ejected"] == 1
    assert status["held_back"]["per_ejection"] == 3
    assert status["untracked"] == 0
    assert len(rescued_events(plugin)) == 1


async def test_a_stream_without_its_first_token_in_time_is_retried_elsewhere_and_counts(servers, make_plugin):
    """p1 is not probed (traffic decides), and stalls every prefill: each stream waits the
    first-token timeout, not its own 20 s, and three such timeouts eject p1."""
    router, plugin = make_plugin(
        deployments(servers, probe={"p1": False}), {"streams": {"first_token_timeout_s": 0.5}}
    )
    send = router_sender(router, "chat")
    async with plugin:
        servers["p1"].set_fault("hang")
        for i in range(3):
            result = await asyncio.wait_for(send(i, stream=True), timeout=OWN_TIMEOUT_S / 2)
            assert result.ok, result.error
            assert result.served_by == "s1"
            assert result.ended_at - result.started_at < 0.5 + 1.0
        assert state_of(plugin, "p1") == "unhealthy"
        causes = [e.details["cause"] for e in rescued_events(plugin)]
        assert causes == ["first_token_timeout"] * 3
        assert [e.details["limit_s"] for e in rescued_events(plugin)] == [0.5] * 3
        ejection = [
            e
            for e in plugin.core.recent_events
            if e.event_type == "state_change"
            and e.deployment_id == "p1"
            and e.details["to_state"] == "unhealthy"
        ]
        assert ejection and ejection[0].details["outcome"] == "timeout"
        # Once p1 is out, a fresh stream goes straight to s1.
        result = await send(3, stream=True)
        assert result.ok and result.served_by == "s1"
        # The three originals were cancelled on p1 (which sees each closed connection on its own time).
        await wait_until(lambda: servers["p1"].state()["waiting"] == 0, timeout=2, what="originals off p1")
        assert plugin.status()["rescue"]["untracked"] == 0


async def test_a_stream_that_delivered_its_first_token_is_never_interrupted(make_plugin):
    """A slow generation after a quick first token is the stall detector's business, not the
    first-token timeout's: the stream finishes on p1, its timer finds it past its first token."""
    nodes = {"p1": FakeVLLM("p1", words=40, tokens_per_s=15), "s1": FakeVLLM("s1", tokens_per_s=0)}
    async with serving(nodes):
        model_list = deployments(nodes, probe={"p1": False, "s1": False})
        router, plugin = make_plugin(model_list, {"streams": {"first_token_timeout_s": 2.0}})
        send = router_sender(router, "chat")
        async with plugin:
            await warm_up(send)  # LiteLLM's first calls build its clients, in a thread, slowly
            before = plugin.status()["rescue"]
            result = await asyncio.wait_for(send(0, stream=True), timeout=15)
            assert result.ok and result.served_by == "p1"
            assert result.ended_at - result.started_at > 2.0  # it ran past the first-token limit
            await wait_until(lambda: plugin.status()["rescue"]["tracked"] == 0, timeout=2, what="untracked")
            after = plugin.status()["rescue"]
            # Not rescued, and not a rescue that came too late either: no rate spent on it.
            assert after["rescued"] == before["rescued"] and after["missed"] == before["missed"]
            assert after["untracked"] == 0


def test_the_derived_first_token_timeout_follows_the_group_p99_within_floor_and_ceiling():
    settings = RescueSettings(
        first_token_p99_multiplier=4,
        first_token_floor_s=1,
        first_token_ceiling_s=10,
        first_token_min_samples=5,
    )
    clock = FirstTokenClock(None, settings)
    assert clock.limit("chat") == 10  # nothing learnt yet: the ceiling
    for _ in range(5):
        clock.observe("chat", 0.5)
    assert clock.limit("chat") == 2.0  # 4 x p99 0.5
    fast = FirstTokenClock(None, settings)
    for _ in range(5):
        fast.observe("chat", 0.01)
    assert fast.limit("chat") == 1  # the floor
    slow = FirstTokenClock(None, settings)
    for _ in range(5):
        slow.observe("chat", 8.0)
    assert slow.limit("chat") == 10  # the ceiling
    for bad in (float("nan"), float("inf"), -1.0):
        slow.observe("chat", bad)
    assert slow.stats()["chat"]["samples"] == 5
    assert FirstTokenClock(0.7, settings).limit("chat") == 0.7  # a fixed setting wins


def test_rescue_settings_name_the_bad_key():
    from litellm_failover.settings import FailoverConfigError, parse_settings

    with pytest.raises(FailoverConfigError, match="rescue"):
        parse_settings({"rescue": {"first_token_floor_s": 5, "first_token_ceiling_s": 1}})
    with pytest.raises(FailoverConfigError, match=r"streams\.first_token_timeout_s"):
        parse_settings({"streams": {"first_token_timeout_s": -1}})


async def test_an_ejection_rescues_the_waiting_request_and_leaves_a_delivering_stream_alone(make_plugin):
    """p1 generates slowly: a stream on it has sent its first chunks, a non-streaming request on
    it waits for its whole answer. Another replica ejects p1 (``source: fleet``): the waiting
    request is answered by s1 at once; the stream is the client's already and goes on."""
    nodes = {"p1": FakeVLLM("p1", tokens_per_s=8), "s1": FakeVLLM("s1", tokens_per_s=0)}
    async with serving(nodes):
        router, plugin = make_plugin(deployments(nodes, probe={"p1": False, "s1": False}))
        send = router_sender(router, "chat")
        async with plugin:
            warm = [{"role": "user", "content": "warm"}]
            await router.acompletion(model="s1", messages=warm)  # s1's client built before the clock runs
            first_chunk = asyncio.Event()
            response = await router.acompletion(
                model="chat", messages=[{"role": "user", "content": "a"}], stream=True
            )

            async def read_stream() -> str:
                text = ""
                async for chunk in response:
                    text += chunk.choices[0].delta.content or ""
                    first_chunk.set()
                return text

            stream_task = asyncio.create_task(read_stream())
            await asyncio.wait_for(first_chunk.wait(), timeout=5)
            waiting_task = asyncio.create_task(send(1, stream=False))
            await wait_until(lambda: nodes["p1"].state()["running"] >= 2, timeout=5, what="both on p1")
            ejected_at = time.monotonic()
            assert plugin.core.apply_remote_ejection("p1", origin="replica-b", reason="hung", remaining_s=30)
            result = await asyncio.wait_for(waiting_task, timeout=5)
            assert result.ok and result.served_by == "s1"
            assert result.ended_at - ejected_at < 1.0
            text = await asyncio.wait_for(stream_task, timeout=15)
            assert text.strip() == nodes["p1"].answer_for([{"role": "user", "content": "a"}]).strip()
            events = rescued_events(plugin)
            assert [(e.details["cause"], e.details["stream"]) for e in events] == [("ejected", False)]
            assert plugin.status()["rescue"]["untracked"] == 0


async def test_rescues_beyond_the_rate_wait_their_turn(servers, make_plugin):
    """``rescue.max_per_s: 2``: of four requests waiting on an ejected p1, two go at once, the
    others as the rate allows; none waits out its own timeout."""
    model_list = deployments(servers, probe={"p1": False, "s1": False})
    router, plugin = make_plugin(model_list, {"rescue": {"max_per_s": 2}})
    send = router_sender(router, "chat")
    async with plugin:
        await warm_up(send)
        servers["p1"].set_fault("hang")
        tasks = [asyncio.create_task(send(i, stream=False)) for i in range(4)]
        await wait_until(lambda: servers["p1"].state()["waiting"] >= 4, timeout=5, what="4 held on p1")
        ejected_at = time.monotonic()
        assert plugin.core.apply_remote_ejection("p1", origin="replica-b", reason="hung", remaining_s=30)
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=OWN_TIMEOUT_S / 2)
        status = plugin.status()["rescue"]
    assert all(r.ok and r.served_by == "s1" for r in results)
    answered = sorted(r.ended_at - ejected_at for r in results)
    assert answered[1] < 0.5 and 0.4 < answered[3] < 2.0, answered
    assert status["rescued"]["ejected"] == 4 and status["delayed"] == 2 and status["queued"] == 0
    assert status["untracked"] == 0


async def test_a_request_with_nowhere_else_to_go_is_never_rescued(make_plugin):
    """A group of one slow deployment: its late first token is not failed (that would turn a slow
    answer into an error); the stream is answered by p1 when p1 gets to it."""
    async with serving({"p1": FakeVLLM("p1", tokens_per_s=0)}) as nodes:
        model_list = deployments(nodes, probe={"p1": False})
        router, plugin = make_plugin(model_list, {"streams": {"first_token_timeout_s": 0.5}})
        send = router_sender(router, "chat")
        async with plugin:
            await warm_up(send)
            nodes["p1"].set_fault("slow", delay_s=1.5)
            result = await asyncio.wait_for(send(0, stream=True), timeout=15)
            assert result.ok and result.served_by == "p1", result.error
            assert result.ended_at - result.started_at >= 1.5
            status = plugin.status()["rescue"]
            assert status["rescued"]["first_token_timeout"] == 0
            assert status["held_back"]["no_alternative"] == 1


async def test_a_rescued_attempt_counts_as_one_of_litellms_retries(servers, make_plugin):
    """The interrupted attempt is a failed try inside LiteLLM's own retry loop (``num_retries:
    2``), for a non-streaming request and for a stream before its first token alike: the answer
    comes from s1 on LiteLLM's first retry, and says so in LiteLLM's own retry headers."""
    router, plugin = make_plugin(deployments(servers, probe={"p1": False, "s1": False}))
    async with plugin:
        await warm_up(router_sender(router, "chat"))
        servers["p1"].set_fault("hang")

        async def one(stream: bool) -> object:
            messages = [{"role": "user", "content": f"stream={stream}"}]
            response = await router.acompletion(model="chat", messages=messages, stream=stream)
            if stream:
                async for _ in response:
                    pass
            return response

        tasks = [asyncio.create_task(one(stream)) for stream in (False, True)]
        await wait_until(lambda: servers["p1"].state()["waiting"] >= 2, timeout=5, what="2 held on p1")
        assert plugin.core.apply_remote_ejection("p1", origin="replica-b", reason="hung", remaining_s=30)
        responses = await asyncio.wait_for(asyncio.gather(*tasks), timeout=OWN_TIMEOUT_S / 2)
        status = plugin.status()["rescue"]
    for response in responses:
        hidden = response._hidden_params
        assert hidden["model_id"] == "s1"
        headers = hidden["additional_headers"]
        assert headers["x-litellm-attempted-retries"] == 1, headers
        assert headers["x-litellm-attempted-fallbacks"] == 0, headers
    assert status["rescued"]["ejected"] == 2
    assert status["untracked"] == 0 and status["missed"] == 0


class HoldOnePick(litellm.integrations.custom_logger.CustomLogger):
    """A routing callback after the plugin's: once armed, it holds the next pick (the plugin has
    already chosen its deployment) until released, as a slow filter or pre-call step would."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def async_filter_deployments(
        self, model, healthy_deployments, messages, request_kwargs=None, parent_otel_span=None
    ):
        if self.armed:
            self.armed = False
            self.held.set()
            await self.release.wait()
        return healthy_deployments


async def test_an_attempt_picked_but_not_started_is_kept_and_rescued_once_it_starts(servers, make_plugin):
    """LiteLLM 1.110 picks in a step before the attempt's own: an attempt on p1 still in its pick
    when p1 is ejected is not yet waiting on p1. The rescue keeps it (``prune`` does not drop
    it) and tries again shortly, so it is failed as soon as it does wait on p1. On 1.108.7 the
    pick runs inside the attempt's frame: the hold itself is interrupted. Either way the request
    is answered by s1 at once."""
    router, plugin = make_plugin(deployments(servers, probe={"p1": False, "s1": False}))
    holder = HoldOnePick()
    litellm.callbacks.append(holder)
    try:
        send = router_sender(router, "chat")
        async with plugin:
            await warm_up(send)
            servers["p1"].set_fault("hang")
            holder.armed = True
            task = asyncio.create_task(send(0, stream=False))
            await asyncio.wait_for(holder.held.wait(), timeout=5)
            [attempt] = plugin.rescuer.attempts.on("p1")
            step_runner = isinstance(attempt.handle.layout, StepRunner)
            assert state(attempt.handle) is (AttemptState.PENDING if step_runner else AttemptState.WAITING)
            plugin.rescuer.prune()
            assert plugin.status()["rescue"]["tracked"] == 1  # not dropped while it has not started
            assert plugin.core.apply_remote_ejection("p1", origin="replica-b", reason="hung", remaining_s=30)
            if step_runner:
                # Nothing to fail yet: the rescue waits for the attempt to start.
                await wait_until(
                    lambda: plugin.rescuer.attempts.get(attempt.request_id, "p1") is None, timeout=2
                )
                assert plugin.status()["rescue"]["rescued"]["ejected"] == 0
            released_at = time.monotonic()
            holder.release.set()
            result = await asyncio.wait_for(task, timeout=OWN_TIMEOUT_S / 2)
            status = plugin.status()["rescue"]
    finally:
        litellm.callbacks.remove(holder)
    assert result.ok and result.served_by == "s1", result.error
    assert result.ended_at - released_at < 1.0
    assert status["rescued"]["ejected"] == 1
    assert status["untracked"] == 0 and status["missed"] == 0

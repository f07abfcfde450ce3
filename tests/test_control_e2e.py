"""The operator CLI against real ``litellm.Router``s with the plugin, in front of fake vLLM servers.

One replica through the database (SQLite), and two replicas through the local Redis: the CLI
(the real entry point, in a thread) sends the command, each plugin applies it through its own
``drain`` / ``failover`` / ``shift``, and the traffic the Routers send afterwards shows it.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import litellm
import pytest
from control_support import run_cli, wide_terminal  # noqa: F401 (wide_terminal: autouse)
from factories import fake_vllm_deployment
from fake_nodes import serving
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.control import ControlPlane
from litellm_failover.drill.loadgen import RequestResult, messages_for, router_sender
from litellm_failover.plugin import FailoverPlugin
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.store.queries import list_events

pytest_plugins = ["services"]

FAST_HEALTH = {"interval_s": 0.2, "failure_interval_s": 0.05, "max_probe_latency_s": 1.0}
FAST_CONTROL = {"poll_interval_s": 0.05, "heartbeat_interval_s": 0.5}
ORDER = {"p1": 1, "p2": 1, "s1": 2}


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, FakeVLLM]]:
    # p1 streams slowly (about 1 s an answer) so a drain can meet a stream in flight.
    async with serving(
        {
            "p1": FakeVLLM("p1", words=30, tokens_per_s=30),
            "p2": FakeVLLM("p2", tokens_per_s=0),
            "s1": FakeVLLM("s1", tokens_per_s=0),
        }
    ) as started:
        yield started


def model_list(servers: dict[str, FakeVLLM], names: tuple[str, ...]) -> list[dict[str, Any]]:
    timeouts = {"timeout": 10, "stream_timeout": 10}
    return [fake_vllm_deployment(name, servers[name], ORDER[name], **timeouts) for name in names]


@pytest.fixture
async def proxies() -> AsyncIterator[Any]:
    """``await replica(model_list, settings)``: a Router, its started plugin and control plane."""
    running: list[tuple[FailoverPlugin, ControlPlane, bool]] = []

    async def start(models: list[dict[str, Any]], settings: dict[str, Any]) -> tuple[Any, FailoverPlugin]:
        router = litellm.Router(model_list=copy.deepcopy(models), num_retries=2, retry_after=0)
        plugin = attach(router, {"health": FAST_HEALTH, "control": FAST_CONTROL, **settings})
        await plugin.start()
        # The plugin may run its own control plane (the lead wires one in); else run one here,
        # wired the way the plugin does it.
        plane = getattr(plugin, "control", None)
        own = plane is None
        if plane is None:
            plane = ControlPlane(plugin, plugin.settings, plugin.writer, plugin.fleet)
            await plane.start()
        running.append((plugin, plane, own))
        return router, plugin

    yield start
    for plugin, plane, own in running:
        if own:
            await plane.stop()
        await plugin.stop()
        plugin.detach()


async def send_all(router: Any, count: int) -> list[RequestResult]:
    send = router_sender(router, "chat", num_retries=2)
    return [await send(index, False) for index in range(count)]


async def test_cli_commands_steer_one_proxy_through_the_database(
    servers: dict[str, FakeVLLM], proxies: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    router, plugin = await proxies(model_list(servers, ("p1", "p2", "s1")), {"database_url": url})
    replica = plugin.instance_id

    # p2 out first, so the stream below can only go to p1.
    assert await run_cli("drain", "p2", "--url", url) == 0
    assert "p2 drained: 0 in flight" in capsys.readouterr().out

    # A stream in flight on p1 when the drain arrives finishes whole; new requests go elsewhere.
    # The reader holds the stream open after its second chunk until the drain has been applied
    # and the other requests sent: p1 answers in about 1 s, and on a loaded host the CLI's
    # round trip (its own loop in a thread) could outlast that, finding nothing in flight.
    messages = messages_for(7)
    stream = await router.acompletion(model="chat", messages=messages, stream=True, num_retries=0)
    chunks: list[str] = []
    drained = asyncio.Event()

    async def read() -> None:
        async for chunk in stream:
            chunks.append(chunk.choices[0].delta.content or "")
            if len(chunks) == 2:
                await drained.wait()

    reader = asyncio.create_task(read())
    try:
        await wait_until(
            lambda: len(chunks) == 2 and plugin.in_flight_counts().get("p1") == 1, 5, "a stream on p1"
        )
        code = await run_cli("drain", "p1", "--url", url, "--json")
        report = json.loads(capsys.readouterr().out)
        assert code == 0 and report["exit_code"] == 0, report
        [result] = report["results"]
        assert (result["instance_id"], result["outcome"]) == (replica, "applied")
        assert result["details"]["state"] == "draining" and result["details"]["in_flight"] == 1
        served = Counter(r.served_by for r in await send_all(router, 10))
        assert served == {"s1": 10}  # the whole primary tier is drained: the standby serves
        assert plugin.in_flight_counts().get("p1") == 1  # the stream was in flight all along
        drained.set()
        await asyncio.wait_for(reader, 10)
    finally:
        reader.cancel()
    assert "".join(chunks) == servers["p1"].answer_for(messages)  # not cut
    await wait_until(lambda: plugin.switching.status()["drains"][0]["state"] == "drained", 5, "drain done")

    # The plugin's own refusals come back to the CLI with its message.
    code = await run_cli(
        "shift", "chat", "--to", "nowhere", "--steps", "50,100", "--interval", "60", "--url", url
    )
    out = capsys.readouterr()
    assert code == 1
    assert f"{replica}  refused  unknown shift target 'nowhere' in group 'chat'" in out.out
    assert "not applied by 1 of 1 answering replicas" in out.err

    # Planned failover: the primary tier drains, the standby serves; status --live shows it.
    assert await run_cli("undrain", "p1", "--url", url) == 0
    assert await run_cli("undrain", "p2", "--url", url) == 0
    assert await run_cli("failover", "chat", "--url", url) == 0
    assert Counter(r.served_by for r in await send_all(router, 6)) == {"s1": 6}
    capsys.readouterr()
    assert await run_cli("status", "--live", "--url", url, "--json") == 0
    [live] = json.loads(capsys.readouterr().out)["results"]
    rows = {d["deployment_id"]: d for d in live["details"]["groups"]["chat"]["deployments"]}
    assert rows["p1"]["draining"] and rows["p2"]["draining"] and not rows["s1"]["draining"]
    assert await run_cli("failback", "chat", "--url", url) == 0
    await wait_until(lambda: not plugin.draining(), 5, "the failback to undrain the primary tier")

    # Who did what, in the audit trail.
    assert await plugin.writer.flush(5)
    commands = await list_events(url, event_type="operator_command")
    assert [e["details"]["kind"] for e in commands] == [
        "drain",
        "drain",
        "shift",
        "undrain",
        "undrain",
        "failover",
        "status",
        "failback",
    ]
    assert [e["details"]["outcome"] for e in commands][:3] == ["applied", "applied", "refused"]
    drains = await list_events(url, event_type="drain_started")
    assert [e["deployment_id"] for e in drains][:2] == ["p2", "p1"]


@pytest.mark.redis
async def test_cli_commands_reach_two_proxies_through_redis(
    servers: dict[str, FakeVLLM],
    proxies: Any,
    tmp_path: Any,
    redis_base_url: str,
    channel: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = model_list(servers, ("p1", "p2", "s1"))
    replicas = []
    for name in ("proxy-a", "proxy-b"):
        settings = {
            "instance_id": name,
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/{name}.db",  # each its own: Redis carries it
            "redis_url": redis_base_url,
            "fleet": {"channel": channel, "operation_timeout_s": 0.5, "reconnect_max_s": 0.5},
        }
        replicas.append(await proxies(models, settings))
    (router_a, plugin_a), (router_b, plugin_b) = replicas

    code = await run_cli("drain", "p1", "--redis-url", redis_base_url, "--channel", channel)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "proxy-a  applied  p1 drained: 0 in flight" in out.out
    assert "proxy-b  applied  p1 drained: 0 in flight" in out.out
    assert plugin_a.draining() == plugin_b.draining() == frozenset({"p1"})
    for router in (router_a, router_b):
        assert Counter(r.served_by for r in await send_all(router, 4)) == {"p2": 4}

    # A shift to the standby: both start it; a second one on the same group is refused by both.
    shift = ("shift", "chat", "--to", "s1", "--steps", "50,100", "--interval", "60")
    assert await run_cli(*shift, "--redis-url", redis_base_url, "--channel", channel) == 0
    code = await run_cli(*shift, "--redis-url", redis_base_url, "--channel", channel)
    out = capsys.readouterr()
    assert code == 1
    assert out.out.count("refused") == 2 and "shift" in out.err

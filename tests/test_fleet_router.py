"""Fleets through real ``litellm.Router``s sharing the local Redis (127.0.0.1:6379).

Each test gets its own channel (and so its own state keys, deleted afterwards), so tests never see
each other's messages. Replica B's own probes run every 30 s: what B knows about a dead node in
these tests, it learned from the fleet.

One thing these in-process tests must work around: LiteLLM calls every registered callback for
every Router's attempts, so a failed request through router A would also reach B's plugin
directly. Here A therefore learns of failures from its probes (or a core decision), never from
traffic; the two-proxy test in ``test_fleet_proxy.py`` shows the traffic path across processes.
"""

from __future__ import annotations

import copy
import json
import time

import pytest
import test_router_failover
from factories import attached, fake_vllm_deployment
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from waiting import free_port, wait_until

from litellm_failover.drill.loadgen import router_sender
from litellm_failover.fleet.messages import SCHEMA_VERSION
from litellm_failover.outlier import Outcome
from litellm_failover.providers.fake.vllm import FakeVLLM

pytestmark = pytest.mark.redis
pytest_plugins = ["services"]

servers = test_router_failover.servers  # in-process fake vLLM servers p1, p2, s1 (a fixture)

FAST = {"interval_s": 0.2, "failure_interval_s": 0.05, "max_probe_latency_s": 1.0}
SLOW = {"interval_s": 30.0}
ORDER = {"p1": 1, "p2": 1, "s1": 2}


def model_list(servers: dict[str, FakeVLLM], names: tuple[str, ...]) -> list[dict]:
    return [fake_vllm_deployment(name, servers[name], ORDER[name]) for name in names]


@pytest.fixture
def replica(tmp_path, servers, channel, redis_base_url):
    """``replica("A", ...)``: a Router and its plugin, in the fleet of this test's channel."""
    with attached({}) as make:

        def one(instance_id: str, *, health=FAST, redis_url=None, names=("p1", "s1"), outlier=None):
            settings = {
                "instance_id": instance_id,
                "database_url": f"sqlite+aiosqlite:///{tmp_path}/{instance_id}.db",
                "health": health,
                "redis_url": redis_url or redis_base_url,
                "fleet": {"channel": channel, "operation_timeout_s": 0.5, "reconnect_max_s": 0.5},
            }
            if outlier:
                settings["outlier"] = outlier
            # A deep copy each: every Router owns its deployment dicts, as separate replicas would.
            return make(copy.deepcopy(model_list(servers, names)), settings)

        yield one


def record_picks(plugin) -> list[str]:
    """Every deployment the plugin's routing picks, in order (each attempt of each request)."""
    picks: list[str] = []
    original = plugin.book.start  # every attempt's pick goes through it (requests/path.py)

    def recording(request_id, deployment_id):
        picks.append(deployment_id)
        return original(request_id, deployment_id)

    plugin.book.start = recording
    return picks


def deployment(plugin, name: str) -> dict:
    return next(d for d in plugin.status()["groups"]["chat"]["deployments"] if d["deployment_id"] == name)


def fleet_events(plugin, name: str) -> list:
    return [
        e
        for e in plugin.core.recent_events
        if e.event_type == "state_change" and e.deployment_id == name and e.details["source"] == "fleet"
    ]


async def test_an_ejection_on_replica_a_moves_replica_b_before_b_tries_the_dead_node(replica, servers):
    _, plugin_a = replica("A")
    router_b, plugin_b = replica("B", health=SLOW)
    async with plugin_a, plugin_b:
        assert plugin_a.status()["fleet"]["connected"] and plugin_b.status()["fleet"]["connected"]
        picks_b = record_picks(plugin_b)
        send_b = router_sender(router_b, "chat", num_retries=0)
        assert (await send_b(0, False)).served_by == "p1"  # B routes to the primary while it lives

        await servers["p1"].stop()  # connections to p1 are refused from now on
        await wait_until(lambda: deployment(plugin_a, "p1")["state"] == "unhealthy", 5, "A ejects p1")
        ejected = next(
            e
            for e in plugin_a.core.recent_events
            if e.deployment_id == "p1" and e.event_type == "state_change"
        )
        assert "refused" in ejected.reason.lower()
        await wait_until(lambda: deployment(plugin_b, "p1")["state"] == "unhealthy", 1.0, "B applies it")
        [applied] = fleet_events(plugin_b, "p1")  # how fast: bench/fleet_propagation.py
        assert applied.details["origin_instance"] == "A" and applied.instance_id == "B"

        status_b = deployment(plugin_b, "p1")
        assert status_b["ejected_by"] == "A" and status_b["reason"].startswith("ejected by A: ")
        assert plugin_b.status()["fleet"]["applied"] >= 1
        picks_b.clear()
        result = await send_b(1, False)
        assert result.ok and result.served_by == "s1"
        assert picks_b == ["s1"]  # B never tried the dead node
        assert plugin_a.status()["fleet"]["ignored_by_reason"].get("own", 0) >= 1  # its own echo


async def test_a_replica_that_starts_later_reads_the_ejection_from_the_keys(replica):
    _, plugin_a = replica("A", outlier={"base_ejection_s": 60})
    async with plugin_a:
        plugin_a.core.record_failure("p1", Outcome.CONNECT_ERROR, error="connection refused")
        await wait_until(lambda: plugin_a.status()["fleet"]["published"] >= 1, 2, "A publishes")
        router_c, plugin_c = replica("C", health=SLOW)
        picks_c = record_picks(plugin_c)
        async with plugin_c:
            # Read during start, before the first request: no waiting needed.
            status = deployment(plugin_c, "p1")
            assert status["state"] == "unhealthy" and status["ejected_by"] == "A"
            assert 50 < status["ejected_for_s"] <= 60  # the remote ejection's remaining time
            assert plugin_c.status()["fleet"]["resync_keys"] >= 1
            result = await router_sender(router_c, "chat", num_retries=0)(0, False)
            assert result.served_by == "s1" and picks_c == ["s1"]


async def test_invalid_and_foreign_version_messages_are_ignored_and_counted(replica, channel, redis_base_url):
    client = Redis.from_url(redis_base_url)
    try:
        # A bad state key is met by the resync at start; bad pub/sub messages as they come.
        await client.set(f"{channel}:state:health:p1", "{not json", px=60_000)
        _, plugin_b = replica("B", health=SLOW)
        async with plugin_b:
            assert plugin_b.status()["fleet"]["ignored_by_reason"] == {"malformed": 1}
            for message in ("garbage", json.dumps({"v": SCHEMA_VERSION + 1, "kind": "eject"}), "[]"):
                await client.publish(channel, message)
            await wait_until(lambda: plugin_b.status()["fleet"]["ignored"] >= 4, 2, "B counts them")
            fleet = plugin_b.status()["fleet"]
            assert fleet["ignored_by_reason"] == {"malformed": 3, "version": 1}
            assert fleet["applied"] == 0 and fleet["connected"]
            assert all(d["state"] == "healthy" for d in plugin_b.status()["groups"]["chat"]["deployments"])
    finally:
        await client.aclose()


async def test_a_replica_without_redis_keeps_serving_and_resyncs_when_it_returns(replica, redis_base_url):
    from services import TcpForwarder  # loaded by pytest_plugins (importing it earlier skips its rewrite)

    target = make_url(redis_base_url)
    relay = TcpForwarder(target.host or "127.0.0.1", target.port or 6379, free_port())
    relay_url = make_url(redis_base_url).set(port=relay.port).render_as_string(hide_password=False)
    names = ("p1", "p2", "s1")
    _, plugin_a = replica("A", names=names, outlier={"base_ejection_s": 60})
    router_b, plugin_b = replica(
        "B", health=SLOW, redis_url=relay_url, names=names, outlier={"base_ejection_s": 60}
    )
    send_b = router_sender(router_b, "chat", num_retries=0)
    try:
        async with plugin_a:
            started = time.monotonic()
            async with plugin_b:  # Redis "down" at start: B starts at once, on local state
                assert time.monotonic() - started < 3
                fleet = plugin_b.status()["fleet"]
                assert not fleet["connected"] and fleet["last_error"]
                assert all([(await send_b(i, False)).ok for i in range(4)])

                await relay.start()
                assert await plugin_b.fleet.link.wait_connected(3)
                await relay.stop()  # and down again, while both replicas decide things
                await wait_until(lambda: not plugin_b.status()["fleet"]["connected"], 3, "B sees the loss")
                plugin_a.core.record_failure("p1", Outcome.CONNECT_ERROR, error="connection refused")
                plugin_b.core.record_failure("p2", Outcome.CONNECT_ERROR, error="connection refused")
                assert deployment(plugin_b, "p1")["state"] == "healthy"  # B could not hear of it
                results = [await send_b(i, False) for i in range(4)]
                assert all(r.ok for r in results)
                assert plugin_b.status()["fleet"]["queued"] == 1  # B's own decision waits to be sent

                await relay.start()
                await wait_until(lambda: deployment(plugin_b, "p1")["ejected_by"] == "A", 3, "B resyncs")
                await wait_until(lambda: deployment(plugin_a, "p2")["ejected_by"] == "B", 3, "A hears B")
                fleet = plugin_b.status()["fleet"]
                assert fleet["connected"] and fleet["connects"] == 2 and fleet["resyncs"] == 2
                assert fleet["queued"] == 0 and fleet["dropped"] == 0
                result = await send_b(9, False)
                assert result.ok and result.served_by == "s1"
    finally:
        await relay.stop()


async def test_a_redis_that_never_answers_costs_each_call_a_bounded_wait(replica):
    from services import SilentServer  # loaded by pytest_plugins (importing it earlier skips its rewrite)

    async with SilentServer() as silent:
        redis_url = f"redis://:pw-xyz@127.0.0.1:{silent.port}/0"
        router_b, plugin_b = replica("B", health=SLOW, redis_url=redis_url)
        started = time.monotonic()
        async with plugin_b:
            assert time.monotonic() - started < 3  # the start waits for one bounded attempt at most
            fleet = plugin_b.status()["fleet"]
            assert not fleet["connected"] and "no answer within 0.5s" in fleet["last_error"]
            assert "pw-xyz" not in str(plugin_b.status())
            sent = time.monotonic()
            result = await router_sender(router_b, "chat", num_retries=0)(0, False)
            assert result.ok and time.monotonic() - sent < 2

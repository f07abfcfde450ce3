"""Failover through the real ``litellm.Router`` with the plugin attached, against fake vLLM servers.

Each scenario: a two-node primary tier (p1, p2) and a standby (s1), a concurrent mixed load, one
fault on p1, and assertions on what clients saw, where traffic went, and what the events table
holds.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import litellm
import pytest
from factories import attached, fake_vllm_deployment
from fake_nodes import serving
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.drill.loadgen import router_sender, run_load
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.store.queries import list_events

# CI runs these on the oldest and the newest supported LiteLLM (.ci/run).
pytestmark = pytest.mark.litellm_range

FAST_HEALTH = {"interval_s": 0.2, "failure_interval_s": 0.05, "max_probe_latency_s": 1.0}
FAST_FAILBACK = {"hold_down_s": 0.5, "step_interval_s": 0.5}


def deployments(servers: dict[str, object], timeout: float = 5.0, probe: bool = True) -> list[dict]:
    order = {"p1": 1, "p2": 1, "s1": 2}
    return [
        fake_vllm_deployment(name, server, order[name], timeout=timeout, stream_timeout=timeout, probe=probe)
        for name, server in servers.items()
    ]


@pytest.fixture
async def servers():
    async with serving({name: FakeVLLM(name, tokens_per_s=0) for name in ("p1", "p2", "s1")}) as started:
        yield started


@pytest.fixture
def make_plugin(tmp_path):
    """``make_plugin(model_list, settings=None, **router_kwargs)`` -> (router, plugin)."""
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    # Failback and slow start (tests/test_switching*.py) short enough to end within the waits.
    with attached({"database_url": database_url, "health": FAST_HEALTH, "failback": FAST_FAILBACK}) as make:
        yield make


def state_of(plugin, deployment_id: str) -> str:
    return plugin.core.health[deployment_id].state.value


async def events_of(plugin, event_type: str | None = None) -> list[dict]:
    await plugin.writer.flush(timeout=5)
    return await list_events(plugin.settings.database_url, since=None, event_type=event_type, limit=10_000)


async def test_sigkilled_primary_under_load_costs_clients_nothing(tmp_path, make_plugin):
    procs = {name: FakeVLLMProcess(name, tokens_per_s=400) for name in ("p1", "p2", "s1")}
    for proc in procs.values():
        proc.start()
    try:
        router, plugin = make_plugin(deployments(procs))
        async with plugin:
            killed_at: list[float] = []

            def kill_after_some(result):
                if result.index == 40 and not killed_at:
                    killed_at.append(time.monotonic())  # before the kill: chunks may be buffered
                    procs["p1"].kill()

            results = await run_load(
                router_sender(router, "chat"), total=200, concurrency=8, on_result=kill_after_some
            )
            assert killed_at, "the primary was never killed"
            failed = [r for r in results if not r.ok]
            # Only a stream that p1 had already started answering may break (issue 5 resumes
            # those); every non-streamed request and every stream not yet started must succeed.
            assert [r for r in failed if not r.stream] == []
            assert [r for r in failed if r.first_chunk_at is None] == []
            assert [r for r in failed if r.started_at >= killed_at[0] or r.served_by != "p1"] == []
            late = [r for r in results if r.started_at > killed_at[0] + 0.5]
            assert late and all(r.served_by == "p2" for r in late)
            assert state_of(plugin, "p1") == "unhealthy"
            events = await events_of(plugin, "state_change")
            assert any(e["deployment_id"] == "p1" and e["details"]["to_state"] == "unhealthy" for e in events)

            procs["p1"].restart()
            await wait_until(lambda: state_of(plugin, "p1") == "healthy", timeout=10, what="p1 healthy")
            states = [
                e["details"]["to_state"]
                for e in await events_of(plugin, "state_change")
                if e["deployment_id"] == "p1"
            ]
            assert states[-2:] == ["recovering", "healthy"]
            after = await run_load(router_sender(router, "chat"), total=60, concurrency=4)
            assert {r.served_by for r in after} == {"p1", "p2"}
    finally:
        for proc in procs.values():
            proc.stop()


async def test_hung_primary_is_out_of_rotation_within_5s_with_default_settings(servers, make_plugin):
    router, plugin = make_plugin(deployments(servers, timeout=3.0), {"health": {}})
    async with plugin:
        await wait_until(lambda: plugin.prober.rounds >= 6, timeout=10, what="first probe rounds")
        servers["p1"].set_fault("hang")
        hung_at = time.monotonic()
        await wait_until(lambda: state_of(plugin, "p1") == "unhealthy", timeout=5.0, what="p1 ejected")
        assert time.monotonic() - hung_at <= 5.0
        results = await run_load(router_sender(router, "chat"), total=40, concurrency=4)
        assert all(r.ok for r in results)
        assert {r.served_by for r in results} == {"p2"}
        servers["p1"].clear_fault()


async def test_http_500_moves_traffic_without_client_errors(servers, make_plugin):
    # Slow probes, so that real traffic meets the 500s first and outlier detection acts.
    router, plugin = make_plugin(deployments(servers), {"health": {"interval_s": 30}})
    async with plugin:
        warm = await run_load(router_sender(router, "chat"), total=8, concurrency=2)
        assert {r.served_by for r in warm} == {"p1", "p2"}
        servers["p1"].set_fault("http_500")
        results = await run_load(router_sender(router, "chat"), total=80, concurrency=4)
        assert [r.error for r in results if not r.ok] == []
        assert state_of(plugin, "p1") == "unhealthy"
        assert "consecutive server_error" in plugin.core.health["p1"].reason
        tail = Counter(r.served_by for r in results[-30:])
        assert set(tail) == {"p2"}
        failovers = await events_of(plugin, "request_failover")
        assert failovers and all(e["from_deployment"] == "p1" for e in failovers)


async def test_health_lie_is_caught_by_outlier_detection(servers, make_plugin):
    router, plugin = make_plugin(deployments(servers), {"outlier": {"base_ejection_s": 30}})
    async with plugin:
        servers["p1"].set_fault("health_lie")
        results = await run_load(router_sender(router, "chat"), total=60, concurrency=4)
        assert all(r.ok for r in results)
        assert state_of(plugin, "p1") == "unhealthy"  # probes say fine; traffic says otherwise
        record = plugin.core.health["p1"]
        assert record.checks["http_health"].ok  # the lie is visible: health passes, yet ejected
        assert "consecutive server_error" in record.reason
        tail = Counter(r.served_by for r in results[-30:])
        assert set(tail) == {"p2"}


async def test_gpu_pressure_lowers_weight_without_ejecting(servers, make_plugin):
    router, plugin = make_plugin(deployments(servers))
    async with plugin:
        servers["p1"].set_fault("gpu_pressure")
        await wait_until(lambda: state_of(plugin, "p1") == "degraded", timeout=5, what="p1 degraded")
        results = await run_load(router_sender(router, "chat"), total=200, concurrency=8)
        assert all(r.ok for r in results)
        counts = Counter(r.served_by for r in results)
        assert counts["s1"] == 0
        assert counts["p1"] < counts["p2"] * 0.25

        # Both signals fail, each at its own pace: the engine's KV cache every probe round, the GPU
        # memory once the last passing GPU read is older than `gpu_read_interval_s` (5 s by
        # default; GPU memory moves slowly, so a passing read stands in for a few rounds). A single
        # read right after a short load could still see that passing read.
        def both_checks_failing() -> bool:
            checks = plugin.status()["groups"]["chat"]["deployments"][0]["checks"]
            return not checks["kv_cache"]["ok"] and not checks["gpu_memory"]["ok"]

        await wait_until(both_checks_failing, timeout=10, what="p1's kv_cache and gpu_memory checks failing")
        assert state_of(plugin, "p1") == "degraded"  # saturation lowers the weight, never ejects
        servers["p1"].clear_fault()
        await wait_until(lambda: state_of(plugin, "p1") == "healthy", timeout=5, what="p1 healthy again")


async def test_standby_takes_over_when_the_whole_primary_tier_fails(servers, make_plugin):
    router, plugin = make_plugin(deployments(servers))
    async with plugin:
        servers["p1"].set_fault("http_500")
        servers["p2"].set_fault("http_500")
        results = await run_load(router_sender(router, "chat"), total=60, concurrency=4)
        assert all(r.ok for r in results)
        assert {r.served_by for r in results[-20:]} == {"s1"}
        failovers = await events_of(plugin, "failover")
        assert any(e["to_deployment"] == "s1" and e["details"]["to_tier"] == 2 for e in failovers)
        servers["p1"].clear_fault()
        servers["p2"].clear_fault()
        await wait_until(
            lambda: plugin.core.table("chat").active_tier == 1, timeout=10, what="failback to tier 1"
        )


async def test_a_stream_cutting_primary_is_ejected_after_a_few_cuts(servers, make_plugin):
    # Resuming off: the cuts reach the client here (tests/test_streams_router.py resumes them).
    settings = {"strategy": "round-robin", "streams": {"resume": False}}
    router, plugin = make_plugin(deployments(servers), settings)
    async with plugin:
        servers["p1"].set_fault("drop_midstream", after_chunks=2)
        send = router_sender(router, "chat")
        cuts = 0
        for index in range(30):
            result = await send(index, True)
            if result.broken_stream:
                assert result.served_by == "p1"
                cuts += 1
            if cuts >= plugin.settings.outlier.consecutive_errors:
                break
        # the failure log hook runs as a background task: wait for it rather than racing it
        await wait_until(lambda: state_of(plugin, "p1") == "unhealthy", timeout=5, what="p1 ejected")
        assert cuts == plugin.settings.outlier.consecutive_errors
        assert "stream_cut" in plugin.core.health["p1"].reason


async def test_a_retry_never_lands_on_the_deployment_that_failed_it(servers, make_plugin):
    # Traffic only (no probes), and no ejection, so nothing but the exclusion keeps a retry away.
    model_list = deployments(servers, probe=False)
    router, plugin = make_plugin(model_list, {"outlier": {"consecutive_errors": 1000}})
    async with plugin:
        servers["p1"].set_fault("http_500")
        servers["p2"].set_fault("http_500")

        def completions(name: str) -> int:
            return servers[name].state()["requests"]["by_endpoint"].get("/v1/chat/completions", 0)

        result = await router_sender(router, "chat", num_retries=2)(0, False)
        assert result.ok and result.served_by == "s1"
        # p1 and p2 each failed once; neither was tried twice for the same request
        assert (completions("p1"), completions("p2"), completions("s1")) == (1, 1, 1)


async def test_bad_settings_refuse_to_attach(make_plugin):
    router = litellm.Router(
        model_list=[
            {
                "model_name": "chat",
                "litellm_params": {"model": "hosted_vllm/x", "api_base": "http://127.0.0.1:1/v1"},
                "model_info": {"id": "a", "failover": {"provider": "vllm", "helth_url": "x"}},
            }
        ]
    )
    with pytest.raises(litellm_failover_error()) as info:
        attach(router, {})
    assert "model_list[0].model_info.failover.helth_url" in str(info.value)
    with pytest.raises(litellm_failover_error()) as info:
        attach(router, {"health": {"interval_s": -1}})
    assert "failover_settings.health.interval_s" in str(info.value) and "-1" in str(info.value)
    with pytest.raises(litellm_failover_error()) as info:
        attach(router, {"strategy": "fastest"})
    assert "failover_settings.strategy" in str(info.value) and "fastest" in str(info.value)


def litellm_failover_error():
    from litellm_failover import FailoverConfigError

    return FailoverConfigError


async def test_database_down_never_blocks_routing(servers, tmp_path):
    router = litellm.Router(model_list=deployments(servers), num_retries=2, retry_after=0)
    plugin = attach(
        router,
        {
            "database_url": "postgresql+asyncpg://nobody:hunter2@127.0.0.1:9/none",
            "health": FAST_HEALTH,
        },
    )
    try:
        async with plugin:
            servers["p1"].set_fault("http_500")
            started = time.monotonic()
            results = await asyncio.wait_for(
                run_load(router_sender(router, "chat"), total=40, concurrency=4), timeout=30
            )
            assert all(r.ok for r in results)
            assert time.monotonic() - started < 15
            stats = plugin.status()["writer"]
            assert stats["queued"] > 0 and not stats["connected"]
            assert "hunter2" not in str(plugin.status())
    finally:
        plugin.detach()


async def test_secrets_never_reach_events_logs_or_status(tmp_path, make_plugin, caplog):
    """A provider that echoes the API key in its error body: the key must go no further."""
    from aiohttp import web

    secret = "sk-live-do-not-leak-0123456789"

    async def echo_key(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": f"denied {request.headers.get('Authorization')}"}}, status=500
        )

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"data": []})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", echo_key)
    app.router.add_get("/v1/models", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    healthy = FakeVLLM("p2", tokens_per_s=0)
    await healthy.start()
    try:
        model_list = [
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": "openai/fake-model",
                    "api_base": f"http://127.0.0.1:{port}/v1",
                    "api_key": secret,
                },
                "model_info": {"id": "leaky"},
            },
            {
                "model_name": "chat",
                "litellm_params": {"model": "hosted_vllm/fake-model", "api_base": healthy.api_base},
                "model_info": {"id": "p2"},
            },
        ]
        router, plugin = make_plugin(
            model_list, {"strategy": "round-robin", "outlier": {"consecutive_errors": 2}}
        )
        with caplog.at_level("DEBUG", logger="litellm_failover"):
            async with plugin:
                results = await run_load(router_sender(router, "chat"), total=20, concurrency=2)
                assert all(r.ok for r in results)
                await wait_until(lambda: state_of(plugin, "leaky") == "unhealthy", timeout=5, what="ejected")
                events = await events_of(plugin)
        errors = [e["details"]["error"] for e in events if e["details"].get("error")]
        assert any("denied Bearer ***" in error for error in errors)  # the echo was stored, masked
        assert secret not in str(events)
        assert secret not in str(plugin.status())
        assert secret not in caplog.text
    finally:
        await healthy.stop()
        await runner.cleanup()


async def test_panic_mode_fails_open_when_every_deployment_looks_down(servers, make_plugin):
    """Every GPU sidecar unreachable: each node is "unhealthy" by its probes, yet the engines
    answer. Refusing every request would turn a telemetry outage into a full outage."""
    model_list = deployments(servers)
    for entry in model_list:
        entry["model_info"]["failover"]["gpu_url"] = "http://127.0.0.1:9"  # nothing listens
    router, plugin = make_plugin(model_list)
    async with plugin:
        await wait_until(lambda: plugin.core.table("chat").panic, timeout=5, what="panic mode")
        results = await run_load(router_sender(router, "chat"), total=30, concurrency=3)
        assert all(r.ok for r in results)
        assert {r.served_by for r in results} == {"p1", "p2"}  # tiers still order the fail-open
        panic = await events_of(plugin, "panic_mode")
        assert panic and panic[0]["details"]["entered"] is True
        assert "gpu_health" in plugin.core.health["p1"].reason

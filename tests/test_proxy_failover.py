"""Failover through the real LiteLLM proxy, enabled from config.yaml alone, driven by the openai SDK.

One proxy per scenario group: fake vLLM servers run as subprocesses (p1, p2 primary tier; s1
standby), the proxy loads ``litellm_failover.proxy_handler`` from ``litellm_settings.callbacks``
and reads ``failover_settings`` from the same file. What the plugin decided is read back from the
events table and the deployment-state table it writes, as an operator would.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from fake_nodes import proxy_running, running, wait_events
from openai import AsyncOpenAI
from waiting import wait_until

from litellm_failover.drill.loadgen import openai_sender, run_load
from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.store.queries import list_deployment_states, list_events

pytestmark = [pytest.mark.proxy, pytest.mark.litellm_range]

ORDER = {"p1": 1, "p2": 1, "s1": 2}


def proxy_config(nodes: dict[str, FakeVLLMProcess], database_url: str, **failover: object) -> dict:
    settings = {
        "database_url": database_url,
        "health": {"interval_s": 0.25, "failure_interval_s": 0.05, "max_probe_latency_s": 1.0},
        # Failback hold-down and ramp steps (tests/test_switching*.py) short enough for the waits.
        "failback": {"hold_down_s": 0.5, "step_interval_s": 0.5},
    }
    settings.update(failover)
    return {
        "model_list": [
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": "hosted_vllm/fake-model",
                    "api_base": node.api_base,
                    "order": ORDER[name],
                    "timeout": 5,
                    "stream_timeout": 5,
                },
                "model_info": {"id": name, "failover": {"gpu_url": node.url}},
            }
            for name, node in nodes.items()
        ],
        "litellm_settings": {"callbacks": ["litellm_failover.proxy_handler"]},
        "router_settings": {"num_retries": 2, "retry_after": 0},
        "failover_settings": settings,
    }


@pytest.fixture
def nodes():
    with running({name: FakeVLLMProcess(name, tokens_per_s=400) for name in ORDER}) as started:
        yield started


@pytest.fixture
def proxy(nodes, tmp_path):
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    with proxy_running(proxy_config(nodes, database_url), tmp_path, database_url) as process:
        yield process


def p1_down(event: dict) -> bool:
    return event["deployment_id"] == "p1" and event["details"]["to_state"] == "unhealthy"


def client_for(proxy: ProxyProcess) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=30)


async def states(proxy: ProxyProcess) -> dict[str, str]:
    rows = await list_deployment_states(proxy.database_url)
    return {row["deployment_id"]: row["state"] for row in rows}


async def wait_state(proxy: ProxyProcess, deployment: str, state: str, within: float = 10) -> None:
    async def reached() -> bool:
        try:
            return (await states(proxy)).get(deployment) == state
        except Exception:
            return False  # the table may not exist until the plugin's first flush

    await wait_until(reached, timeout=within, what=f"{deployment} {state} in failover_deployment_state")


async def sigkill_primary_under_load(proxy: ProxyProcess, nodes: dict[str, FakeVLLMProcess]) -> None:
    """The kill test (also run with several workers, ``test_proxy_workers``): p1 SIGKILLed after 30
    of 150 mixed requests; no client error but streams p1 was already sending, then p2 serves."""
    await wait_state(proxy, "p1", "healthy")
    client = client_for(proxy)
    killed_at: list[float] = []

    def kill_after_some(result):
        if result.index == 30 and not killed_at:
            killed_at.append(time.monotonic())
            nodes["p1"].kill()

    results = await run_load(
        openai_sender(client, "chat"), total=150, concurrency=6, on_result=kill_after_some, deadline_s=90
    )
    assert killed_at
    failed = [r for r in results if not r.ok]
    # The only acceptable failures are streams p1 was already sending when it died.
    assert [r for r in failed if not r.stream] == []
    assert [r for r in failed if r.first_chunk_at is None] == []
    assert [r for r in failed if r.started_at >= killed_at[0] or r.served_by != "p1"] == []
    late = [r for r in results if r.started_at > killed_at[0] + 0.5]
    assert late and {r.served_by for r in late} == {"p2"}


async def test_sigkilled_primary_behind_the_proxy_costs_clients_nothing(proxy, nodes):
    await sigkill_primary_under_load(proxy, nodes)
    await wait_state(proxy, "p1", "unhealthy")
    # The state row can reach the table a flush before its event (fake_nodes.wait_events).
    events = await wait_events(
        proxy.database_url, "state_change", lambda found: any(p1_down(e) for e in found)
    )

    nodes["p1"].restart()
    await wait_state(proxy, "p1", "healthy")
    after = await run_load(openai_sender(client_for(proxy), "chat"), total=40, concurrency=4)
    assert all(r.ok for r in after) and {r.served_by for r in after} == {"p1", "p2"}

    def p1_states(found: list[dict]) -> list[str]:
        return [e["details"]["to_state"] for e in found if e["deployment_id"] == "p1"]

    # The healthy row waited for above can reach the table a flush before its event.
    found = await wait_events(
        proxy.database_url, "state_change", lambda found: p1_states(found)[-1:] == ["healthy"]
    )
    transitions = p1_states(found)
    assert transitions[-3:] == ["unhealthy", "recovering", "healthy"]
    assert all(e["instance_id"] for e in events)


async def test_faults_move_traffic_as_designed_behind_the_proxy(proxy, nodes):
    await wait_state(proxy, "p1", "healthy")
    client = client_for(proxy)
    send = openai_sender(client, "chat")

    # http_500: probes and traffic both see it; clients see nothing.
    nodes["p1"].set_fault("http_500")
    results = await run_load(send, total=40, concurrency=4)
    assert [r.error for r in results if not r.ok] == []
    await wait_state(proxy, "p1", "unhealthy")
    assert {r.served_by for r in results[-15:]} == {"p2"}
    nodes["p1"].clear_fault()
    await wait_state(proxy, "p1", "healthy")

    # gpu_pressure: degraded, weight lowered, still routed a little, never ejected.
    nodes["p1"].set_fault("gpu_pressure")
    await wait_state(proxy, "p1", "degraded")
    results = await run_load(send, total=120, concurrency=6)
    assert all(r.ok for r in results)
    counts = Counter(r.served_by for r in results)
    assert counts["p1"] < counts["p2"] * 0.25 and counts["s1"] == 0
    nodes["p1"].clear_fault()
    await wait_state(proxy, "p1", "healthy")

    # hang: out of rotation by the probes; requests in flight time out and retry elsewhere.
    nodes["p1"].set_fault("hang")
    await wait_state(proxy, "p1", "unhealthy", within=5)
    results = await run_load(send, total=30, concurrency=3)
    assert all(r.ok for r in results) and {r.served_by for r in results} == {"p2"}
    recovered_from = datetime.now(UTC)
    nodes["p1"].clear_fault()
    await wait_state(proxy, "p1", "healthy")
    # Back from an ejection, p1 slow-starts (weight x 10 %, 50 %, 100 %, a step each 0.5 s). The
    # next phase's 40 requests would otherwise meet p1 mostly at a fraction of its weight: 3 or 4
    # of them in instrumented runs, barely the 3 errors in a row outlier detection needs, with
    # no traffic after the load to eject it. Each phase starts from p1 at its full weight.
    await wait_events(
        proxy.database_url,
        "ramp_completed",
        lambda found: any(e["deployment_id"] == "p1" for e in found),
        since=recovered_from,
    )

    # health_lie: /health says fine, completions fail: outlier detection ejects from traffic.
    nodes["p1"].set_fault("health_lie")
    results = await run_load(send, total=40, concurrency=4)
    assert all(r.ok for r in results)
    await wait_state(proxy, "p1", "unhealthy")
    rows = {row["deployment_id"]: row for row in await list_deployment_states(proxy.database_url)}
    assert "server_error" in rows["p1"]["reason"]
    assert rows["p1"]["checks"]["http_health"]["ok"] is True

    # The whole primary tier down: the standby serves.
    nodes["p2"].set_fault("http_500")
    results = await run_load(send, total=30, concurrency=3)
    assert all(r.ok for r in results)
    assert {r.served_by for r in results[-10:]} == {"s1"}
    # Written by the proxy's writer on its own schedule, maybe after the last answer.
    await wait_events(
        proxy.database_url, "failover", lambda found: any(e["to_deployment"] == "s1" for e in found)
    )


async def test_a_stream_cutting_primary_is_ejected_behind_the_proxy(nodes, tmp_path):
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    # Resuming off: the cuts reach the client here (tests/test_streams_proxy.py resumes them).
    config = proxy_config(nodes, database_url, strategy="round-robin", streams={"resume": False})
    with ProxyProcess(config, tmp_path) as proxy:
        proxy.database_url = database_url
        await wait_state(proxy, "p1", "healthy")
        nodes["p1"].set_fault("drop_midstream", after_chunks=6)
        send = openai_sender(client_for(proxy), "chat")
        client_cuts = 0
        for index in range(40):
            result = await send(index, True)
            # A cut the proxy sees before any content is retried elsewhere by LiteLLM and never
            # reaches the client, but the plugin still counts it against p1. That can be any cut:
            # the proxy's HTTP client (aiohttp) raises a connection error ahead of the bytes it had
            # buffered, so a slow proxy loses the chunks before the cut. Other cuts reach the client
            # after a 200, possibly before any content: count every failed stream.
            if not result.ok:
                assert result.served_by in (None, "p1")
                client_cuts += 1
            if (await states(proxy)).get("p1") == "unhealthy":
                break
        await wait_state(proxy, "p1", "unhealthy", within=5)
        rows = {row["deployment_id"]: row for row in await list_deployment_states(database_url)}
        assert "3 consecutive stream_cut" in rows["p1"]["reason"]
        # Ejected at the third cut: the client saw at most those three (none, where LiteLLM
        # retried them all).
        assert client_cuts <= 3


def test_the_proxy_refuses_to_start_with_bad_failover_settings(nodes, tmp_path):
    config = proxy_config(nodes, f"sqlite+aiosqlite:///{tmp_path}/e.db", strategy="fastest")
    proxy = ProxyProcess(config, tmp_path)
    with pytest.raises(RuntimeError) as info:
        proxy.start(timeout=60)
    assert "failover_settings.strategy" in str(info.value) and "fastest" in str(info.value)


def test_a_config_mistake_is_reported_first_framed_with_the_deployment_and_a_suggestion(nodes, tmp_path):
    config = proxy_config(nodes, f"sqlite+aiosqlite:///{tmp_path}/e.db", stratgy="weighted")
    config["model_list"][0]["model_info"]["failover"]["gpu_ur"] = "http://127.0.0.1:1"
    proxy = ProxyProcess(config, tmp_path)
    with pytest.raises(RuntimeError):
        proxy.start(timeout=60)
    lines = proxy.log_path.read_text(errors="replace").splitlines()
    rule = "=" * 78
    start = lines.index(rule)
    end = lines.index(rule, start + 1)
    banner = lines[start : end + 1]
    assert (
        banner[1].startswith("litellm-failover: invalid configuration in ") and "will not start" in banner[1]
    )
    assert banner[2] == "  - failover_settings.stratgy: unknown key; did you mean `strategy`?"
    assert banner[3] == (
        "  - deployment 'p1': model_list[0].model_info.failover.gpu_ur: unknown key; did you mean `gpu_url`?"
    )
    assert "litellm-failover config check" in banner[4]
    # Before LiteLLM's traceback, not buried at its end.
    assert not any("Traceback" in line for line in lines[:start])
    assert any("Traceback" in line for line in lines[end:])


def test_status_cli_reads_what_the_proxy_wrote(proxy):
    async def healthy() -> bool:
        try:
            return (await states(proxy)).get("p2") == "healthy"
        except Exception:
            return False

    import asyncio

    asyncio.run(wait_until(healthy, timeout=10, what="p2 state row"))
    output = subprocess.run(
        [sys.executable, "-m", "litellm_failover.cli", "status", "--url", proxy.database_url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert '"deployment_id": "p2"' in output and '"state": "healthy"' in output


# A flush interval far longer than the tests: rows reach the table only through the shutdown flush.
HOLD_ROWS = {"flush_interval_s": 600, "batch_size": 100000}


async def take_p1_out_of_rotation(proxy: ProxyProcess, nodes: dict[str, FakeVLLMProcess]) -> None:
    nodes["p1"].set_fault("http_500")
    send = openai_sender(client_for(proxy), "chat")

    async def p1_out_of_rotation() -> bool:
        results = await run_load(send, total=10, concurrency=2)
        assert all(r.ok for r in results)
        return {r.served_by for r in results} == {"p2"}

    await wait_until(p1_out_of_rotation, timeout=20, what="p1 out of rotation")


async def assert_p1_down_was_flushed(proxy: ProxyProcess, database_url: str, exit_code: int | None) -> None:
    events = await list_events(database_url, event_type="state_change")
    assert any(p1_down(e) for e in events), (
        f"exit code {exit_code}; state changes {[(e['deployment_id'], e['details']) for e in events]}; "
        f"proxy log:\n{proxy.log_tail(80)}"
    )


async def test_shutdown_flushes_what_the_writer_still_holds(nodes, tmp_path):
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    proxy = ProxyProcess(proxy_config(nodes, database_url, writer=HOLD_ROWS), tmp_path)
    proxy.start()
    try:
        await take_p1_out_of_rotation(proxy, nodes)
    finally:
        proxy.stop()
    exit_code = proxy.wait_exit(0)
    assert exit_code is not None
    await assert_p1_down_was_flushed(proxy, database_url, exit_code)


async def test_a_sigterm_while_the_plugin_starts_still_flushes_what_it_holds(nodes, tmp_path):
    """The proxy serves, and the plugin routes, before the plugin's start is done: seconds under
    load, or as long as a hung Redis holds it. A SIGTERM then still stops the plugin, and what the
    requests served meanwhile changed (p1 ejected by outlier detection) reaches the table."""
    from services import SilentServer  # loaded by pytest_plugins (importing it earlier skips its rewrite)

    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    async with SilentServer() as redis:
        # The fleet's first Redis call waits up to operation_timeout_s for an answer: the start
        # stays there until the test closes the server, long after the SIGTERM.
        redis_url = f"redis://127.0.0.1:{redis.port}/0"
        config = proxy_config(
            nodes, database_url, writer=HOLD_ROWS, redis_url=redis_url, fleet={"operation_timeout_s": 300}
        )
        proxy = ProxyProcess(config, tmp_path)
        proxy.start()
        try:
            async with asyncio.timeout(60):
                await redis.connected.wait()  # the start reached the fleet and is held there
            await take_p1_out_of_rotation(proxy, nodes)
            proxy.terminate()
            # The server's shutdown has begun (its port is closed) while the start is still held;
            # then the hung Redis goes away, so that the fleet's stop is quick.
            await wait_until(lambda: not proxy.answers(), timeout=30, what="the proxy's port closed")
            await redis.close()
            exit_code = await asyncio.to_thread(proxy.wait_exit, 30)
        finally:
            proxy.stop()
    assert exit_code is not None
    await assert_p1_down_was_flushed(proxy, database_url, exit_code)

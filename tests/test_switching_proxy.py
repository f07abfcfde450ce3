"""Traffic switching through the real LiteLLM proxy, driven by the openai SDK and the real CLI.

- A drain sent by ``litellm-failover drain p1`` (through the database's command table) while p1
  is streaming: every stream finishes whole, new requests go elsewhere, and the events table has
  ``drain_started`` / ``drain_completed`` with the in-flight counts.
- Auto failback after the primary tier failed: traffic comes back in the configured ramp steps,
  with the share each step got measured from the responses (each names the node that served it)
  and attributed to a step by time (the step events' timestamps), so requests that straddle a
  step change are left out. Tolerance: 4 standard errors of a binomial share at that count,
  on at least ``MIN_STEP_SAMPLE`` requests. The ramp is timed (5 s a step) and a loaded host
  serves fewer requests in 5 s, so the test repeats the whole fail-and-recover cycle, bounded in
  count and time, until the 25 % steps have held enough requests between them; every cycle is
  checked in full, and a quiet host needs one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from control_support import run_cli, wide_terminal  # noqa: F401 (wide_terminal: autouse)
from test_proxy_failover import client_for, proxy_config, wait_state
from waiting import wait_until

from litellm_failover.drill.loadgen import RequestResult, Sender, messages_for, openai_sender, run_load
from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.text import expected_answer
from litellm_failover.store.queries import list_events

pytestmark = pytest.mark.proxy

CONTROL = {"poll_interval_s": 0.1, "heartbeat_interval_s": 0.5}
WORDS = 24


def start_nodes(**tokens_per_s: float) -> dict[str, FakeVLLMProcess]:
    nodes = {
        name: FakeVLLMProcess(name, words=WORDS, tokens_per_s=tokens_per_s.get(name, 0))
        for name in ("p1", "p2", "s1")
    }
    for node in nodes.values():
        node.start()
    return nodes


async def events(database_url: str, event_type: str, since: datetime | None = None) -> list[dict]:
    return await list_events(database_url, since=since, event_type=event_type, limit=10_000)


async def wait_event(
    database_url: str, event_type: str, within: float = 10, since: datetime | None = None
) -> list[dict]:
    found: list[dict] = []

    async def present() -> bool:
        try:
            found[:] = await events(database_url, event_type, since)
        except Exception:
            return False  # the table may not exist until the plugin's first flush
        return bool(found)

    await wait_until(present, timeout=within, what=f"a {event_type} event")
    return found


def epoch(value: object) -> float:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.timestamp()


async def test_a_drain_through_the_proxy_lets_every_stream_finish(tmp_path):
    nodes = start_nodes(p1=16)  # 24 tokens at 16/s: 1.5 s a stream on p1
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    config = proxy_config(nodes, database_url, in_tier="round-robin", control=CONTROL)
    try:
        with ProxyProcess(config, tmp_path) as proxy:
            proxy.database_url = database_url
            await wait_state(proxy, "p1", "healthy")
            client = client_for(proxy)
            send = openai_sender(client, "chat")
            offset = time.time() - time.monotonic()
            streams = [asyncio.create_task(send(index, True)) for index in range(8)]

            async def p1_streaming() -> bool:
                state = await asyncio.to_thread(nodes["p1"].state, 1.0)
                return state["running"] >= 3

            await wait_until(p1_streaming, timeout=10, what="streams running on p1")
            assert await run_cli("drain", "p1", "--url", database_url, "--wait", "10") == 0
            drained_at = time.time()
            during = await run_load(send, total=20, concurrency=4, stream_every=3)
            assert all(r.ok for r in during) and "p1" not in {r.served_by for r in during}
            results = await asyncio.gather(*streams)
            on_p1 = [r for r in results if r.served_by == "p1"]
            for r in results:
                assert r.ok and not r.broken_stream, r.error
                assert r.text == expected_answer(messages_for(r.index), WORDS)  # whole, never cut
            (started,) = await wait_event(database_url, "drain_started")
            (completed,) = await wait_event(database_url, "drain_completed")
            in_flight = started["details"]["in_flight"]
            # Every stream p1 served was in flight when the drain came (a stream the proxy routed
            # after it went to p2), and p1 got no other request.
            assert in_flight >= 3 and len(on_p1) == in_flight
            p1_requests = (await asyncio.to_thread(nodes["p1"].state, 1.0))["requests"]["by_endpoint"]
            assert p1_requests.get("/v1/chat/completions") == in_flight
            assert started["deployment_id"] == "p1" and started["details"]["via"] == "control"
            assert (completed["details"]["finished"], completed["details"]["cut"]) == (in_flight, 0)
            # It completed once the last p1 stream had ended (as the client saw it, give or take
            # the last chunk's trip), not when the drain was sent.
            last_end = max(r.ended_at for r in on_p1) + offset
            assert epoch(completed["created_at"]) >= max(drained_at, last_end - 0.3)
            failovers = await events(database_url, "failover")
            assert any(e["details"].get("source") == "drain" for e in failovers)
    finally:
        for node in nodes.values():
            node.stop()


def share_within(share_pct: float, expected_pct: float, n: int) -> tuple[bool, float]:
    p = expected_pct / 100.0
    tolerance = 4 * 100 * math.sqrt(max(p * (1 - p), 0.0025) / n)
    return abs(share_pct - expected_pct) <= tolerance, tolerance


MIN_STEP_SAMPLE = 100  # requests wholly inside the 25 % step: fewer would make ±4 SE too wide to mean much
# Fail-and-recover cycles at most, and no new one after FAILBACKS_BUDGET_S: a quiet host needs
# one; at a load average of ~15 on 2 cores a cycle took ~35 s and held ~30-55 requests in its step.
MAX_FAILBACKS = 6
FAILBACKS_BUDGET_S = 200.0
FAILBACK = {"hold_down_s": 0.5, "ramp_steps": [25, 100], "step_interval_s": 5.0}


async def failback_once(
    proxy: ProxyProcess, nodes: dict[str, FakeVLLMProcess], send: Sender
) -> tuple[list[RequestResult], list[RequestResult]]:
    """Fail the primary tier, let it recover, and load the proxy until the failback completes.
    Checks this failback in full; returns the requests wholly inside its 25 % step, and the
    requests that ended before the step began."""
    database_url = proxy.database_url
    since = datetime.now(UTC)  # this cycle's events only (the database keeps every cycle's)
    for name in ("p1", "p2"):
        nodes[name].set_fault("http_500")
    await wait_state(proxy, "p1", "unhealthy")
    await wait_state(proxy, "p2", "unhealthy")
    for name in ("p1", "p2"):
        nodes[name].clear_fault()
    offset = time.time() - time.monotonic()
    stop = asyncio.Event()

    async def watch() -> None:
        await wait_event(database_url, "failback_completed", within=40, since=since)
        stop.set()

    watcher = asyncio.create_task(watch())
    results = await run_load(send, total=5000, concurrency=8, stream_every=0, deadline_s=45, stop=stop)
    await watcher
    assert all(r.ok for r in results)
    steps = await events(database_url, "failback_step", since)
    assert [(e["details"]["step"], e["details"]["percent"]) for e in steps] == [(1, 25), (2, 100)]
    step_at = [epoch(e["created_at"]) for e in steps]
    # Requests wholly inside step 1, with 0.2 s margins for the clocks of two processes.
    window = [
        r
        for r in results
        if r.started_at + offset > step_at[0] + 0.2 and r.ended_at + offset < step_at[1] - 0.2
    ]
    before = [r for r in results if r.ended_at + offset < step_at[0] - 0.2]
    return window, before


@pytest.mark.timeout(FAILBACKS_BUDGET_S + 180)  # the budget, the last cycle, the proxy's start and stop
async def test_auto_failback_through_the_proxy_ramps_in_steps(tmp_path):
    nodes = start_nodes()
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    config = proxy_config(nodes, database_url, failback=FAILBACK)
    try:
        with ProxyProcess(config, tmp_path) as proxy:
            proxy.database_url = database_url
            await wait_state(proxy, "p1", "healthy")
            send = openai_sender(client_for(proxy), "chat")
            window: list[RequestResult] = []
            failbacks = 0
            budget_ends = time.monotonic() + FAILBACKS_BUDGET_S
            while len(window) < MIN_STEP_SAMPLE and failbacks < MAX_FAILBACKS:
                if time.monotonic() > budget_ends:
                    break  # bounded in time too: the assertion below says how many were held
                inside, before = await failback_once(proxy, nodes, send)
                failbacks += 1
                window += inside
                assert "p1" not in {r.served_by for r in before} and "p2" not in {r.served_by for r in before}
            counts = Counter(r.served_by for r in window)
            n = sum(counts.values())
            primary = 100.0 * (counts["p1"] + counts["p2"]) / max(n, 1)
            ok, tolerance = share_within(primary, 25.0, max(n, 1))
            print(
                f"proxy failback step 1: {n} requests in {failbacks} failback(s), "
                f"tier 1 got {primary:.1f}% (25 ± {tolerance:.1f})"
            )
            assert n >= MIN_STEP_SAMPLE, f"only {n} requests inside the 25% step in {failbacks} failbacks"
            assert ok, f"tier 1 got {primary:.1f}% of {n} requests at the 25% step (±{tolerance:.1f})"
            after = await run_load(send, total=60, concurrency=6, stream_every=0)
            assert {r.served_by for r in after} == {"p1", "p2"}
            failovers = await events(database_url, "failover")
            assert [e["details"].get("source") for e in failovers][-2:] == ["failback", "failback"]
    finally:
        for node in nodes.values():
            node.stop()

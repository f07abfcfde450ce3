"""Traffic switching through the real ``litellm.Router`` with the plugin attached, against fake vLLM
servers: a graceful drain of streams in flight, auto and manual failback with measured traffic
shares per ramp step, a ramp aborted by injected errors, and a canary shift that completes and one
that rolls back.

Shares per step are measured from the plugin's own picks: every pick is tagged with the split
share of the routing table it was made from (the table in force is exact, not a time window), and
counted per deployment. Each step must see at least 200 requests (8 s steps: this machine does
~60-130 requests/s through the Router, ~40 under a full parallel CI load), and the measured share
must be within 4 standard errors
of a binomial share at that count: ±8.5 points for a 50 % step at 350 requests, ±5 for a 10 %
step at 350. A correct router fails that by chance about once in 16,000 runs.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict

import litellm
import pytest
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.drill.loadgen import messages_for, router_sender, run_load
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.store.queries import list_events

FAST_HEALTH = {"interval_s": 0.2, "failure_interval_s": 0.05, "max_probe_latency_s": 1.0}
ORDER = {"p1": 1, "p2": 1, "s1": 2}
MIN_PER_STEP = 200


def deployments(servers: dict[str, FakeVLLM], *, probe: bool = True) -> list[dict]:
    return [
        {
            "model_name": "chat",
            "litellm_params": {
                "model": "hosted_vllm/fake-model",
                "api_base": server.api_base,
                "order": ORDER[name],
                "timeout": 10,
                "stream_timeout": 10,
            },
            "model_info": {"id": name, "failover": {"gpu_url": server.url, "probe": probe}},
        }
        for name, server in servers.items()
    ]


async def start_servers(**tokens_per_s: float) -> dict[str, FakeVLLM]:
    servers = {name: FakeVLLM(name, tokens_per_s=tokens_per_s.get(name, 0)) for name in ORDER}
    for server in servers.values():
        await server.start()
    return servers


@pytest.fixture
async def stack(tmp_path):
    """``await stack(settings, probe=..., **tokens_per_s)`` -> (router, plugin, servers)."""
    made: list = []

    async def make(settings: dict, *, probe: bool = True, **tokens_per_s: float):
        servers = await start_servers(**tokens_per_s)
        router = litellm.Router(model_list=deployments(servers, probe=probe), num_retries=2, retry_after=0)
        merged = {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db", "health": FAST_HEALTH}
        merged.update(settings)
        plugin = attach(router, merged)
        made.append((plugin, servers))
        return router, plugin, servers

    yield make
    for plugin, servers in made:
        plugin.detach()
        for server in servers.values():
            await server.stop()


class PickLog:
    """Every pick the plugin makes, tagged with the table it came from: (split share or None,
    active tier) -> Counter of deployments. Wraps ``plugin.route``, which the handler calls."""

    def __init__(self, plugin, group: str = "chat") -> None:
        self.by_table: dict[tuple[float | None, int | None], Counter[str]] = defaultdict(Counter)
        route = plugin.route

        def logged(group_name, healthy, request_kwargs, messages=None):
            table = plugin.core.tables.get(group_name)
            picked = route(group_name, healthy, request_kwargs, messages)
            if group_name == group and table is not None and picked:
                key = (table.split.share if table.split else None, table.active_tier)
                self.by_table[key][str(picked[0]["model_info"]["id"])] += 1
            return picked

        plugin.route = logged


def within(share_pct: float, expected_pct: float, n: int) -> tuple[bool, float]:
    p = expected_pct / 100.0
    tolerance = 4 * 100 * math.sqrt(max(p * (1 - p), 0.0025) / n)
    return abs(share_pct - expected_pct) <= tolerance, tolerance


def events_recorder(plugin) -> list[tuple[str, float, dict]]:
    seen: list[tuple[str, float, dict]] = []
    plugin.core.listeners.append(lambda e: seen.append((e.event_type, time.monotonic(), e.details)))
    return seen


async def stored_events(plugin, event_type: str) -> list[dict]:
    await plugin.writer.flush(timeout=5)
    return await list_events(plugin.settings.database_url, since=None, event_type=event_type, limit=10_000)


def state_of(plugin, deployment_id: str) -> str:
    return plugin.core.health[deployment_id].state.value


async def test_a_drain_lets_every_in_flight_stream_finish(stack):
    # p1 streams slowly (24 tokens at 16/s: 1.5 s a stream); round-robin puts half the streams on it.
    router, plugin, servers = await stack({"in_tier": "round-robin"}, p1=16)
    seen = events_recorder(plugin)
    async with plugin:
        send = router_sender(router, "chat")
        streams = [asyncio.create_task(send(index, True)) for index in range(8)]
        await wait_until(
            lambda: sum(plugin.in_flight_counts().values()) == 8, timeout=10, what="8 streams in flight"
        )
        await wait_until(lambda: servers["p1"].state()["running"] == 4, timeout=5, what="p1 streaming 4")
        in_flight = plugin.in_flight_counts()["p1"]
        assert in_flight == 4
        result = plugin.drain("p1")
        assert (result["state"], result["in_flight"]) == ("draining", 4)
        # New requests never reach p1 while its streams finish.
        during = await run_load(send, total=24, concurrency=4, stream_every=3)
        assert all(r.ok for r in during) and "p1" not in {r.served_by for r in during}
        results = await asyncio.gather(*streams)
        on_p1 = [r for r in results if r.served_by == "p1"]
        assert len(on_p1) == 4
        for r in results:
            assert r.ok and not r.broken_stream, r.error
            assert r.text == servers[r.served_by].answer_for(messages_for(r.index))  # never cut short
        await wait_until(
            lambda: any(kind == "drain_completed" for kind, _, _ in seen), timeout=5, what="drain_completed"
        )
        ((_, completed_at, details),) = [(k, t, d) for k, t, d in seen if k == "drain_completed"]
        assert (details["in_flight"], details["finished"], details["cut"]) == (4, 4, 0)
        assert completed_at >= max(r.ended_at for r in on_p1) - 0.1  # it waited for the last stream
        assert state_of(plugin, "p1") == "healthy"  # drained, not ejected
        started = await stored_events(plugin, "drain_started")
        assert [(e["deployment_id"], e["details"]["in_flight"]) for e in started] == [("p1", 4)]
        stored = await stored_events(plugin, "drain_completed")
        assert stored[0]["details"]["cut"] == 0
        status = plugin.status()
        assert status["switching"]["drains"][0]["state"] == "drained"
        p1_row = next(d for d in status["groups"]["chat"]["deployments"] if d["deployment_id"] == "p1")
        assert p1_row["draining"] is True and p1_row["in_flight"] == 0
        # Undrain: back through the slow start (weight x 10 % first).
        assert plugin.undrain("p1")["state"] == "slow start"
        assert plugin.ramp_factors() == {"p1": 0.1}


async def failback_after_outage(plugin, servers) -> None:
    servers["p1"].set_fault("http_500")
    servers["p2"].set_fault("http_500")
    await wait_until(
        lambda: plugin.core.tables["chat"].serving == ("s1",), timeout=10, what="standby serving"
    )
    servers["p1"].clear_fault()
    servers["p2"].clear_fault()
    await wait_until(
        lambda: len(plugin.switching_status()["holds"]) == 2 or plugin.switching_status()["ramps"],
        timeout=10,
        what="the primary tier healthy again",
    )


async def test_auto_failback_ramps_in_the_configured_steps_with_measured_shares(stack):
    settings = {"failback": {"hold_down_s": 0.5, "ramp_steps": [10, 50, 100], "step_interval_s": 8.0}}
    router, plugin, servers = await stack(settings)
    async with plugin:
        await failback_after_outage(plugin, servers)
        picks = PickLog(plugin)
        done = asyncio.Event()
        plugin.core.listeners.append(lambda e: e.event_type == "failback_completed" and done.set())
        held = await run_load(router_sender(router, "chat"), total=10, concurrency=2, stream_every=0)
        if not plugin.switching_status()["ramps"]:  # still in its hold-down: nothing to tier 1
            assert {r.served_by for r in held} == {"s1"}

        async def until_done() -> None:
            await asyncio.wait_for(done.wait(), timeout=45)
            await asyncio.sleep(0)  # let the load see it

        stop = asyncio.Event()
        waiter = asyncio.create_task(until_done())
        waiter.add_done_callback(lambda _: stop.set())
        results = await run_load(
            router_sender(router, "chat"),
            total=8000,
            concurrency=12,
            stream_every=0,
            deadline_s=50,
            stop=stop,
        )
        await waiter
        after = await run_load(router_sender(router, "chat"), total=200, concurrency=8, stream_every=4)
        assert all(r.ok for r in results + after)
        measured = []
        for share in (0.1, 0.5):
            counts = picks.by_table[(share, 2)]
            n = sum(counts.values())
            primary = 100.0 * (counts["p1"] + counts["p2"]) / max(n, 1)
            ok, tolerance = within(primary, share * 100, max(n, 1))
            measured.append((share, n, round(primary, 1), round(tolerance, 1)))
            assert n >= MIN_PER_STEP, f"only {n} requests at step {share:.0%}: {measured}"
            assert ok, f"tier 1 got {primary:.1f}% at the {share:.0%} step (±{tolerance:.1f}): {measured}"
        final = Counter(r.served_by for r in after)
        assert final["s1"] == 0 and final["p1"] > 0 and final["p2"] > 0
        steps = await stored_events(plugin, "failback_step")
        assert [(e["details"]["step"], e["details"]["percent"]) for e in steps] == [
            (1, 10),
            (2, 50),
            (3, 100),
        ]
        assert len(await stored_events(plugin, "failback_completed")) == 1
        failovers = await stored_events(plugin, "failover")
        assert [e["details"]["source"] for e in failovers][-2:] == ["failback", "failback"]
        print(f"measured failback shares (share, requests, tier-1 %, tolerance): {measured}")


async def test_manual_failback_holds_the_standby_until_failback(stack):
    settings = {
        "failback": {"mode": "manual", "hold_down_s": 0.1, "ramp_steps": [50, 100], "step_interval_s": 0.5}
    }
    router, plugin, servers = await stack(settings)
    async with plugin:
        await failback_after_outage(plugin, servers)
        rounds = plugin.prober.rounds
        # Healthy for many probe rounds, far past the hold-down: still all on the standby.
        await wait_until(lambda: plugin.prober.rounds >= rounds + 15, timeout=10, what="probe rounds")
        held = await run_load(router_sender(router, "chat"), total=40, concurrency=4)
        assert all(r.ok for r in held) and {r.served_by for r in held} == {"s1"}
        assert [h["mode"] for h in plugin.switching_status()["holds"]] == ["manual", "manual"]
        pending = await stored_events(plugin, "failback_pending")
        assert {e["details"]["mode"] for e in pending} == {"manual"}

        result = plugin.failback("chat", source="control")
        assert result["changed"] is True and result["percent"] == 50
        await wait_until(
            lambda: plugin.core.tables["chat"].active_tier == 1 and not plugin.switching_status()["ramps"],
            timeout=10,
            what="failback completed",
        )
        back = await run_load(router_sender(router, "chat"), total=40, concurrency=4)
        assert all(r.ok for r in back) and {r.served_by for r in back} == {"p1", "p2"}
        steps = await stored_events(plugin, "failback_step")
        assert [(e["details"]["percent"], e["details"]["via"]) for e in steps] == [
            (50, "control"),
            (100, "control"),
        ]


async def test_a_ramp_aborts_on_injected_errors_and_ejects_again(stack):
    # Traffic alone decides health here (no probes), so the ramp's own error rule is what acts:
    # 3 failed attempts during a step, before outlier detection's 10 in a row.
    settings = {
        "outlier": {"consecutive_errors": 10, "base_ejection_s": 2.0},
        "failback": {
            "hold_down_s": 0.3,
            "ramp_steps": [10, 50, 100],
            "step_interval_s": 30,
            "abort_errors": 3,
        },
        "weights": {"refresh_interval_s": 0.1},
    }
    router, plugin, servers = await stack(settings, probe=False)
    send = router_sender(router, "chat")
    async with plugin:
        servers["p1"].set_fault("http_500")
        servers["p2"].set_fault("http_500")
        first = await run_load(send, total=60, concurrency=4, stream_every=0)
        assert all(r.ok for r in first)  # retries land on the standby
        assert state_of(plugin, "p1") == state_of(plugin, "p2") == "unhealthy"
        servers["p1"].clear_fault()
        servers["p2"].clear_fault()
        await wait_until(
            lambda: bool(plugin.switching_status()["ramps"]), timeout=10, what="failback ramp at step 1"
        )
        servers["p1"].set_fault("http_500")
        servers["p2"].set_fault("http_500")
        aborted = asyncio.Event()
        plugin.core.listeners.append(lambda e: e.event_type == "ramp_aborted" and aborted.set())
        during = await run_load(send, total=600, concurrency=4, stream_every=0, stop=aborted)
        assert aborted.is_set(), "the ramp was not aborted"
        assert all(r.ok for r in during)  # each failed attempt was retried on the standby
        (event,) = await stored_events(plugin, "ramp_aborted")
        assert (event["details"]["scope"], event["details"]["step"], event["details"]["percent"]) == (
            "group",
            1,
            10,
        )
        assert event["details"]["errors"] == 3 and event["details"]["ejected"]
        for deployment_id in event["details"]["ejected"]:
            assert state_of(plugin, deployment_id) == "unhealthy"
        after = await run_load(send, total=30, concurrency=3, stream_every=0)
        assert {r.served_by for r in after} == {"s1"}
        failovers = await stored_events(plugin, "failover")
        assert "ramp" in {e["details"].get("source") for e in failovers}
        assert not await stored_events(plugin, "failback_completed")


async def test_a_canary_shift_steps_completes_and_rolls_back_on_errors(stack):
    settings = {
        "failback": {"hold_down_s": 0, "ramp_steps": [100]},
        "outlier": {"consecutive_errors": 10},
        "shift": {"abort_errors": 3},
    }
    router, plugin, servers = await stack(settings, probe=False)
    send = router_sender(router, "chat")
    async with plugin:
        picks = PickLog(plugin)
        plugin.shift("chat", "s1", [25, 100], 8.0)
        completed = asyncio.Event()
        plugin.core.listeners.append(lambda e: e.event_type == "shift_completed" and completed.set())
        stepping = await run_load(
            send, total=6000, concurrency=12, stream_every=0, deadline_s=30, stop=completed
        )
        assert completed.is_set() and all(r.ok for r in stepping)
        counts = picks.by_table[(0.25, 1)]
        n = sum(counts.values())
        ok, tolerance = within(100.0 * counts["s1"] / max(n, 1), 25.0, max(n, 1))
        assert n >= MIN_PER_STEP and ok, f"s1 got {counts} at the 25% step (±{tolerance:.1f})"
        held = await run_load(send, total=30, concurrency=3)
        assert {r.served_by for r in held} == {"s1"}  # the completed shift keeps the traffic
        assert [s["state"] for s in plugin.switching_status()["shifts"]] == ["completed"]

        plugin.failback("chat")  # back to the primary tier (a one-step ramp here)
        assert plugin.switching_status()["shifts"] == []
        servers["s1"].set_fault("http_500")
        plugin.shift("chat", "tier:2", [50, 100], 30)
        rolled = asyncio.Event()
        plugin.core.listeners.append(lambda e: e.event_type == "shift_rolled_back" and rolled.set())
        during = await run_load(send, total=400, concurrency=4, stream_every=0, stop=rolled)
        assert rolled.is_set() and all(r.ok for r in during)
        after = await run_load(send, total=30, concurrency=3)
        assert "s1" not in {r.served_by for r in after}
        steps = await stored_events(plugin, "shift_step")
        assert [(e["details"]["to"], e["details"]["percent"]) for e in steps] == [
            ("s1", 25),
            ("s1", 100),
            ("tier:2", 50),
        ]
        (event,) = await stored_events(plugin, "shift_rolled_back")
        assert event["details"]["errors"] == 3 and event["details"]["restored"] == "normal routing"
        assert state_of(plugin, "s1") == "healthy"  # rolled back, not ejected (3 < 10 in a row)

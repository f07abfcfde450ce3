"""Deployments LiteLLM adds, updates and deletes while the Router runs (issue 10 §2).

The real ``litellm.Router`` and its own calls (``add_deployment``, ``upsert_deployment``,
``delete_deployment``: what the proxy's model-management API and its database reload call), in
front of in-process fake vLLM servers; the plugin attached before any of it happens.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import litellm
import pytest
from factories import attached, fake_vllm_deployment
from fake_nodes import serving
from litellm.types.router import Deployment
from rich.console import Console
from waiting import wait_until

from litellm_failover.cli.operate import unmanaged_table
from litellm_failover.control.dispatch import live_status
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.store.queries import list_deployment_states, list_events

# Both ends of the supported LiteLLM range: 1.110 keeps its deployments in a Rust registry.
pytestmark = pytest.mark.litellm_range

FAST_HEALTH = {"interval_s": 0.2, "failure_interval_s": 0.05, "max_probe_latency_s": 1.0}
MESSAGES = [{"role": "user", "content": "hello"}]


def deployment(name: str, server: FakeVLLM, order: int = 1, **failover: object) -> dict:
    return fake_vllm_deployment(name, server, order, timeout=5, stream_timeout=5, **failover)


@pytest.fixture
async def servers():
    async with serving({name: FakeVLLM(name, tokens_per_s=0) for name in ("p1", "p2", "p3")}) as started:
        yield started


@pytest.fixture
def make_plugin(tmp_path):
    """``make_plugin(model_list, settings=None)`` -> (router, plugin)."""
    defaults = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db",
        "health": FAST_HEALTH,
        "failback": {"hold_down_s": 0.5, "step_interval_s": 0.3},
    }
    with attached(defaults) as make:
        yield make


async def ask(router: litellm.Router) -> str:
    response = await router.acompletion(model="chat", messages=MESSAGES)
    return str(response._hidden_params["model_id"])


async def answered_by(router: litellm.Router, wanted: set[str], most: int = 40) -> set[str]:
    """The deployments that answered, asking until all of ``wanted`` have or ``most`` requests
    went: picks are weighted random draws, so a fixed handful can all land on one deployment."""
    seen: set[str] = set()
    for _ in range(most):
        seen.add(await ask(router))
        if wanted <= seen:
            break
    return seen


def chats(server: FakeVLLM) -> int:
    return sum(
        count for endpoint, count in server.state()["requests"]["by_endpoint"].items() if "chat" in endpoint
    )


async def events_of(plugin, event_type: str) -> list[dict]:
    await plugin.writer.flush(timeout=5)
    return await list_events(plugin.settings.database_url, since=None, event_type=event_type, limit=1000)


async def test_added_deployment_is_probed_routed_and_ejected_like_the_others(servers, make_plugin):
    router, plugin = make_plugin([deployment("p1", servers["p1"], order=2)])
    async with plugin:
        assert {await ask(router) for _ in range(3)} == {"p1"}
        # p2 joins as the primary tier: the very next request is the plugin's pick, not LiteLLM's.
        router.add_deployment(Deployment(**deployment("p2", servers["p2"], order=1)))
        assert await ask(router) == "p2"
        assert "p2" in plugin.core.health and "p2" in plugin.prober.deployment_ids
        assert plugin.status()["unmanaged"] == []
        added = await events_of(plugin, "deployment_added")
        assert [(e["deployment_id"], e["details"]["tier"]) for e in added] == [("p2", 1)]
        # Probed: its probe rounds reach its server and the core applies them.
        await wait_until(lambda: plugin.core.health["p2"].checks, timeout=5, what="p2 probed")

        # It fails over like the others: a failing p2 is ejected, the standby serves.
        servers["p2"].set_fault("http_500")
        served = Counter([await ask(router) for _ in range(6)])
        assert served == {"p1": 6}
        await wait_until(
            lambda: plugin.core.health["p2"].state.value == "unhealthy", timeout=5, what="p2 out"
        )
        servers["p2"].clear_fault()
        await wait_until(
            lambda: plugin.core.health["p2"].state.value == "healthy", timeout=10, what="p2 back"
        )
        table = plugin.core.table
        await wait_until(
            lambda: table("chat").serving == ("p2",) and not table("chat").ramp, timeout=15, what="p2 serves"
        )
        assert await ask(router) == "p2"


async def test_deleted_deployment_gets_no_request_after_the_call_returns(servers, make_plugin):
    router, plugin = make_plugin([deployment("p1", servers["p1"]), deployment("p2", servers["p2"])])
    async with plugin:
        stop = asyncio.Event()
        served: list[tuple[float, str]] = []

        async def load() -> None:
            for _ in range(400):  # bounded in count, and by the stop below
                if stop.is_set():
                    return
                started = time.monotonic()
                served.append((started, await ask(router)))

        workers = [asyncio.create_task(load()) for _ in range(4)]
        await wait_until(lambda: len(served) >= 20, timeout=10, what="load running")
        assert {name for _, name in served} == {"p1", "p2"}
        # A session pinned to p2 must not outlive it.
        plugin.pins.pin("s-1", "chat", "p2")
        assert router.delete_deployment("p2") is not None
        deleted_at = time.monotonic()
        await wait_until(lambda: len(served) >= 60, timeout=15, what="load after the delete")
        stop.set()
        await asyncio.gather(*workers)
        assert [name for started, name in served if started >= deleted_at and name == "p2"] == []
        # Nothing in flight on p2 any longer: its server sees no new chat request either.
        before = chats(servers["p2"])
        assert {await ask(router) for _ in range(5)} == {"p1"}
        assert chats(servers["p2"]) == before

        # Its state, probes, pins and in-flight bookkeeping are released.
        await wait_until(lambda: "p2" not in plugin.core.health, timeout=2, what="p2 retired")
        assert "p2" not in plugin.core.snapshot.deployments
        assert plugin.core.snapshot.groups["chat"] == ("p1",)
        assert "p2" not in plugin.prober.deployment_ids
        assert plugin.pins.peek("s-1", "chat") is None
        assert plugin.book.count("p2") == 0
        assert "p2" not in plugin.status()["switching"].get("in_flight", {})
        removed = await events_of(plugin, "deployment_removed")
        assert [e["deployment_id"] for e in removed] == ["p2"]
        stored = {
            row["deployment_id"]: row for row in await list_deployment_states(plugin.settings.database_url)
        }
        assert (stored["p2"]["state"], stored["p1"]["state"]) == ("removed", "healthy")
        probes_then = servers["p2"].state()["requests"]["total"]
        # Rounds counted from now: the total since start passed any fixed number long ago.
        rounds_then = plugin.prober.rounds
        await wait_until(lambda: plugin.prober.rounds >= rounds_then + 5, timeout=5, what="more probe rounds")
        assert servers["p2"].state()["requests"]["total"] == probes_then  # no longer probed


async def test_invalid_failover_block_added_at_run_time_is_refused_with_its_path(servers, make_plugin):
    router, plugin = make_plugin([deployment("p1", servers["p1"])])
    async with plugin:
        assert await ask(router) == "p1"
        before = plugin.core.health["p1"]
        bad = deployment("p3", servers["p3"], order=1)
        bad["model_info"]["failover"]["probe"] = "sometimes"
        router.add_deployment(Deployment(**bad))
        served = Counter([await ask(router) for _ in range(8)])
        assert served == {"p1": 8}  # never routed half-configured
        assert chats(servers["p3"]) == 0
        unmanaged = plugin.status()["unmanaged"]
        assert [row["deployment_id"] for row in unmanaged] == ["p3"]
        assert "model_info.failover.probe" in unmanaged[0]["reason"]
        refused = await events_of(plugin, "deployment_refused")
        assert len(refused) == 1 and refused[0]["deployment_id"] == "p3"
        assert any("model_info.failover.probe" in p for p in refused[0]["details"]["problems"])
        # ``status --live`` carries it, and prints it with its reason.
        live = live_status(plugin, "chat")
        assert [row["deployment_id"] for row in live["unmanaged"]] == ["p3"]
        console = Console(width=200, record=True)
        console.print(unmanaged_table("A", live["unmanaged"]))
        assert "model_info.failover.probe" in console.export_text()
        # The running deployment is untouched: the same record, still serving.
        assert plugin.core.health["p1"] is before and "p3" not in plugin.core.health
        assert plugin.core.snapshot.groups["chat"] == ("p1",)

        # Fixed by an upsert: adopted and routed.
        router.upsert_deployment(Deployment(**deployment("p3", servers["p3"], order=1)))
        await wait_until(lambda: "p3" in plugin.core.health, timeout=2, what="p3 adopted")
        assert plugin.status()["unmanaged"] == []
        assert "p3" in await answered_by(router, {"p3"})


async def test_upsert_keeps_an_ejected_deployment_out_when_only_its_weight_changes(servers, make_plugin):
    router, plugin = make_plugin([deployment("p1", servers["p1"]), deployment("p2", servers["p2"])])
    async with plugin:
        servers["p2"].set_fault("http_500")
        await wait_until(
            lambda: plugin.core.health["p2"].state.value == "unhealthy", timeout=5, what="p2 out"
        )
        reweighted = deployment("p2", servers["p2"])
        reweighted["litellm_params"]["weight"] = 3
        assert router.upsert_deployment(Deployment(**reweighted)) is not None
        # The new dict LiteLLM holds is the plugin's at once: it still routes the group itself.
        assert Counter([await ask(router) for _ in range(6)]) == {"p1": 6}
        record = plugin.core.health["p2"]
        assert record.spec.weight == 3 and record.state.value == "unhealthy"
        updated = await events_of(plugin, "deployment_updated")
        assert [(e["deployment_id"], e["details"]["health_kept"]) for e in updated] == [("p2", True)]
        assert "weight" in updated[0]["details"]["changed"]

        # Moved to another server: a new node under the old id, probed afresh.
        moved = deployment("p2", servers["p3"])
        router.upsert_deployment(Deployment(**moved))
        await wait_until(lambda: plugin.core.health["p2"].state.value == "healthy", timeout=5, what="p2 anew")
        assert "p2" in await answered_by(router, {"p2"})
        assert chats(servers["p3"]) > 0


async def test_a_deployment_in_a_new_group_is_routed_and_the_group_goes_with_its_last_one(
    servers, make_plugin
):
    router, plugin = make_plugin([deployment("p1", servers["p1"])])
    async with plugin:
        other = deployment("p3", servers["p3"])
        other["model_name"] = "other"
        router.add_deployment(Deployment(**other))
        response = await router.acompletion(model="other", messages=MESSAGES)
        assert response._hidden_params["model_id"] == "p3"
        assert plugin.core.table("other").serving == ("p3",)
        assert plugin.book.started >= 1  # the plugin picked it: LiteLLM did not route around it
        assert plugin.status()["groups"]["other"]["deployments"][0]["deployment_id"] == "p3"
        router.delete_deployment("p3")
        await wait_until(lambda: "other" not in plugin.core.snapshot.groups, timeout=2, what="group gone")
        assert "other" not in plugin.status()["groups"] and plugin.core.table("other") is None
        assert await ask(router) == "p1"


async def test_an_update_into_an_invalid_block_takes_only_that_deployment_out(servers, make_plugin):
    router, plugin = make_plugin([deployment("p1", servers["p1"]), deployment("p2", servers["p2"])])
    async with plugin:
        assert await answered_by(router, {"p1", "p2"}) == {"p1", "p2"}
        broken = deployment("p2", servers["p2"])
        broken["model_info"]["failover"]["gpu_source"] = "nvml"
        router.upsert_deployment(Deployment(**broken))
        assert Counter([await ask(router) for _ in range(6)]) == {"p1": 6}  # not routed half-configured
        assert "p2" not in plugin.core.health and plugin.core.snapshot.groups["chat"] == ("p1",)
        [row] = plugin.status()["unmanaged"]
        assert row["deployment_id"] == "p2" and "model_info.failover.gpu_source" in row["reason"]
        assert [e["deployment_id"] for e in await events_of(plugin, "deployment_removed")] == ["p2"]
        assert [e["deployment_id"] for e in await events_of(plugin, "deployment_refused")] == ["p2"]

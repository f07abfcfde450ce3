"""Session warm-up follows LiteLLM's deployments as they are now, not as they were at start.

The real ``litellm.Router`` and its own ``add_deployment`` / ``delete_deployment`` (what the proxy's
model-management API calls), in front of in-process fake vLLM servers, with ``sessions.warmup`` on
and the plugin attached before any change. A warm-up is the session's stored conversation sent with
``max_tokens: 1``; each fake vLLM records what it was sent, so the tests see where each one went.

Not in the ``litellm_range`` marker: adding and deleting through both LiteLLMs' registries is
covered there by test_live_deployments.py; what is tested here is the plugin's side.
"""

from __future__ import annotations

import test_live_deployments as live
from litellm.types.router import Deployment
from test_live_deployments import chats, deployment
from test_sessions_router import session
from waiting import wait_until

from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.sessions.identity import ANONYMOUS_CALLER, pin_key

servers = live.servers  # in-process fake vLLM servers p1, p2, p3 (a fixture)
make_plugin = live.make_plugin  # ``make_plugin(model_list, settings)`` -> (router, plugin)
# Round-robin inside the tier: a target the plugin still believed in would get its share of moves.
WARMUP = {"sessions": {"warmup": True}, "in_tier": "round-robin"}


def warmups(server: FakeVLLM) -> list:
    return [r for r in list(server.received) if r.max_tokens == 1]


def warmups_done(plugin) -> int:
    """Warm-ups the plugin has finished: sent, skipped or failed. A server records a warm-up as it
    arrives, before it answers; the plugin counts it sent once the answer is back."""
    stats = plugin.status()["sessions"]
    return stats["warmups_sent"] + stats["warmups_skipped"] + stats["warmups_failed"]


async def serving(plugin, members: set[str]) -> None:
    """The plugin routes ``members`` at full share (an added deployment may start on a ramp)."""

    def ready() -> bool:
        table = plugin.core.table("chat")
        return table is not None and set(table.serving) == members and not table.ramp

    await wait_until(ready, timeout=10, what=f"{sorted(members)} serving")


async def recorded(plugin, turns: int) -> None:
    await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == turns, timeout=5)
    assert await plugin.writer.flush(timeout=5)


async def test_a_session_is_warmed_up_on_a_deployment_added_after_start(servers, make_plugin):
    router, plugin = make_plugin([deployment("p1", servers["p1"])], WARMUP)
    async with plugin:
        chat = session(router, "added")
        await chat.turn("one")
        await chat.turn("two")
        assert chat.served == ["p1", "p1"]
        await recorded(plugin, 2)
        router.add_deployment(Deployment(**deployment("p2", servers["p2"])))
        await serving(plugin, {"p1", "p2"})
        assert warmups(servers["p2"]) == []
        servers["p1"].set_fault("http_500")  # probes eject it; no request of the session is sent

        await wait_until(lambda: warmups_done(plugin) == 1, timeout=10, what="the warm-up done")
        [warm] = warmups(servers["p2"])
        assert [(m["role"], m["content"]) for m in warm.messages] == [
            (m["role"], m["content"]) for m in chat.messages
        ]
        assert plugin.pins.peek(pin_key(ANONYMOUS_CALLER, "added"), "chat") == "p2"
        stats = plugin.status()["sessions"]
        assert (stats["warmups_sent"], stats["warmups_skipped"], stats["warmups_failed"]) == (1, 0, 0)
        await chat.turn("three")
        assert chat.served[-1] == "p2"


async def test_a_deployment_deleted_just_before_a_failover_is_never_warmed_up(servers, make_plugin):
    router, plugin = make_plugin([deployment("p1", servers["p1"])], WARMUP)
    async with plugin:
        sessions = [session(router, f"deleted-{number}") for number in range(4)]
        for chat in sessions:
            await chat.turn("one")
        assert {chat.served[0] for chat in sessions} == {"p1"}
        await recorded(plugin, 4)
        for name in ("p2", "p3"):
            router.add_deployment(Deployment(**deployment(name, servers[name])))
        await serving(plugin, {"p1", "p2", "p3"})
        p3_before = chats(servers["p3"])

        # p3 deleted, and p1 drained at once: the serving set changes before the plugin's
        # deployment watch has read the deletion (no await between the two calls).
        assert router.delete_deployment("p3") is not None
        plugin.drain("p1")

        await wait_until(lambda: warmups_done(plugin) == 4, timeout=10, what="four warm-ups done")
        stats = plugin.status()["sessions"]
        assert (stats["warmups_sent"], stats["warmups_skipped"], stats["warmups_failed"]) == (4, 0, 0)
        assert len(warmups(servers["p2"])) == 4
        assert warmups(servers["p3"]) == [] and chats(servers["p3"]) == p3_before
        for chat in sessions:
            key = pin_key(ANONYMOUS_CALLER, str(chat.naming["metadata"]["session_id"]))
            assert plugin.pins.peek(key, "chat") == "p2"
        assert "p3" not in plugin.core.snapshot.deployments

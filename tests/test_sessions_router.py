"""Session affinity and conversation recording through the real ``litellm.Router``.

Fake vLLM servers in process: a primary tier (p1, p2) and a standby (s1). Inside the primary tier
the plugin routes round-robin, so without affinity requests spread over p1 and p2: a session that
stays on one node is the plugin's doing, not luck. What was stored is read back from the SQLite
store the plugin writes, as ``sessions show`` would.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter

import litellm
import pytest
import test_router_failover
from chat_sessions import Conversation
from factories import attached
from test_router_failover import FAST_HEALTH, deployments
from waiting import wait_until

from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.sessions import SessionIdError
from litellm_failover.sessions.identity import ANONYMOUS_CALLER, pin_key
from litellm_failover.store.conversations import list_sessions, load_messages, load_session
from litellm_failover.store.queries import list_events

# CI runs these on the oldest and the newest supported LiteLLM (.ci/run).
pytestmark = pytest.mark.litellm_range


servers = test_router_failover.servers  # in-process fake vLLM servers p1, p2, s1 (a fixture)
pytest_plugins = ["services"]
ON_BOTH_STORES = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """SQLite by default; tests marked ``ON_BOTH_STORES`` run on PostgreSQL too (a schema of their
    own; skipped without PostgreSQL, failed under CI=true)."""
    if getattr(request, "param", "sqlite") == "postgres":
        return request.getfixturevalue("postgres_schema_url")
    return f"sqlite+aiosqlite:///{tmp_path}/store.db"


@pytest.fixture
def make_plugin(servers, database_url):
    """``make_plugin(timeout=5.0, probe=True, **settings)`` -> (router, plugin), on p1, p2 (tier 1)
    and s1; ``timeout`` is each request's, ``probe=False`` leaves detection to traffic."""
    defaults = {"database_url": database_url, "health": FAST_HEALTH, "in_tier": "round-robin"}
    with attached(defaults) as make:
        yield lambda timeout=5.0, probe=True, **settings: make(deployments(servers, timeout, probe), settings)


def session(router: litellm.Router, session_id: str) -> Conversation:
    return Conversation(
        functools.partial(router.acompletion, model="chat"), metadata={"session_id": session_id}
    )


def completions(server: FakeVLLM) -> int:
    return server.state()["requests"]["by_endpoint"].get("/v1/chat/completions", 0)


async def flushed_events(plugin, event_type: str) -> list[dict]:
    await plugin.writer.flush(timeout=5)
    return await list_events(plugin.settings.database_url, since=None, event_type=event_type, limit=1000)


async def settled(plugin, session_id: str, deployment: str) -> None:
    """The success hook (which re-pins) runs as a LiteLLM logging task after the answer."""
    await wait_until(
        lambda: plugin.pins.peek(pin_key(ANONYMOUS_CALLER, session_id), "chat") == deployment,
        timeout=5,
        what=f"pin {deployment}",
    )


async def test_sessions_stick_across_turns_while_plain_requests_spread(make_plugin):
    router, plugin = make_plugin()
    async with plugin:
        plain = []
        for number in range(8):
            message = {"role": "user", "content": str(number)}
            plain.append(await router.acompletion(model="chat", messages=[message]))
        # Round-robin inside the tier (restarted at a random member whenever the table is
        # rebuilt, so only "both nodes" is certain): without a session, requests spread.
        assert {r.system_fingerprint for r in plain} == {"p1", "p2"}
        conversations = [session(router, f"session-{i}") for i in range(4)]
        for number in range(4):
            for conversation in conversations:
                await conversation.turn(f"turn {number}")
        for conversation in conversations:
            assert len(set(conversation.served)) == 1, conversation.served
        assert {c.served[0] for c in conversations} == {"p1", "p2"}  # sessions still spread
        assert plugin.status()["sessions"]["pins"] == 4


async def test_failover_repins_the_session_with_an_event_and_it_stays_there(make_plugin, servers):
    # Probes far apart: real traffic meets the fault first, so the failing attempt is the session's.
    router, plugin = make_plugin(health={"interval_s": 30})
    async with plugin:
        chat = session(router, "repin-me")
        await chat.turn("hello")
        first = chat.served[0]
        other = "p2" if first == "p1" else "p1"
        await settled(plugin, "repin-me", first)
        servers[first].set_fault("http_500")
        await chat.turn("are you there?")
        assert chat.served[-1] == other
        await settled(plugin, "repin-me", other)
        servers[first].clear_fault()
        for number in range(3):  # the old node is fine again; the session does not bounce back
            await chat.turn(f"more {number}")
        assert chat.served[1:] == [other] * 4
        events = await flushed_events(plugin, "session_repinned")
        assert [(e["from_deployment"], e["to_deployment"]) for e in events] == [(first, other)]
        assert events[0]["details"]["session_id"] == "repin-me"
        assert events[0]["reason"] == f"{first} failed this request"
        assert events[0]["instance_id"] == plugin.instance_id


async def test_affinity_never_overrides_health_nor_failback(make_plugin, servers):
    # A short failback hold-down and ramp (tests/test_switching*.py), so it ends within the wait.
    router, plugin = make_plugin(failback={"hold_down_s": 0.3, "step_interval_s": 0.3})
    async with plugin:
        chat = session(router, "tiers")
        await chat.turn("hello")
        for name in ("p1", "p2"):
            servers[name].set_fault("http_500")
        await wait_until(lambda: plugin.core.table("chat").active_tier == 2, timeout=10, what="standby")
        await chat.turn("only the standby is up")
        assert chat.served[-1] == "s1"
        await settled(plugin, "tiers", "s1")
        for name in ("p1", "p2"):
            servers[name].clear_fault()
        await wait_until(lambda: plugin.core.table("chat").active_tier == 1, timeout=15, what="failback")
        await chat.turn("the primaries are back")
        back = chat.served[-1]
        assert back in ("p1", "p2")  # a pin to the standby does not hold the session there
        await settled(plugin, "tiers", back)
        events = await flushed_events(plugin, "session_repinned")
        assert [e["to_deployment"] for e in events] == ["s1", back]
        assert events[0]["reason"] == f"{chat.served[0]} is unhealthy"
        assert events[1]["reason"] == "s1 is not in the serving tier (tier 1 serves)"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"metadata": {"session_id": "s" * 257}}, "metadata.session_id: 257 characters"),
        ({"extra_headers": {"x-session-id": "bell\x07"}}, "x-session-id header: control character U+0007"),
        ({"litellm_session_id": ["not", "a", "string"]}, "litellm_session_id: must be a string"),
    ],
)
async def test_a_bad_session_id_is_refused_before_any_deployment_and_nothing_is_stored(
    make_plugin, servers, database_url, extra, needle
):
    router, plugin = make_plugin()
    async with plugin:
        with pytest.raises(SessionIdError) as info:
            await router.acompletion(model="chat", messages=[{"role": "user", "content": "hi"}], **extra)
        assert needle in str(info.value)
        assert sum(completions(server) for server in servers.values()) == 0
        assert plugin.status()["sessions"]["invalid_session_ids"] == 1
        await router.acompletion(model="chat", messages=[{"role": "user", "content": "no session"}])
        await plugin.writer.flush(timeout=5)
        assert await list_sessions(database_url) == []
        assert plugin.status()["sessions"]["pins"] == 0


@ON_BOTH_STORES
async def test_the_conversation_is_stored_in_order_with_a_streamed_answer_once_complete(
    make_plugin, database_url
):
    # What is stored is the subject here, not where the session goes. On a loaded host the
    # in-process servers (on this test's event loop) answered a turn after the 5 s request timeout,
    # or missed FAST_HEALTH's 1 s probe bound: LiteLLM's retry or the ejection then rightly moved
    # the session mid-conversation, and its answers named two nodes. So: no prober, and a request
    # timeout a starved loop still meets (a bound, reached only by a node that never answers).
    router, plugin = make_plugin(timeout=60.0, probe=False)
    async with plugin:
        chat = session(router, "recorded")
        await chat.turn("first question")
        await chat.turn("second question", stream=True)
        await chat.turn("third question")
        node = chat.served[0]
        await wait_until(
            lambda: plugin.status()["sessions"]["turns_recorded"] == 3, timeout=5, what="3 turns recorded"
        )
        await plugin.writer.flush(timeout=5)
        stored = await load_messages(database_url, "recorded")
        assert [(m.seq, m.role, m.content) for m in stored] == [
            (i, message["role"], message["content"]) for i, message in enumerate(chat.messages)
        ]
        answers = [m for m in stored if m.role == "assistant"]
        assert {m.deployment_id for m in answers} == {node}
        assert all(m.completion_tokens == 24 and m.prompt_tokens for m in answers)
        assert answers[1].content == chat.messages[3]["content"]  # the streamed one, whole
        assert all(m.content_hash == hashlib.sha256(m.content.encode()).hexdigest() for m in stored)
        assert [(g.model_group, g.pinned_deployment, g.turn_count) for g in await load_session(
            database_url, "recorded")] == [("chat", node, 3)]  # fmt: skip


async def test_a_broken_stream_is_not_stored(make_plugin, servers, database_url):
    router, plugin = make_plugin(strategy="round-robin")
    async with plugin:
        for server in servers.values():
            server.set_fault("drop_midstream", after_chunks=3)
        chat = session(router, "cut")
        with pytest.raises(Exception):  # noqa: B017 (LiteLLM's error type for a cut varies)
            await chat.turn("tell me a long story", stream=True)
        for server in servers.values():
            server.clear_fault()
        await chat.turn("try again")  # the unanswered question stays in the history

        # LiteLLM's success log records the turn off the request path, after the client has its
        # answer: flushing before it ran found nothing to write (seen on LiteLLM 1.110).
        def turns() -> int:
            return plugin.status()["sessions"]["turns_recorded"]

        await wait_until(lambda: turns() >= 1, timeout=5, what="the answered turn recorded")
        await plugin.writer.flush(timeout=5)
        stored = await load_messages(database_url, "cut")
        assert turns() == 1
        assert [m.content for m in stored][-1] == chat.messages[-1]["content"]


async def test_store_content_off_keeps_hashes_and_token_counts(make_plugin, database_url):
    router, plugin = make_plugin(sessions={"store_content": False})
    async with plugin:
        chat = session(router, "private")
        await chat.turn("my secret question")
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 1, timeout=5)
        await plugin.writer.flush(timeout=5)
        stored = await load_messages(database_url, "private")
        assert [m.content for m in stored] == [None, None]
        assert stored[0].content_hash == hashlib.sha256(b"my secret question").hexdigest()
        assert stored[1].content_hash == hashlib.sha256(chat.messages[1]["content"].encode()).hexdigest()
        assert stored[1].completion_tokens == 24 and not any(m.truncated for m in stored)


async def test_messages_over_the_size_cap_keep_only_their_hash(make_plugin, database_url):
    router, plugin = make_plugin(sessions={"max_message_chars": 200})
    async with plugin:
        chat = session(router, "capped")
        await chat.turn("x" * 201)
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 1, timeout=5)
        await plugin.writer.flush(timeout=5)
        question, answer = await load_messages(database_url, "capped")
        assert (question.content, question.truncated, question.content_chars) == (None, True, 201)
        assert question.content_hash == hashlib.sha256(b"x" * 201).hexdigest()
        assert answer.content == chat.messages[1]["content"]  # 24 short words: under the cap
        assert plugin.status()["sessions"]["oversized_messages"] == 1


@ON_BOTH_STORES
async def test_a_restarted_plugin_learns_pins_from_the_store(make_plugin, database_url):
    names = [f"learn-{i}" for i in range(8)]
    router, plugin = make_plugin()
    async with plugin:
        first = {name: (await session(router, name).turn("hi"), plugin) for name in names}
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 8, timeout=5)
        stored = {name: plugin.pins.peek(pin_key(ANONYMOUS_CALLER, name), "chat") for name in first}
    assert Counter(stored.values()) == {"p1": 4, "p2": 4}  # round-robin first picks

    router, plugin = make_plugin()  # a new process: no pins in memory
    async with plugin:
        # Every other session first: the restarted round-robin then disagrees with the stored
        # pin for about half of them, whichever node it starts on.
        for name in names[::2] + names[1::2]:
            await router.acompletion(
                model="chat", messages=[{"role": "user", "content": "hi"}], metadata={"session_id": name}
            )
        await wait_until(
            lambda: all(plugin.pins.peek(pin_key(ANONYMOUS_CALLER, n), "chat") == stored[n] for n in names),
            timeout=5,
            what="learned",
        )
        assert plugin.status()["sessions"]["pins_learned"] >= 2
        for name in names:
            response = await router.acompletion(
                model="chat", messages=[{"role": "user", "content": "again"}], metadata={"session_id": name}
            )
            assert response.system_fingerprint == stored[name]


async def test_warmup_moves_sessions_off_an_ejected_node_and_primes_the_new_one(make_plugin, servers):
    router, plugin = make_plugin(sessions={"warmup": True})
    async with plugin:
        chat = session(router, "warm")
        await chat.turn("one")
        await chat.turn("two")
        old = chat.served[0]
        new = "p2" if old == "p1" else "p1"
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 2, timeout=5)
        await plugin.writer.flush(timeout=5)
        before = len(servers[new].received)
        servers[old].set_fault("http_500")  # probes eject it; no request of the session is sent

        def warmed() -> bool:
            return any(r.max_tokens == 1 for r in list(servers[new].received)[before:])

        await wait_until(warmed, timeout=10, what=f"a warm-up request on {new}")
        warm = next(r for r in list(servers[new].received)[before:] if r.max_tokens == 1)
        assert [(m["role"], m["content"]) for m in warm.messages] == [
            (m["role"], m["content"]) for m in chat.messages
        ]
        assert plugin.pins.peek(pin_key(ANONYMOUS_CALLER, "warm"), "chat") == new
        events = await flushed_events(plugin, "session_repinned")
        assert [(e["from_deployment"], e["to_deployment"]) for e in events] == [(old, new)]
        assert "warmed up" in events[0]["reason"]
        await chat.turn("three")
        assert chat.served[-1] == new
        assert plugin.status()["sessions"]["warmups_sent"] == 1

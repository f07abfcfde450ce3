"""Responses API continuity: ``previous_response_id`` across a dead node, Router and proxy.

The fake vLLM keeps its responses in process memory, as vLLM does, so only the node that made a
response can continue it; any other answers 404. The nodes are real processes, SIGKILLed like a
GPU host losing power. Answers are deterministic per conversation, so a rebuilt conversation is
checked word for word against what the dead node would have said.
"""

from __future__ import annotations

import litellm
import pytest
from fake_nodes import running
from litellm.responses.utils import ResponsesAPIRequestUtils
from openai import AsyncOpenAI
from test_router_failover import deployments
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.text import expected_answer
from litellm_failover.store.conversations import load_messages
from litellm_failover.store.queries import list_deployment_states, list_events

# CI runs these on the oldest and the newest supported LiteLLM (.ci/run).
pytestmark = pytest.mark.litellm_range

HEALTH = {"interval_s": 0.25, "failure_interval_s": 0.05, "max_probe_latency_s": 1.0}


@pytest.fixture
def nodes():
    with running({name: FakeVLLMProcess(name, tokens_per_s=0) for name in ("p1", "p2")}) as started:
        yield started


class Chain:
    """A Responses API conversation as the client sees it: each turn names the previous one."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self.last_id: str | None = None

    def expect(self, text: str) -> str:
        """The answer the node holding the conversation gives to ``text`` next."""
        return expected_answer([*self.messages, {"role": "user", "content": text}])

    def took(self, text: str, answer: str, response_id: str) -> None:
        self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
        self.last_id = response_id


def creator(response_id: str) -> str | None:
    return ResponsesAPIRequestUtils.get_model_id_from_response_id(response_id)


pytest_plugins = ["services"]


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """SQLite, or with ``indirect`` param "postgres" a PostgreSQL schema of the test's own."""
    if getattr(request, "param", "sqlite") == "postgres":
        return request.getfixturevalue("postgres_schema_url")
    return f"sqlite+aiosqlite:///{tmp_path}/store.db"


@pytest.fixture
def router_plugin(nodes, database_url):
    router = litellm.Router(model_list=deployments(nodes), num_retries=2, retry_after=0)
    settings = {"database_url": database_url, "health": HEALTH, "in_tier": "round-robin"}
    plugin = attach(router, settings)
    yield router, plugin
    plugin.detach()


async def router_turn(router: litellm.Router, chain: Chain, text: str, *, stream: bool = False) -> str:
    kwargs = {"previous_response_id": chain.last_id} if chain.last_id else {}
    response = await router.aresponses(model="chat", input=text, stream=stream, **kwargs)
    if stream:
        final = None
        async for event in response:
            if event.type == "response.completed":
                final = event.response
        response = final
    assert response.output_text == chain.expect(text)
    chain.took(text, response.output_text, response.id)
    return creator(response.id)


async def test_a_chain_stays_on_the_node_that_holds_it(router_plugin):
    router, plugin = router_plugin
    async with plugin:
        plain = [creator((await router.aresponses(model="chat", input=f"q{i}")).id) for i in range(4)]
        assert sorted(plain) == ["p1", "p1", "p2", "p2"]  # round-robin when nothing holds state
        chain = Chain()
        served = [await router_turn(router, chain, f"turn {i}") for i in range(5)]
        assert len(set(served)) == 1


async def test_a_named_session_keeps_its_responses_under_its_own_id(router_plugin):
    router, plugin = router_plugin
    async with plugin:
        chain = Chain()
        for text in ("one", "two", "three"):
            previous = {"previous_response_id": chain.last_id} if chain.last_id else {}
            response = await router.aresponses(
                model="chat", input=text, metadata={"session_id": "named"}, **previous
            )
            chain.took(text, response.output_text, response.id)
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 3, timeout=5)
        await plugin.writer.flush(timeout=5)
        stored = await load_messages(plugin.settings.database_url, "named")
        assert [(m.seq, m.role, m.content) for m in stored] == [
            (i, m["role"], m["content"]) for i, m in enumerate(chain.messages)
        ]
        raw_ids = [m.response_id for m in stored if m.role == "assistant"]
        assert all(r and r.startswith("resp_") and creator(r) is None for r in raw_ids)  # the node's own ids


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_dead_nodes_conversation_is_rebuilt_from_the_store(router_plugin, nodes):
    router, plugin = router_plugin
    async with plugin:
        chain = Chain()
        holder = await router_turn(router, chain, "first question")
        assert await router_turn(router, chain, "second question", stream=True) == holder
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 2, timeout=5)
        other = "p2" if holder == "p1" else "p1"
        nodes[holder].kill()
        # Sent at once: the plugin learns of the death from this request's refused connection,
        # then rebuilds on the retry. The answer is what the dead node would have said.
        assert await router_turn(router, chain, "third question") == other
        assert await router_turn(router, chain, "fourth question") == other  # other holds it now
        status = plugin.status()["sessions"]
        assert (status["rebuilds"], status["rebuild_failures"]) == (1, 0)
        # A turn is recorded from LiteLLM's success log, a task that may run after the caller has
        # its answer: the fourth turn's messages may not be submitted yet when it returns.
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 4, timeout=5)
        await plugin.writer.flush(timeout=5)
        events = await list_events(plugin.settings.database_url, event_type="context_rebuilt")
        assert [(e["from_deployment"], e["to_deployment"], e["details"]["messages"]) for e in events] == [
            (holder, other, 4)
        ]
        session_id = events[0]["details"]["session_id"]
        stored = await load_messages(plugin.settings.database_url, session_id)
        assert [(m.role, m.content) for m in stored] == [(m["role"], m["content"]) for m in chain.messages]
        assert [m.deployment_id for m in stored if m.role == "assistant"] == [holder, holder, other, other]


async def test_without_stored_content_the_request_fails_as_it_would_have(nodes, tmp_path):
    router = litellm.Router(model_list=deployments(nodes), num_retries=2, retry_after=0)
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    plugin = attach(router, {"database_url": url, "health": HEALTH, "sessions": {"store_content": False}})
    try:
        async with plugin:
            chain = Chain()
            holder = await router_turn(router, chain, "a private question")
            await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 1, timeout=5)
            nodes[holder].kill()
            with pytest.raises(litellm.NotFoundError, match="not found"):
                await router.aresponses(model="chat", input="and then?", previous_response_id=chain.last_id)
            assert plugin.status()["sessions"]["rebuild_failures"] == 1
    finally:
        plugin.detach()


@pytest.mark.proxy
async def test_the_proxy_rebuilds_a_dead_nodes_conversation_for_the_openai_sdk(nodes, tmp_path):
    database_url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    config = {
        "model_list": deployments(nodes),
        "litellm_settings": {"callbacks": ["litellm_failover.proxy_handler"]},
        "router_settings": {"num_retries": 2, "retry_after": 0},
        "failover_settings": {"database_url": database_url, "health": HEALTH, "in_tier": "round-robin"},
    }
    with ProxyProcess(config, tmp_path) as proxy:
        client = AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=30)
        chain = Chain()
        served = []
        for text in ("first question", "second question"):
            kwargs = {"previous_response_id": chain.last_id} if chain.last_id else {}
            raw = await client.responses.with_raw_response.create(model="chat", input=text, **kwargs)
            response = raw.parse()
            assert response.output_text == chain.expect(text)
            chain.took(text, response.output_text, response.id)
            served.append(raw.headers["x-litellm-model-id"])
        holder = served[0]
        assert served == [holder, holder]
        other = "p2" if holder == "p1" else "p1"

        async def state_of(name: str) -> str | None:
            try:
                rows = await list_deployment_states(database_url)
            except Exception:
                return None
            return {r["deployment_id"]: r["state"] for r in rows}.get(name)

        nodes[holder].kill()
        await wait_until(lambda: _is(state_of(holder), "unhealthy"), timeout=10, what=f"{holder} unhealthy")
        # The plugin already knows the node is down: this request goes to the other node first
        # time, with its history rebuilt (and the stream works the same way).
        text = "third question"
        stream = await client.responses.create(
            model="chat", input=text, previous_response_id=chain.last_id, stream=True
        )
        final = None
        async for event in stream:
            if event.type == "response.completed":
                final = event.response
        assert final is not None and final.output_text == chain.expect(text)
        chain.took(text, final.output_text, final.id)
        raw = await client.responses.with_raw_response.create(
            model="chat", input="fourth question", previous_response_id=chain.last_id
        )
        assert raw.headers["x-litellm-model-id"] == other
        assert raw.parse().output_text == chain.expect("fourth question")
        events = await _wait_events(database_url, "context_rebuilt")
        assert [(e["from_deployment"], e["to_deployment"], e["details"]["messages"]) for e in events] == [
            (holder, other, 4)
        ]
        # The other node was never sent an id it does not hold (it would have answered 404).
        assert nodes[other].state()["requests"]["by_status"].get("404", 0) == 0


async def _is(value, expected) -> bool:
    return (await value) == expected


async def _wait_events(database_url: str, event_type: str) -> list[dict]:
    found: list[dict] = []

    async def written() -> bool:
        try:
            found[:] = await list_events(database_url, event_type=event_type)
        except Exception:
            return False
        return bool(found)

    await wait_until(written, timeout=10, what=f"{event_type} events")
    return found

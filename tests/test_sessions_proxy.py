"""Sessions through the real LiteLLM proxy, enabled from config.yaml alone, driven by the openai SDK.

Fake vLLM nodes run as processes: a primary tier (p1, p2, round-robin inside it) and a standby
(s1). Clients name their session with the ``x-session-id`` header or ``metadata.session_id``;
what the plugin stored and decided is read back from its store: a SQLite file, and a PostgreSQL
schema of the test's own.
"""

from __future__ import annotations

import functools
import hashlib

import openai
import pytest
from chat_sessions import Conversation
from fake_nodes import proxy_running, running
from openai import AsyncOpenAI
from test_proxy_failover import proxy_config
from waiting import wait_until

from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.store.conversations import list_sessions, load_messages
from litellm_failover.store.queries import list_events

pytestmark = pytest.mark.proxy
pytest_plugins = ["services", "store_fixtures"]

ORDER = {"p1": 1, "p2": 1, "s1": 2}


@pytest.fixture
def nodes():
    with running({name: FakeVLLMProcess(name, tokens_per_s=0) for name in ORDER}) as started:
        yield started


@pytest.fixture
def proxy(nodes, tmp_path, store_url):
    config = proxy_config(nodes, store_url, in_tier="round-robin")
    with proxy_running(config, tmp_path, store_url) as process:
        yield process


def session(client: AsyncOpenAI, **naming: object) -> Conversation:
    return Conversation(functools.partial(client.chat.completions.create, model="chat"), **naming)


def client_for(proxy: ProxyProcess) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=30)


def completions(nodes: dict[str, FakeVLLMProcess]) -> int:
    return sum(n.state()["requests"]["by_endpoint"].get("/v1/chat/completions", 0) for n in nodes.values())


async def stored_messages(database_url: str, session_id: str, count: int) -> list:
    found: list = []

    async def written() -> bool:
        try:
            found[:] = await load_messages(database_url, session_id)
        except Exception:
            return False  # the tables appear with the plugin's first flush
        return len(found) >= count

    await wait_until(written, timeout=10, what=f"{count} messages of {session_id}")
    return found


async def test_sessions_stick_are_recorded_and_bad_ids_get_a_400(proxy, nodes):
    client = client_for(proxy)
    plain = []
    for number in range(8):
        message = {"role": "user", "content": str(number)}
        plain.append(await client.chat.completions.create(model="chat", messages=[message]))
    # Round-robin inside the tier (its start is random each time the table is rebuilt, so only
    # "both nodes" is certain): without a session, requests spread.
    assert {r.system_fingerprint for r in plain} == {"p1", "p2"}

    by_header = session(client, extra_headers={"x-session-id": "header-session"})
    by_metadata = session(client, extra_body={"metadata": {"session_id": "metadata-session"}})
    for number in range(3):
        await by_header.turn(f"header turn {number}", stream=number == 1)
        await by_metadata.turn(f"metadata turn {number}")
    assert len(set(by_header.served)) == 1 and len(set(by_metadata.served)) == 1

    stored = await stored_messages(proxy.database_url, "header-session", 6)
    assert [(m.seq, m.role, m.content) for m in stored] == [
        (i, m["role"], m["content"]) for i, m in enumerate(by_header.messages)
    ]
    assert stored[3].content == by_header.messages[3]["content"]  # the streamed answer, complete
    assert {m.deployment_id for m in stored if m.role == "assistant"} == set(by_header.served)
    assert all(m.completion_tokens == 24 for m in stored if m.role == "assistant")
    assert stored[0].content_hash == hashlib.sha256(b"header turn 0").hexdigest()
    assert len(await stored_messages(proxy.database_url, "metadata-session", 6)) == 6

    before = completions(nodes)
    too_long = "z" * 300
    for naming, needle in (
        ({"extra_headers": {"x-session-id": too_long}}, "the x-session-id header: 300 characters"),
        ({"extra_body": {"metadata": {"session_id": "new\nline"}}}, "metadata.session_id: control character"),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], **naming
            )
        assert info.value.status_code == 400
        assert "invalid session id" in str(info.value) and needle in str(info.value)
    assert completions(nodes) == before  # refused before any deployment was called
    sessions = {row["session_id"] for row in await list_sessions(proxy.database_url)}
    assert sessions == {"header-session", "metadata-session"}


async def test_failover_repins_a_proxy_session_with_an_event(proxy, nodes):
    client = client_for(proxy)
    chat = session(client, extra_headers={"x-session-id": "moving"})
    await chat.turn("hello")
    await chat.turn("still here?")
    holder = chat.served[0]
    other = "p2" if holder == "p1" else "p1"
    assert chat.served == [holder, holder]
    nodes[holder].kill()
    await chat.turn("and now?")
    await chat.turn("once more")
    assert chat.served[2:] == [other, other]

    found: list[dict] = []

    async def repinned() -> bool:
        found[:] = await list_events(proxy.database_url, event_type="session_repinned")
        return bool(found)

    await wait_until(repinned, timeout=10, what="a session_repinned event")
    assert [(e["from_deployment"], e["to_deployment"], e["details"]["session_id"]) for e in found] == [
        (holder, other, "moving")
    ]
    assert holder in found[0]["reason"]
    stored = await stored_messages(proxy.database_url, "moving", 8)
    assert [m.deployment_id for m in stored if m.role == "assistant"] == [holder, holder, other, other]

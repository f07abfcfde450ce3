"""Sessions belong to the key the real LiteLLM proxy authenticated (issue 11 §4).

Two API keys (a ``custom_auth`` module: the proxy here runs without LiteLLM's own database, so
it cannot mint keys) send the same ``x-session-id``. Before §4 session ids were global: both
keys' turns went into one ``failover_sessions`` row and the second key's first turn was dropped
as "already stored" at seq 0. Now each key has its own session, and nothing a client puts in
its request body (``metadata.failover_caller``, a forged ``user_api_key_hash``) changes whose it is.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_nodes import proxy_running, running
from openai import AsyncOpenAI
from test_proxy_failover import proxy_config
from waiting import wait_until

from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.store.conversations import list_sessions, load_messages

pytestmark = pytest.mark.proxy
pytest_plugins = ["services", "store_fixtures"]

AUTH_MODULE = """
from litellm.proxy._types import UserAPIKeyAuth

KEYS = {"sk-alice-0001": "team-a", "sk-bob-0002": "team-a"}


async def user_api_key_auth(request, api_key):
    if api_key not in KEYS:
        raise Exception("unknown key")
    return UserAPIKeyAuth(api_key=api_key, team_id=KEYS[api_key])
"""


@pytest.fixture
def nodes():
    with running({name: FakeVLLMProcess(name, tokens_per_s=0) for name in ("p1", "p2", "s1")}) as started:
        yield started


async def _turn(client: AsyncOpenAI, text: str, **extra: object) -> None:
    await client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": text}],
        extra_headers={"x-session-id": "shared"},
        **extra,
    )


async def test_one_session_id_under_two_keys_is_two_sessions(nodes, tmp_path: Path, store_url: str) -> None:
    (tmp_path / "failover_callers.py").write_text(AUTH_MODULE)
    config = proxy_config(nodes, store_url, in_tier="round-robin")
    config["general_settings"] = {"custom_auth": "failover_callers.user_api_key_auth"}
    with proxy_running(config, tmp_path, store_url) as proxy:
        alice, bob = (
            AsyncOpenAI(base_url=proxy.url, api_key=key, max_retries=0, timeout=30)
            for key in ("sk-alice-0001", "sk-bob-0002")
        )
        await _turn(alice, "alice 1")
        await _turn(bob, "bob 1")
        # A forged caller in the body: the proxy's authenticated key decides, not the client.
        await _turn(
            alice, "alice 2", extra_body={"metadata": {"failover_caller": "x", "user_api_key_hash": "y"}}
        )

        # The writer writes a flush's sessions before its messages, in separate transactions: a
        # session row can count a turn whose messages are not in the table yet.
        async def three_turns_stored() -> bool:
            try:
                found = await list_sessions(store_url)
                said = [m for m in await load_messages(store_url, "shared") if m.role == "user"]
            except Exception:
                return False  # the tables appear with the plugin's first flush
            return sum(r["turn_count"] for r in found) >= 3 and len(said) >= 3

        await wait_until(three_turns_stored, timeout=15, what="three turns and their messages stored")
        sessions = await list_sessions(store_url)
    assert sorted((r["session_id"], r["turn_count"]) for r in sessions) == [("shared", 1), ("shared", 2)]
    callers = {r["turn_count"]: r["caller"] for r in sessions}
    assert all(c.startswith("key-") for c in callers.values()) and callers[1] != callers[2]
    assert "sk-alice" not in str(sessions) and "sk-bob" not in str(sessions)  # a hash, never the key
    said = {
        turns: sorted(
            m.content for m in await load_messages(store_url, "shared", caller=caller) if m.role == "user"
        )
        for turns, caller in callers.items()
    }
    assert said == {1: ["bob 1"], 2: ["alice 1", "alice 2"]}

"""Sessions belong to a caller and record every history sent (issue 11 §4), through the real
``litellm.Router``: the caller is the application's ``metadata.failover_caller``.

Before §4, session ids were global (two callers' turns shared one session and pin) and the first
write won on (session, seq): of twelve single-message requests under one session id, only the
first user turn was stored.
"""

from __future__ import annotations

import pytest
from test_sessions_router import ON_BOTH_STORES, database_url, make_plugin, servers  # noqa: F401
from waiting import wait_until

from litellm_failover.sessions import SessionIdError
from litellm_failover.sessions.identity import ANONYMOUS_CALLER, caller_of, pin_key
from litellm_failover.store.conversations import list_sessions, load_messages

pytest_plugins = ["services"]


async def _recorded(plugin, turns: int) -> None:
    await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] >= turns, timeout=10, what="turns")
    assert await plugin.writer.flush(timeout=5)


@ON_BOTH_STORES
async def test_twelve_single_message_requests_leave_twelve_user_turns(make_plugin, database_url):  # noqa: F811
    router, plugin = make_plugin()
    async with plugin:
        for n in range(12):
            await router.acompletion(
                model="chat",
                messages=[{"role": "user", "content": f"question {n}"}],
                metadata={"session_id": "busy"},
            )
        await _recorded(plugin, 12)
    stored = await load_messages(database_url, "busy")
    users = sorted((m.content for m in stored if m.role == "user"), key=lambda t: int(t.split()[1]))
    assert users == [f"question {n}" for n in range(12)]
    assert sum(m.role == "assistant" for m in stored) == 12  # each with its own answer
    (row,) = await list_sessions(database_url)
    assert row["turn_count"] == 12 and row["caller"] == ANONYMOUS_CALLER


@ON_BOTH_STORES
async def test_two_callers_with_one_session_id_are_two_sessions(make_plugin, database_url):  # noqa: F811
    router, plugin = make_plugin()
    async with plugin:
        for who in ("alice", "bob", "alice"):
            await router.acompletion(
                model="chat",
                messages=[{"role": "user", "content": f"{who} speaking"}],
                metadata={"session_id": "same", "failover_caller": who},
            )
        await _recorded(plugin, 3)
        alice, bob = (caller_of({"metadata": {"failover_caller": who}}) for who in ("alice", "bob"))
        assert alice != bob and alice.startswith("app-") and "alice" not in alice
        # Each caller has its own pin; neither is the anonymous session of that id.
        assert plugin.pins.peek(pin_key(alice, "same"), "chat") is not None
        assert plugin.pins.peek(pin_key(bob, "same"), "chat") is not None
        assert plugin.pins.peek(pin_key(ANONYMOUS_CALLER, "same"), "chat") is None
    rows = await list_sessions(database_url)
    assert sorted((r["caller"], r["turn_count"]) for r in rows) == sorted([(alice, 2), (bob, 1)])
    for caller, said in ((alice, {"alice speaking"}), (bob, {"bob speaking"})):
        stored = await load_messages(database_url, "same", caller=caller)
        assert {m.content for m in stored if m.role == "user"} == said


async def test_a_bad_caller_name_is_refused_with_its_path(make_plugin):  # noqa: F811
    router, plugin = make_plugin()
    async with plugin:
        with pytest.raises(SessionIdError, match=r"metadata\.failover_caller: control character"):
            await router.acompletion(
                model="chat",
                messages=[{"role": "user", "content": "hi"}],
                metadata={"session_id": "s", "failover_caller": "evil\nname"},
            )

"""LiteLLM's privacy setting reaches the conversation store.

With ``litellm.turn_off_message_logging`` on, ``failover_messages`` keeps each message's hash,
length and token counts, never its text, unless ``sessions.store_content`` says otherwise in
``failover_settings``. Through a real ``litellm.Router`` with fake vLLM nodes, and through the
real proxy configured by ``litellm_settings`` alone; what was stored is read back from the store.

LiteLLM hands its log hooks a copy of the answer whose text is a placeholder when that setting is
on: the plugin records the answer as the client got it (captured before LiteLLM logs it), so the
stored hash is the real answer's and a conversation's turns stay one branch.
"""

# ruff: noqa: F811 (the fixtures imported from the sessions tests are parameters here)
from __future__ import annotations

import contextlib
import hashlib
import logging

import litellm
import pytest
from fake_nodes import proxy_running
from test_proxy_failover import proxy_config
from test_sessions_proxy import client_for, nodes, stored_messages  # noqa: F401 (fixtures)
from test_sessions_proxy import session as proxy_session
from test_sessions_router import ON_BOTH_STORES, database_url, make_plugin, servers, session  # noqa: F401
from waiting import wait_until

from litellm_failover.privacy import message_text_stored
from litellm_failover.requests import RequestBook
from litellm_failover.sessions.content import ROOT_HASH
from litellm_failover.sessions.continuity import parse_response_id
from litellm_failover.settings import SessionSettings
from litellm_failover.store.conversations import load_messages

pytest_plugins = ["services", "store_fixtures"]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def logging_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litellm, "turn_off_message_logging", True)


async def one_turn(router, plugin, database_url, session_id: str, question: str, stream: bool = False):
    chat = session(router, session_id)
    await chat.turn(question, stream=stream)
    await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 1, timeout=5)
    await plugin.writer.flush(timeout=5)
    return chat, await load_messages(database_url, session_id)


async def test_litellm_logging_off_stores_hashes_and_token_counts_only(
    logging_off,
    make_plugin,
    database_url,
):
    router, plugin = make_plugin()
    async with plugin:
        _, stored = await one_turn(router, plugin, database_url, "quiet", "my secret question")
        assert [m.content for m in stored] == [None, None]
        assert stored[0].content_hash == sha256("my secret question")
        assert stored[0].content_chars == len("my secret question")
        assert stored[1].completion_tokens == 24 and stored[1].prompt_tokens
        assert not any(m.truncated for m in stored)
        assert plugin.status()["sessions"]["message_text"] == "hash-only (litellm turn_off_message_logging)"


async def test_an_explicit_store_content_override_stores_text(logging_off, make_plugin, database_url):
    router, plugin = make_plugin(sessions={"store_content": True})
    async with plugin:
        _, stored = await one_turn(router, plugin, database_url, "chosen", "keep this one")
        assert stored[0].content == "keep this one"
        assert stored[1].content is not None
        assert plugin.status()["sessions"]["message_text"] == "text"


async def test_the_answer_is_hashed_not_litellms_placeholder(logging_off, make_plugin, database_url):
    router, plugin = make_plugin(sessions={"store_content": True})
    async with plugin:
        chat, stored = await one_turn(router, plugin, database_url, "answer", "what is stored?")
        assert stored[1].content_hash == sha256(chat.messages[1]["content"])
        assert stored[1].content == chat.messages[1]["content"]


async def test_a_streamed_answer_is_hashed_not_litellms_placeholder(logging_off, make_plugin, database_url):
    """LiteLLM redacts a stream's assembled answer in place: the resuming stream hands over the
    text the client got instead; the token counts still come from LiteLLM's log."""
    router, plugin = make_plugin(sessions={"store_content": True})
    async with plugin:
        chat, stored = await one_turn(router, plugin, database_url, "streamed", "stream it", stream=True)
        answer = chat.messages[1]["content"]
        assert answer and "redacted" not in answer
        assert (stored[1].content, stored[1].content_hash) == (answer, sha256(answer))
        assert stored[1].completion_tokens == 24
        assert plugin.book.answers_held() == 0


def one_branch(stored, messages) -> None:
    """One message per position, each the real one, each the child of the one before."""
    assert [m.seq for m in stored] == list(range(len(messages)))
    assert [m.content_hash for m in stored] == [sha256(m["content"]) for m in messages]
    assert [m.parent_hash for m in stored] == [ROOT_HASH, *(m.chain_hash for m in stored[:-1])]


@ON_BOTH_STORES
async def test_three_turns_with_logging_off_stay_one_branch(logging_off, make_plugin, database_url, caplog):
    caplog.set_level(logging.DEBUG, logger="litellm_failover")
    router, plugin = make_plugin()
    async with plugin:
        chat = session(router, "one-branch")
        for number, stream in enumerate((False, True, False)):
            await chat.turn(f"turn {number}", stream=stream)
            await wait_until(
                lambda n=number: plugin.status()["sessions"]["turns_recorded"] == n + 1, timeout=5
            )
        await plugin.writer.flush(timeout=5)
        stored = await load_messages(database_url, "one-branch")
        assert [m.content for m in stored] == [None] * 6
        one_branch(stored, chat.messages)
        assert plugin.book.answers_held() == 0  # each captured answer dropped once recorded
    answers = [m["content"] for m in chat.messages if m["role"] == "assistant"]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("litellm_failover")]
    assert not [line for line in ours for answer in answers if answer in line]  # never logged


async def responses_turn(router, text: str, previous: str | None, stream: bool):
    kwargs = {"previous_response_id": previous} if previous else {}
    response = await router.aresponses(model="chat", input=text, stream=stream, **kwargs)
    if not stream:
        return response
    completed = None
    async for event in response:
        if event.type == "response.completed":
            completed = event.response
    assert completed is not None
    return completed


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_responses_conversation_stores_the_real_answers(
    logging_off, make_plugin, database_url, stream
):
    """The Responses API too: a whole answer is captured after the deployment answered, a
    streamed one from its ``response.completed`` event; both before LiteLLM logs them. With
    the text stored, it is what a rebuild would send."""
    router, plugin = make_plugin(sessions={"store_content": True})
    async with plugin:
        first = await responses_turn(router, "first question", None, stream)
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 1, timeout=5)
        second = await responses_turn(router, "second question", first.id, stream)
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 2, timeout=5)
        await plugin.writer.flush(timeout=5)
        stored = await load_messages(database_url, parse_response_id(first.id).raw_id)
        assert plugin.book.answers_held() == 0
    sent = ["first question", first.output_text, "second question", second.output_text]
    assert [m.content for m in stored] == sent
    one_branch(stored, [{"content": text} for text in sent])


def test_a_captured_answer_is_held_only_while_its_session_waits():
    now = [0.0]
    book = RequestBook(ttl_s=10, clock=lambda: now[0])
    assert not book.keep_answer(("plain",), ["answer"])  # no session waits for it: not kept
    book.start("plain", "p1")
    assert not book.keep_answer(("call-1", "plain"), ["answer"])
    book.start("chat", "p1")
    book.keep_session("chat", "its session")
    assert book.keep_answer(("call-2", "chat"), ["answer"])  # found by either id
    assert book.answers_held() == 1
    assert book.take_answer(("call-2", "chat")) == ["answer"]
    assert book.take_answer(("chat",)) is None and book.answers_held() == 0
    assert book.take_session(("chat",)) == "its session"
    assert not book.keep_answer(("chat",), ["late"])  # recorded already: a late one is dropped
    book.start("abandoned", "p1")
    book.keep_session("abandoned", "another session")
    assert book.keep_answer(("abandoned",), ["never recorded"])
    now[0] = 11.0
    book.expire()
    assert book.answers_held() == 0 and book.take_answer(("abandoned",)) is None


async def test_the_flag_is_read_as_it_is_now(monkeypatch, make_plugin, database_url):
    """The proxy sets LiteLLM's flag while loading its config, possibly after attach: the flag is
    read per message, so text recorded before it was turned on is kept and none after."""
    monkeypatch.setattr(litellm, "turn_off_message_logging", False)
    router, plugin = make_plugin()
    async with plugin:
        chat, stored = await one_turn(router, plugin, database_url, "switch", "before")
        assert [m.content for m in stored] == ["before", chat.messages[1]["content"]]
        monkeypatch.setattr(litellm, "turn_off_message_logging", True)
        await chat.turn("after")
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 2, timeout=5)
        await plugin.writer.flush(timeout=5)
        stored = await load_messages(database_url, "switch")
        assert [m.content is None for m in stored] == [False, False, True, True]
        assert stored[2].content_hash == sha256("after")


def test_the_decision():
    explicit_off, explicit_on, follow = (SessionSettings(store_content=v) for v in (False, True, None))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(litellm, "turn_off_message_logging", False)
        assert [message_text_stored(s) for s in (explicit_off, explicit_on, follow)] == [False, True, True]
        patch.setattr(litellm, "turn_off_message_logging", True)
        assert [message_text_stored(s) for s in (explicit_off, explicit_on, follow)] == [False, True, False]


@contextlib.contextmanager
def quiet_proxy(nodes, tmp_path):
    """A running proxy over ``nodes`` with LiteLLM's message logging off in its config.yaml,
    and the URL of the store it writes."""
    store = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    config = proxy_config(nodes, store)
    config["litellm_settings"]["turn_off_message_logging"] = True
    with proxy_running(config, tmp_path, store) as proxy:
        yield proxy, store


@pytest.mark.proxy
async def test_the_proxy_litellm_settings_turn_off_message_text(nodes, tmp_path):
    with quiet_proxy(nodes, tmp_path) as (proxy, store):
        chat = proxy_session(client_for(proxy), extra_headers={"x-session-id": "proxy-quiet"})
        await chat.turn("a question nobody may read")
        await chat.turn("and a streamed one", stream=True)
        await chat.turn("and a last one")
        stored = await stored_messages(store, "proxy-quiet", 6)
    assert [m.content for m in stored] == [None] * 6
    assert stored[0].content_hash == sha256("a question nobody may read")
    assert stored[1].completion_tokens == 24
    one_branch(stored, chat.messages)  # the answers' real hashes: the next turn's history matches

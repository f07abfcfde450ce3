"""Streamed tool calls and ``n`` > 1 with LiteLLM's message logging off.

LiteLLM logs a copy of a streamed answer whose text is a placeholder when
``litellm.turn_off_message_logging`` is on. The plugin records the answer as the client assembled
it from the chunks instead (``streams.answer``): tool calls per index (id, type, name, argument
fragments), and choice 0 of an ``n`` > 1 stream, as a whole answer records choice 0. So the
stored hash is the real answer's, and a tool-call turn followed by its tool results' turn stays
one branch. Through a real ``litellm.Router`` and the real proxy, with fake vLLM nodes that
stream tool calls in vLLM's wire format; what was stored is read back from the store.
"""

# ruff: noqa: F811 (the fixtures imported from the sessions tests are parameters here)
from __future__ import annotations

import logging

import pytest
from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices
from test_privacy import logging_off, quiet_proxy  # noqa: F401 (a fixture)
from test_sessions_proxy import client_for, nodes, stored_messages  # noqa: F401 (fixtures)
from test_sessions_router import database_url, make_plugin, servers  # noqa: F401 (fixtures)
from waiting import wait_until

from litellm_failover.sessions.content import ROOT_HASH, chat_item, content_hash
from litellm_failover.store.conversations import load_messages
from litellm_failover.streams import answer as streamed
from litellm_failover.streams import chunks as ck

pytest_plugins = ["services", "store_fixtures"]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} a query",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
    for name in ("lookup", "search")
]


async def client_message(stream, choice: int = 0) -> dict:
    """The assistant message a client appends to its history from a stream, accumulated the way
    the openai SDK does: text, and per tool-call index the id, name and argument fragments."""
    content, calls = "", {}
    async for chunk in stream:
        for part in chunk.choices:
            if part.index != choice:
                continue
            content += part.delta.content or ""
            for delta in part.delta.tool_calls or ():
                call = calls.setdefault(
                    delta.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["function"]["name"] += delta.function.name or ""
                    call["function"]["arguments"] += delta.function.arguments or ""
    message: dict = {"role": "assistant", "content": content or None}
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return message


def hashed(message: dict) -> str:
    return content_hash(chat_item(message).text)


def one_branch(stored, messages) -> None:
    """One row per message, each the real one's hash, each the child of the one before."""
    assert [m.seq for m in stored] == list(range(len(messages)))
    assert [m.content_hash for m in stored] == [hashed(m) for m in messages]
    assert [m.parent_hash for m in stored] == [ROOT_HASH, *(m.chain_hash for m in stored[:-1])]


async def tool_conversation(create, stream: bool = True) -> list[dict]:
    """A user question answered with two tool calls, then the tools' results answered with
    text: the client's history after both turns."""

    async def ask(history: list[dict]) -> dict:
        response = await create(messages=list(history), tools=TOOLS, stream=stream)
        if stream:
            return await client_message(response)
        return response.choices[0].message.model_dump(exclude_none=True)

    history: list[dict] = [{"role": "user", "content": "look it up"}]
    calls = await ask(history)
    assert [c["function"]["name"] for c in calls["tool_calls"]] == ["lookup", "search"]
    assert all(c["id"].startswith("chatcmpl-tool-") for c in calls["tool_calls"])
    history.append(calls)
    history += [
        {"role": "tool", "tool_call_id": c["id"], "content": f"found for {c['function']['arguments']}"}
        for c in calls["tool_calls"]
    ]
    answer = await ask(history)
    assert answer["content"] and "tool_calls" not in answer
    return [*history, answer]


async def streamed_call(router, session_id: str, **extra) -> dict:
    """One streamed turn of a session answered with tool calls, as the client appends it."""
    question = [{"role": "user", "content": "call a tool"}]
    kwargs = {"tools": TOOLS, "stream": True, "metadata": {"session_id": session_id}, **extra}
    stream = await router.acompletion(model="chat", messages=question, **kwargs)
    return await client_message(stream)


async def recorded(plugin, database_url, session_id: str, turns: int) -> list:
    await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == turns, timeout=5)
    await plugin.writer.flush(timeout=5)
    return await load_messages(database_url, session_id)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_a_tool_call_turn_and_its_results_stay_one_branch(
    logging_off, make_plugin, database_url, stream
):
    router, plugin = make_plugin()
    async with plugin:

        async def create(**kwargs):
            return await router.acompletion(model="chat", metadata={"session_id": "tools"}, **kwargs)

        history = await tool_conversation(create, stream)
        stored = await recorded(plugin, database_url, "tools", 2)
        assert plugin.book.answers_held() == 0
    assert [m.content for m in stored] == [None] * 5  # hashes only, as LiteLLM's setting says
    one_branch(stored, history)  # the tool-call answer's real hash: the next turn matched it


async def test_the_stored_tool_call_answer_is_the_one_the_client_appends(
    logging_off, make_plugin, database_url
):
    """With text stored, the stored message is the client's copy of the answer, calls included."""
    router, plugin = make_plugin(sessions={"store_content": True})
    async with plugin:
        message = await streamed_call(router, "one-call", parallel_tool_calls=False)
        stored = await recorded(plugin, database_url, "one-call", 1)
    assert len(message["tool_calls"]) == 1
    assert (stored[1].content, stored[1].content_hash) == (chat_item(message).text, hashed(message))
    assert "redacted" not in stored[1].content


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_n_choices_record_choice_0_on_both_paths(logging_off, make_plugin, database_url, stream):
    """The next turn continues one choice and the plugin cannot know which: like a whole
    answer, a stream records choice 0 (its real text, not LiteLLM's placeholder)."""
    router, plugin = make_plugin()
    async with plugin:
        question = {"role": "user", "content": "two takes"}
        response = await router.acompletion(
            model="chat", messages=[question], n=2, stream=stream, metadata={"session_id": "takes"}
        )
        if stream:
            raw = [chunk async for chunk in response]

            async def replay():
                for chunk in raw:
                    yield chunk

            first, second = [await client_message(replay(), choice) for choice in (0, 1)]
        else:
            first, second = ({"role": "assistant", "content": c.message.content} for c in response.choices)
        assert first["content"] and second["content"] and first != second
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 1, timeout=5)
        history = [question, first, {"role": "user", "content": "go on with the first"}]
        # The very list sent gets the answer appended, as SDK callers do, before it is recorded.
        follow_up = await router.acompletion(model="chat", messages=history, metadata={"session_id": "takes"})
        history.append({"role": "assistant", "content": follow_up.choices[0].message.content})
        stored = await recorded(plugin, database_url, "takes", 2)
    one_branch(stored, history)


async def test_a_capture_that_gives_up_never_breaks_the_stream(
    logging_off, make_plugin, database_url, monkeypatch, caplog
):
    """Over the capture's bound, the client still gets its whole stream; the session records
    LiteLLM's logged copy, and the reason is logged without the answer's content."""
    monkeypatch.setattr(streamed, "MAX_CAPTURED_CHARS", 10)
    caplog.set_level(logging.INFO, logger="litellm_failover")
    router, plugin = make_plugin()
    async with plugin:
        message = await streamed_call(router, "too-long")
        stored = await recorded(plugin, database_url, "too-long", 1)
        assert plugin.book.answers_held() == 0
    assert [len(c["function"]["arguments"]) > 10 for c in message["tool_calls"]] == [True, True]
    assert len(stored) == 2 and stored[1].content_hash != hashed(message)  # LiteLLM's copy
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("litellm_failover")]
    assert [line for line in lines if "more than 10 characters to assemble" in line]
    arguments = [c["function"]["arguments"] for c in message["tool_calls"]]
    assert not [line for line in lines for text in arguments if text in line]


def chunk(delta: dict, index: int = 0, finish: str | None = None) -> ModelResponseStream:
    choice = StreamingChoices(index=index, delta=Delta(**delta), finish_reason=finish)
    return ModelResponseStream(id="chatcmpl-x", created=1, model="m", choices=[choice])


def call(index, **fields) -> dict:
    return {"tool_calls": [{"index": index, "function": {}, **fields}]}


def head(index: int, call_id: str = "call-0", name: str = "lookup") -> dict:
    return call(index, id=call_id, type="function", function={"name": name})


def args(index: int, text: str) -> dict:
    return call(index, function={"arguments": text})


@pytest.mark.parametrize(
    ("deltas", "reason"),
    [
        ([call(-1, id="x")], "index that is not an integer"),
        ([call(streamed.MAX_TOOL_CALLS, id="x")], "index that is not an integer"),
        ([head(1)], "tool call 1 before tool call 0"),
        ([head(0), call(0, id="call-other")], "id changed mid-stream"),
        ([head(0), call(0, function={"name": "search"})], "name changed mid-stream"),
        ([head(0, call_id="i" * (streamed.MAX_FIELD_CHARS + 1))], "id is not a string of at most"),
        ([call(0, id="x", type="retrieval")], "is not a function call"),
        ([{"function_call": {"name": "lookup", "arguments": "{}"}}], "legacy function_call"),
        ([head(0, name="")], "without an id or a name"),
    ],
)
def test_hostile_tool_call_deltas_make_the_capture_give_up(deltas, reason):
    """Real LiteLLM chunks as the Router hands them over: a delta that cannot be assembled ends
    the capture (never raising into the stream) with a reason that holds no content."""
    capture = streamed.AnswerCapture()
    stream = [chunk(d) for d in deltas] + [chunk({}, finish="tool_calls")]
    ends = [capture.whole(c, ck.read(c)) for c in stream]
    assert ends.count(True) == 1
    assert capture.answer([]) is None
    assert reason in (capture.failed or "")


def test_a_choice_index_out_of_range_gives_up_and_other_choices_are_skipped():
    capture = streamed.AnswerCapture(choices=2)
    for c in (chunk({"content": "one"}), chunk({"content": "two"}, index=1), chunk({}, finish="stop")):
        capture.whole(c, ck.read(c))
    assert [item.text for item in capture.answer(["mixed", "text"])] == ["one"]
    capture = streamed.AnswerCapture(choices=2)
    bad = chunk({"content": "x"}, index=2)
    assert capture.whole(bad, ck.read(bad)) and "choice index out of range" in capture.failed


def test_parallel_calls_are_assembled_by_index_with_the_text_beside_them():
    capture = streamed.AnswerCapture()
    deltas = [head(0), args(0, '{"q": '), head(1, "call-1", "search"), args(0, '"a"}'), args(1, "{}")]
    stream = [chunk(d) for d in deltas] + [chunk(args(1, ""), finish="tool_calls")]
    assert [capture.whole(c, ck.read(c)) for c in stream][-1]
    expected = {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {"id": "call-0", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "a"}'}},
            {"id": "call-1", "type": "function", "function": {"name": "search", "arguments": "{}"}},
        ],
    }
    assert capture.answer(["Let me ", "check."]) == [chat_item(expected)]
    # A client that keeps "" for no text has the same hash as null (a whole answer's).
    assert chat_item({**expected, "content": ""}) == chat_item({**expected, "content": None})


def test_a_tool_call_in_a_delta_with_text_is_the_streams_too():
    """A delta may carry text and a tool call together (LiteLLM's Gemini chunks do, and it passes
    an OpenAI-compatible one on as is): the call is read as one (the stream is then not
    resumable) and assembled beside the text, not dropped for the text."""
    whole_call = call(0, id="call-0", type="function", function={"name": "lookup", "arguments": "{}"})
    both = chunk({"content": "Let me check.", **whole_call})
    seen = ck.read(both)
    assert (seen.text, seen.tool_calls) == ("Let me check.", True)
    capture = streamed.AnswerCapture()
    stream = [both, chunk({}, finish="tool_calls")]
    assert [capture.whole(c, ck.read(c)) for c in stream] == [False, True]
    expected = {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {"id": "call-0", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
        ],
    }
    assert capture.answer(["Let me check."]) == [chat_item(expected)]


@pytest.mark.proxy
async def test_the_proxy_records_streamed_tool_calls_on_one_branch(nodes, tmp_path):
    with quiet_proxy(nodes, tmp_path) as (proxy, store):
        client = client_for(proxy)

        async def create(**kwargs):
            return await client.chat.completions.create(
                model="chat", extra_headers={"x-session-id": "proxy-tools"}, **kwargs
            )

        history = await tool_conversation(create)
        stored = await stored_messages(store, "proxy-tools", 5)
    assert [m.content for m in stored] == [None] * 5
    one_branch(stored, history)

"""The fake vLLM's tool calls and ``n`` choices, on the wire as vLLM sends them.

Raw SSE through aiohttp (the deltas' exact shape is the point) and the ``openai`` SDK for what a
client makes of them. vLLM's streaming tool parsers send a call's ``id``, ``type`` and name in its
first delta and then fragments of its arguments, each delta naming the call's ``index``; with
``n`` > 1 each chunk carries one choice.
"""

# ruff: noqa: F811 (the fixtures imported from test_fake_vllm are parameters here)
from __future__ import annotations

import json

import aiohttp
import pytest
from test_fake_vllm import client, http, server  # noqa: F401 (fixtures)

from litellm_failover.providers.fake.chat import MAX_CHOICES
from litellm_failover.providers.fake.vllm import FakeVLLM

QUESTION = [{"role": "user", "content": "what is the weather"}]
TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name in ("lookup", "search", "third")
]


async def chunks(http: aiohttp.ClientSession, server: FakeVLLM, **body: object) -> list[dict]:
    request = {"model": "m", "messages": QUESTION, "stream": True, **body}
    async with http.post(f"{server.api_base}/chat/completions", json=request) as response:
        assert response.status == 200
        return [
            json.loads(line[len(b"data: ") :])
            async for line in response.content
            if line.startswith(b"data: ") and line.strip() != b"data: [DONE]"
        ]


async def test_tool_calls_stream_as_vllm_parsers_send_them(http, server, client) -> None:
    sent = await chunks(http, server, tools=TOOLS[:2], stream_options={"include_usage": True})
    deltas = [c["choices"][0]["delta"] for c in sent if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    heads = [c for c in calls if "id" in c]
    assert [(h["index"], h["type"], h["function"]) for h in heads] == [
        (0, "function", {"name": "lookup"}),
        (1, "function", {"name": "search"}),
    ]
    assert all(h["id"].startswith("chatcmpl-tool-") and len(h["id"]) == 14 + 32 for h in heads)
    fragments = [c for c in calls if "id" not in c]
    assert all(set(f) == {"index", "function"} and set(f["function"]) == {"arguments"} for f in fragments)
    arguments = ["".join(f["function"]["arguments"] for f in fragments if f["index"] == i) for i in (0, 1)]
    assert [set(json.loads(a)) for a in arguments] == [{"query"}, {"query"}]
    assert [c["choices"][0]["finish_reason"] for c in sent if c["choices"]][-1] == "tool_calls"
    assert sent[-1]["usage"]["completion_tokens"] == len(calls)  # a name or a fragment: one token
    whole = await client.chat.completions.create(model="m", messages=QUESTION, tools=TOOLS[:2])
    message = whole.choices[0].message
    assert message.content is None and whole.choices[0].finish_reason == "tool_calls"
    assert [c.function.arguments for c in message.tool_calls] == arguments  # deterministic


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({}, ["lookup", "search"]),  # one call per tool, at most two
        ({"parallel_tool_calls": False}, ["lookup"]),
        ({"tool_choice": {"type": "function", "function": {"name": "third"}}}, ["third"]),
        ({"tool_choice": "none"}, []),
    ],
)
async def test_which_tools_are_called(client, extra, names) -> None:
    answer = await client.chat.completions.create(model="m", messages=QUESTION, tools=TOOLS, **extra)
    assert [c.function.name for c in answer.choices[0].message.tool_calls or ()] == names
    assert bool(answer.choices[0].message.content) == (not names)


async def test_tool_results_are_answered_with_text(client, server) -> None:
    first = (await client.chat.completions.create(model="m", messages=QUESTION, tools=TOOLS)).choices[0]
    history = [*QUESTION, first.message.model_dump(exclude_none=True)]
    history += [{"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in first.message.tool_calls]
    answer = await client.chat.completions.create(model="m", messages=history, tools=TOOLS)
    assert answer.choices[0].message.content == server.answer_for(history)
    assert answer.choices[0].finish_reason == "stop" and not answer.choices[0].message.tool_calls


async def test_n_choices_stream_one_choice_a_chunk(http, server, client) -> None:
    sent = await chunks(http, server, n=2, stream_options={"include_usage": True})
    assert all(len(c["choices"]) == 1 for c in sent[:-1]) and sent[-1]["choices"] == []
    texts = [
        "".join(
            c["choices"][0]["delta"].get("content") or "" for c in sent[:-1] if c["choices"][0]["index"] == i
        )
        for i in (0, 1)
    ]
    roles = [c["choices"][0]["index"] for c in sent[:-1] if c["choices"][0]["delta"].get("role")]
    finishes = [(c["choices"][0]["index"], c["choices"][0]["finish_reason"]) for c in sent[:-1]]
    assert roles == [0, 1] and [f for f in finishes if f[1]] == [(0, "stop"), (1, "stop")]
    # Each choice's finish reason as soon as it ends, as vLLM sends it: choice 1 still going.
    assert [f[0] for f in finishes[-3:]] == [0, 1, 1] and finishes[-3][1] == "stop"
    assert texts[0] == server.answer_for(QUESTION) != texts[1]  # choice 0 is what n=1 gets
    assert sent[-1]["usage"]["completion_tokens"] == 48
    whole = await client.chat.completions.create(model="m", messages=QUESTION, n=2)
    assert [c.message.content for c in whole.choices] == texts
    assert whole.usage.completion_tokens == 48


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"n": 0}, "'n' must be an integer"),
        ({"n": MAX_CHOICES + 1}, "'n' must be an integer"),
        ({"tools": {"name": "lookup"}}, "'tools' must be a list"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0] must be a function tool"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "x"}}}, "tool_choice"),
    ],
)
async def test_bad_n_and_tools_get_openai_errors(http, server, body, needle) -> None:
    request = {"model": "m", "messages": QUESTION, **body}
    async with http.post(f"{server.api_base}/chat/completions", json=request) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert needle in error["message"]

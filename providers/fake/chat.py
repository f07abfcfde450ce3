"""The fake vLLM's ``/v1/chat/completions``: the request as vLLM checks it, and the answer's shape.

vLLM's continuation parameters matter here: ``continue_final_message`` extends the last assistant
message instead of starting a new answer, which is how the plugin resumes a broken stream on
another node, so the continued pieces must be exactly the rest of the original answer. Without it
a trailing assistant message is a finished turn and the answer is a new one, as vLLM's chat
templates render it (``add_generation_prompt`` defaults to true); a ``prefix: true`` on that
message (LiteLLM's mid-stream continuation, Mistral's and DeepSeek's APIs) changes nothing, as
vLLM's templates never read it (only its ``mistral_common`` tokenizer mode does).

One word of the answer is one token. A real engine does not send one token per chunk: speculative
decoding and a stream interval put several in one chunk, and a detokenizer holding back an
incomplete character sends chunks with no text. ``chunk_tokens`` is the pattern a node streams
in (``(3,)``: three tokens a chunk; ``(1, 3, 0, 2)``: that cycle, 0 being a chunk with no text),
and ``stream_options.continuous_usage_stats`` gets the running count on every chunk, as vLLM
sends it, so a client can count tokens where chunks do not.

``n`` > 1 answers with that many choices (choice 0 is the answer ``n: 1`` gets, the others are
seeded apart), streamed as vLLM streams them: one choice per chunk, each choice's chunks in
generation order, interleaved, and its finish reason as soon as it ends. A request offering
``tools`` may be answered with tool calls (``tools``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from litellm_failover.providers.fake.text import (
    RequestError,
    answer_pieces,
    content_text,
    continuation_pieces,
)
from litellm_failover.providers.fake.tools import PlannedCall, parse_tools, plan_calls
from litellm_failover.providers.fake.wire import Dropped, Pacer

CHAT_PATH = "/v1/chat/completions"
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_CHOICES = 16  # the fake's own bound on ``n`` (vLLM's is the engine's sequence budget)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The fields of a chat completion request this server acts on; the rest are ignored."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    continue_final_message: bool
    continuous_usage: bool = False  # vLLM's: usage on every chunk (only with include_usage)
    n: int = 1
    tools: tuple[str, ...] = ()  # function tools the answer may call (``tools.parse_tools``)


@dataclass(frozen=True, slots=True)
class Generation:
    """What one request will produce: pieces already truncated by ``max_tokens``."""

    pieces: list[str]
    finish_reason: str
    prompt_tokens: int
    calls: tuple[PlannedCall, ...] = ()  # the answer is these calls (``pieces`` is then empty)

    @property
    def tokens(self) -> int:
        """Completion tokens: one a piece; a call's name and each arguments fragment one each."""
        return len(self.pieces) + sum(1 + len(call.fragments) for call in self.calls)

    @property
    def usage(self) -> dict[str, int]:
        return self.usage_after(self.tokens)

    def usage_after(self, completion: int) -> dict[str, int]:
        """The usage once ``completion`` tokens were generated (vLLM's running count)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


def _optional_bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"'{key}' must be a boolean", key)
    return value


def _parse_messages(raw: object) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list", "messages")
    for index, message in enumerate(raw):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise RequestError(f"messages[{index}] must be an object with a valid 'role'", "messages")
        if not isinstance(message.get("content"), str | list | None):
            raise RequestError(f"messages[{index}].content must be a string, a list or null", "messages")
    return raw


def _parse_n(body: Mapping[str, Any]) -> int:
    value = body.get("n", 1)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CHOICES:
        raise RequestError(f"'n' must be an integer from 1 to {MAX_CHOICES}", "n")
    return value


def _parse_max_tokens(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(f"'{key}' must be a positive integer", key)
        return value
    return None


def parse_chat_request(body: object, default_model: str) -> ChatRequest:
    """Check a request the way vLLM's pydantic model would, for the fields that matter here."""
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    model = body.get("model", default_model)
    if not isinstance(model, str) or not model:
        raise RequestError("'model' must be a non-empty string", "model")
    messages = _parse_messages(body.get("messages"))
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", "stream_options")
    continue_final = _optional_bool(body, "continue_final_message", False)
    if continue_final and body.get("add_generation_prompt") is True:
        raise RequestError(
            "continue_final_message and add_generation_prompt cannot both be true", "continue_final_message"
        )
    if continue_final and messages[-1].get("role") != "assistant":
        raise RequestError(
            "continue_final_message needs the last message to be an assistant message", "messages"
        )
    include_usage = _optional_bool(options, "include_usage", False)
    # Like vLLM: the running count needs include_usage as well (should_include_usage).
    continuous = include_usage and _optional_bool(options, "continuous_usage_stats", False)
    return ChatRequest(
        model=model,
        messages=messages,
        stream=_optional_bool(body, "stream", False),
        include_usage=include_usage,
        max_tokens=_parse_max_tokens(body),
        continue_final_message=continue_final,
        continuous_usage=continuous,
        n=_parse_n(body),
        tools=parse_tools(body),
    )


def parse_chunk_tokens(spec: str | Sequence[int]) -> tuple[int, ...]:
    """A chunking pattern: tokens per chunk, cycled; ``"1,3,0,2"`` or ``(1, 3, 0, 2)``.

    0 is a chunk with no text; at least one entry must be positive, or no answer would end.
    """
    raw: Sequence[object] = spec.split(",") if isinstance(spec, str) else spec
    pattern: list[int] = []
    for index, item in enumerate(raw):
        try:
            value = int(item.strip()) if isinstance(item, str) else item
        except ValueError:
            value = None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"chunk_tokens[{index}] must be a non-negative integer, got {item!r}")
        pattern.append(value)
    if not any(pattern):
        raise ValueError(f"chunk_tokens needs at least one positive entry, got {list(raw)!r}")
    return tuple(pattern)


def plan_generation(request: ChatRequest, words: int, choice: int = 0) -> Generation:
    """Decide the pieces a request's ``choice`` gets: tool calls, a fresh answer, or the rest
    of one after a prefix."""
    prompt_tokens = sum(len(content_text(m.get("content")).split()) for m in request.messages)
    calls = () if request.continue_final_message else plan_calls(request.tools, request.messages, choice)
    if calls:
        return Generation([], "tool_calls", prompt_tokens, tuple(calls))
    if request.continue_final_message:
        base = answer_pieces(request.messages[:-1], words)
        pieces = continuation_pieces(base, content_text(request.messages[-1].get("content")))
    else:
        # Choice 0 is the answer ``n: 1`` gets; another is seeded apart, as sampling would be.
        extra = [{"role": "system", "content": f"choice {choice}"}] if choice else []
        pieces = answer_pieces([*request.messages, *extra], words)
    finish_reason = "stop"
    if request.max_tokens is not None and request.max_tokens < len(pieces):
        pieces = pieces[: request.max_tokens]
        finish_reason = "length"
    return Generation(pieces, finish_reason, prompt_tokens)


def plan_choices(request: ChatRequest, words: int) -> list[Generation]:
    return [plan_generation(request, words, choice) for choice in range(request.n)]


def usage_of(generations: Sequence[Generation], tokens: int | None = None) -> dict[str, int]:
    """The usage of all choices (``tokens``: the completion tokens so far, for a running count)."""
    completion = sum(g.tokens for g in generations) if tokens is None else tokens
    return generations[0].usage_after(completion)


def envelope(chat: ChatRequest, node_name: str, obj: str) -> dict[str, Any]:
    """The fields every completion and chunk carry; ``system_fingerprint`` names the node."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": obj,
        "created": int(time.time()),
        "model": chat.model,
        "system_fingerprint": node_name,
    }


def completion_body(chat: ChatRequest, generations: Sequence[Generation], node_name: str) -> dict[str, Any]:
    """A non-streamed answer: each choice's whole text (or its tool calls) in one message."""
    body = envelope(chat, node_name, "chat.completion")
    body["choices"] = [
        {
            "index": index,
            "message": _message(generation),
            "logprobs": None,
            "finish_reason": generation.finish_reason,
        }
        for index, generation in enumerate(generations)
    ]
    body["usage"] = usage_of(generations)
    return body


def _message(generation: Generation) -> dict[str, Any]:
    if generation.calls:
        return {"role": "assistant", "content": None, "tool_calls": [c.message() for c in generation.calls]}
    return {"role": "assistant", "content": "".join(generation.pieces)}


def _deltas(generation: Generation, chunk_tokens: Sequence[int]) -> list[tuple[dict[str, Any], int]]:
    """One choice's content deltas, each with the tokens it carries."""
    if generation.calls:
        return [
            ({"tool_calls": [delta]}, 1)
            for index, call in enumerate(generation.calls)
            for delta in call.deltas(index)
        ]
    deltas, pieces, tokens, chunks = [], generation.pieces, 0, 0
    while tokens < len(pieces):
        start, tokens = tokens, min(len(pieces), tokens + chunk_tokens[chunks % len(chunk_tokens)])
        deltas.append(({"content": "".join(pieces[start:tokens])}, tokens - start))
        chunks += 1
    return deltas


async def write_chat_stream(
    response: web.StreamResponse,
    chat: ChatRequest,
    generations: Sequence[Generation],
    node_name: str,
    tokens_per_s: float,
    dropped: Dropped,
    chunk_tokens: Sequence[int] = (1,),
) -> None:
    """Stream the answer in chunks of ``chunk_tokens`` pieces (cycled), OpenAI's SSE shape, paced
    at ``tokens_per_s``; with ``continuous_usage`` every chunk carries the running usage. With
    several choices, each chunk is one choice's, the choices taking turns, and each choice's finish
    reason comes as soon as its last delta is sent, the others still going (as vLLM sends it).

    Returns early, without the closing chunks, when ``dropped`` says the node cut the stream
    (asked with the number of content chunks sent, empty ones included).
    """
    head = envelope(chat, node_name, "chat.completion.chunk")
    running = chat.continuous_usage

    async def send(
        index: int, delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any
    ) -> None:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        payload = {**head, "choices": [] if delta is None else [choice], **extra}
        await response.write(f"data: {json.dumps(payload)}\n\n".encode())

    def counted(tokens: int) -> dict[str, Any]:
        return {"usage": usage_of(generations, tokens)} if running else {}

    for index in range(len(generations)):
        await send(index, {"role": "assistant", "content": ""}, **counted(0))
    pacer = Pacer(tokens_per_s)
    queues = [_deltas(generation, chunk_tokens) for generation in generations]
    done = [0] * len(queues)  # each choice's tokens so far: choices are generated side by side
    ended = [False] * len(queues)  # with several choices, each one's finish is sent when it ends
    chunks = 0
    for step in range(max(map(len, queues))):
        for index, queue in enumerate(queues):
            if step >= len(queue):
                continue
            if await dropped(chunks):
                return
            delta, carried = queue[step]
            done[index] += carried
            await pacer.until(done[index])
            await send(index, delta, **counted(sum(done)))
            chunks += 1
            if len(queues) > 1 and step == len(queue) - 1:
                await send(index, {}, generations[index].finish_reason, **counted(sum(done)))
                ended[index] = True
    if await dropped(chunks):
        return
    for index, generation in enumerate(generations):
        if not ended[index]:
            await send(index, {}, generation.finish_reason, **counted(sum(done)))
    if chat.include_usage:
        await send(0, None, usage=usage_of(generations))
    await response.write(b"data: [DONE]\n\n")

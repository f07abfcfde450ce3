"""The fake vLLM's ``/v1/chat/completions``: the request as vLLM checks it, and the answer's shape.

vLLM's continuation parameters matter here: ``continue_final_message`` extends the last assistant
message instead of starting a new answer, which is how the plugin resumes a broken stream on
another node, so the continued pieces must be exactly the rest of the original answer.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from litellm_failover.providers.fake.text import (
    RequestError,
    answer_pieces,
    content_text,
    continuation_pieces,
)
from litellm_failover.providers.fake.wire import Dropped, Pacer

CHAT_PATH = "/v1/chat/completions"
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The fields of a chat completion request this server acts on; the rest are ignored."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    continue_final_message: bool


@dataclass(frozen=True, slots=True)
class Generation:
    """What one request will produce: pieces already truncated by ``max_tokens``."""

    pieces: list[str]
    finish_reason: str
    prompt_tokens: int

    @property
    def usage(self) -> dict[str, int]:
        completion = len(self.pieces)
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
    return ChatRequest(
        model=model,
        messages=messages,
        stream=_optional_bool(body, "stream", False),
        include_usage=_optional_bool(options, "include_usage", False),
        max_tokens=_parse_max_tokens(body),
        continue_final_message=continue_final,
    )


def plan_generation(request: ChatRequest, words: int) -> Generation:
    """Decide the pieces a request gets: a fresh answer, or the rest of one after a prefix."""
    if request.continue_final_message:
        base = answer_pieces(request.messages[:-1], words)
        pieces = continuation_pieces(base, content_text(request.messages[-1].get("content")))
    else:
        pieces = answer_pieces(request.messages, words)
    finish_reason = "stop"
    if request.max_tokens is not None and request.max_tokens < len(pieces):
        pieces = pieces[: request.max_tokens]
        finish_reason = "length"
    prompt_tokens = sum(len(content_text(m.get("content")).split()) for m in request.messages)
    return Generation(pieces, finish_reason, prompt_tokens)


def envelope(chat: ChatRequest, node_name: str, obj: str) -> dict[str, Any]:
    """The fields every completion and chunk carry; ``system_fingerprint`` names the node."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": obj,
        "created": int(time.time()),
        "model": chat.model,
        "system_fingerprint": node_name,
    }


def completion_body(chat: ChatRequest, generation: Generation, node_name: str) -> dict[str, Any]:
    """A non-streamed answer: the whole text in one message."""
    body = envelope(chat, node_name, "chat.completion")
    body["choices"] = [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "".join(generation.pieces)},
            "logprobs": None,
            "finish_reason": generation.finish_reason,
        }
    ]
    body["usage"] = generation.usage
    return body


async def write_chat_stream(
    response: web.StreamResponse,
    chat: ChatRequest,
    generation: Generation,
    node_name: str,
    tokens_per_s: float,
    dropped: Dropped,
) -> None:
    """Stream the answer one piece per chunk, OpenAI's SSE shape, paced at ``tokens_per_s``.

    Returns early, without the closing chunks, when ``dropped`` says the node cut the stream.
    """
    head = envelope(chat, node_name, "chat.completion.chunk")

    async def send(delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any) -> None:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        payload = {**head, "choices": [] if delta is None else [choice], **extra}
        await response.write(f"data: {json.dumps(payload)}\n\n".encode())

    await send({"role": "assistant", "content": ""})
    pacer = Pacer(tokens_per_s)
    for sent, piece in enumerate(generation.pieces):
        if await dropped(sent):
            return
        await pacer.until(sent + 1)
        await send({"content": piece})
    if await dropped(len(generation.pieces)):
        return
    await send({}, generation.finish_reason)
    if chat.include_usage:
        await send(None, usage=generation.usage)
    await response.write(b"data: [DONE]\n\n")

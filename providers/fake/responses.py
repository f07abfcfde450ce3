"""The fake vLLM's ``/v1/responses``: a stateful OpenAI Responses API, the way vLLM keeps it.

vLLM stores each response it produced in its own memory, with the message list that led to it,
and answers a request carrying ``previous_response_id`` by prepending that stored conversation.
A ``previous_response_id`` it does not hold (another node made it, or the node restarted) is a
404. That statefulness is exactly what breaks when a node dies mid-conversation, so the fake
keeps it too: the plugin's context rebuild is tested against a server that really forgets.

Answers come from the same deterministic word sequence as chat completions, seeded from the
conversation's (role, text) list: a conversation rebuilt in full on another node gets the answer
the original node would have given.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from litellm_failover.providers.fake.text import RequestError, answer_pieces, content_text
from litellm_failover.providers.fake.wire import Dropped, Pacer

RESPONSES_PATH = "/v1/responses"
DEFAULT_STORE_SIZE = 10_000
_INPUT_ROLES = frozenset({"system", "developer", "user", "assistant"})


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """The fields of a Responses API request this server acts on; the rest are ignored."""

    model: str
    input: list[dict[str, Any]]
    instructions: str | None
    previous_response_id: str | None
    stream: bool
    store: bool
    max_output_tokens: int | None


def _input_items(raw: object) -> list[dict[str, Any]]:
    """``input`` as a message list: a string is one user message; items must be messages."""
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise RequestError("'input' must be a string or a non-empty list of messages", "input")
    messages = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            raise RequestError(f"input[{index}] must be a message item (role and content)", "input")
        if item.get("role") not in _INPUT_ROLES:
            raise RequestError(f"input[{index}] must have a valid 'role'", "input")
        if not isinstance(item.get("content"), str | list):
            raise RequestError(f"input[{index}].content must be a string or a list of parts", "input")
        messages.append({"role": item["role"], "content": content_text(item["content"])})
    return messages


def parse_responses_request(body: object, default_model: str) -> ResponsesRequest:
    """Check a request the way vLLM's ``ResponsesRequest`` model would, for the fields used here."""
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    model = body.get("model", default_model)
    if not isinstance(model, str) or not model:
        raise RequestError("'model' must be a non-empty string", "model")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise RequestError("'instructions' must be a string", "instructions")
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise RequestError("'previous_response_id' must be a non-empty string", "previous_response_id")
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise RequestError("'max_output_tokens' must be a positive integer", "max_output_tokens")
    flags = {}
    for key, default in (("stream", False), ("store", True)):
        value = body.get(key)
        if value is not None and not isinstance(value, bool):
            raise RequestError(f"'{key}' must be a boolean", key)
        flags[key] = default if value is None else value
    return ResponsesRequest(
        model=model,
        input=_input_items(body.get("input")),
        instructions=instructions,
        previous_response_id=previous,
        stream=flags["stream"],
        store=flags["store"],
        max_output_tokens=max_tokens,
    )


class ResponseNotFound(LookupError):
    """A ``previous_response_id`` this node does not hold: vLLM answers 404."""

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Response with id '{response_id}' not found.")
        self.response_id = response_id


class ResponseStore:
    """What vLLM keeps in memory per stored response: the response and its input messages.

    Bounded (oldest forgotten first) so a long drill cannot grow a fake node without limit; a
    real vLLM's store is memory-bound too, and forgetting is what the plugin must survive anyway.
    """

    def __init__(self, max_size: int = DEFAULT_STORE_SIZE) -> None:
        self._max = max_size
        self._items: OrderedDict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, response_id: object) -> bool:
        return response_id in self._items

    def conversation(self, request: ResponsesRequest) -> list[dict[str, Any]]:
        """vLLM's ``_construct_input_messages``: instructions, stored history, new input."""
        messages: list[dict[str, Any]] = []
        if request.instructions:
            messages.append({"role": "system", "content": request.instructions})
        if request.previous_response_id is not None:
            stored = self._items.get(request.previous_response_id)
            if stored is None:
                raise ResponseNotFound(request.previous_response_id)
            response, history = stored
            messages.extend(history)
            messages.extend({"role": "assistant", "content": text} for text in output_texts(response))
        messages.extend(request.input)
        return messages

    def put(self, response: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        self._items[response["id"]] = (response, messages)
        self._items.move_to_end(response["id"])
        while len(self._items) > self._max:
            self._items.popitem(last=False)


def output_texts(response: Mapping[str, Any]) -> list[str]:
    """The text of each output message of a Responses API response."""
    texts = []
    for item in response.get("output") or []:
        if isinstance(item, Mapping) and item.get("type") == "message":
            texts.append(content_text(item.get("content")))
    return texts


@dataclass(frozen=True, slots=True)
class PlannedResponse:
    """One response to produce: its id, the conversation it answers and the answer's pieces."""

    request: ResponsesRequest
    messages: list[dict[str, Any]]
    pieces: list[str]
    truncated: bool
    response_id: str
    message_id: str
    created_at: int

    def body(self, status: str, text: str | None = None) -> dict[str, Any]:
        """The ``response`` object; ``text`` None means the whole answer."""
        done = status != "in_progress"
        output_text = "".join(self.pieces) if text is None else text
        input_tokens = sum(len(m["content"].split()) for m in self.messages)
        output_tokens = len(self.pieces) if done else 0
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "model": self.request.model,
            "status": status,
            "instructions": self.request.instructions,
            "previous_response_id": self.request.previous_response_id,
            "max_output_tokens": self.request.max_output_tokens,
            "output": [self.message(output_text)] if done else [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "store": self.request.store,
            "temperature": 1.0,
            "top_p": 1.0,
            "truncation": "disabled",
            "text": {"format": {"type": "text"}},
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "metadata": {},
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            }
            if done
            else None,
        }

    @property
    def final_status(self) -> str:
        return "incomplete" if self.truncated else "completed"

    def message(self, text: str, status: str = "completed") -> dict[str, Any]:
        return {
            "type": "message",
            "id": self.message_id,
            "role": "assistant",
            "status": status,
            "content": [self.part(text)],
        }

    @staticmethod
    def part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": []}


def plan_response(request: ResponsesRequest, store: ResponseStore, words: int) -> PlannedResponse:
    """Build the conversation (raises ``ResponseNotFound``) and the answer to it."""
    messages = store.conversation(request)
    pieces = answer_pieces(messages, words)
    truncated = request.max_output_tokens is not None and request.max_output_tokens < len(pieces)
    if truncated:
        pieces = pieces[: request.max_output_tokens]
    return PlannedResponse(
        request=request,
        messages=messages,
        pieces=pieces,
        truncated=truncated,
        response_id=f"resp_{uuid.uuid4().hex}",
        message_id=f"msg_{uuid.uuid4().hex}",
        created_at=int(time.time()),
    )


class StreamEvents:
    """The Responses API's named SSE events for one planned response, numbered in order."""

    def __init__(self, planned: PlannedResponse) -> None:
        self.planned = planned
        self._sequence = 0

    def _event(self, kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return kind, payload

    def opening(self) -> list[tuple[str, dict[str, Any]]]:
        planned = self.planned
        return [
            self._event("response.created", response=planned.body("in_progress")),
            self._event("response.in_progress", response=planned.body("in_progress")),
            self._event(
                "response.output_item.added",
                output_index=0,
                item={**planned.message("", "in_progress"), "content": []},
            ),
            self._event(
                "response.content_part.added",
                output_index=0,
                item_id=planned.message_id,
                content_index=0,
                part=planned.part(""),
            ),
        ]

    def delta(self, piece: str) -> tuple[str, dict[str, Any]]:
        return self._event(
            "response.output_text.delta",
            output_index=0,
            item_id=self.planned.message_id,
            content_index=0,
            delta=piece,
            logprobs=[],
        )

    def closing(self) -> list[tuple[str, dict[str, Any]]]:
        planned = self.planned
        text = "".join(planned.pieces)
        return [
            self._event(
                "response.output_text.done",
                output_index=0,
                item_id=planned.message_id,
                content_index=0,
                text=text,
                logprobs=[],
            ),
            self._event(
                "response.content_part.done",
                output_index=0,
                item_id=planned.message_id,
                content_index=0,
                part=planned.part(text),
            ),
            self._event("response.output_item.done", output_index=0, item=planned.message(text)),
            self._event(
                "response.completed" if not planned.truncated else "response.incomplete",
                response=planned.body(planned.final_status),
            ),
        ]


async def write_response_stream(
    response: web.StreamResponse,
    planned: PlannedResponse,
    tokens_per_s: float,
    dropped: Dropped,
) -> None:
    """Stream a planned response as named SSE events, one delta per piece, paced.

    Returns early, without the closing events, when ``dropped`` says the node cut the stream.
    """
    events = StreamEvents(planned)

    async def send(event: tuple[str, dict[str, Any]]) -> None:
        kind, payload = event
        await response.write(f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode())

    for event in events.opening():
        await send(event)
    pacer = Pacer(tokens_per_s)
    for sent, piece in enumerate(planned.pieces):
        if await dropped(sent):
            return
        await pacer.until(sent + 1)
        await send(events.delta(piece))
    if await dropped(len(planned.pieces)):
        return
    for event in events.closing():
        await send(event)

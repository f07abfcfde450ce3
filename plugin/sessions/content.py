"""Messages as the store keeps them: a role and one text, plus the text's hash.

Chat messages, Responses API input items and both APIs' answers come in many shapes (a string,
content parts, tool calls, pydantic objects). The store keeps one text per message so a
conversation can be rebuilt and compared: plain text stays text (text-only content parts are
joined with newlines, the way vLLM's chat templates join them), anything structured becomes its
canonical JSON (sorted keys, no spaces), which is also what gets hashed. ``to_input_item`` turns
a stored message back into a Responses API input item.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from litellm_failover.store.history import ROOT_HASH, chain_hash

__all__ = ["ROOT_HASH", "chain_hash"]  # the history chain, also used by the store writer

MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


@dataclass(frozen=True, slots=True)
class Item:
    """One message of a conversation: a message role, or a Responses item type
    (``function_call``, ``function_call_output``...) whose text is the item's canonical JSON."""

    role: str
    text: str


def plain(value: Any) -> Any:
    """LiteLLM and openai objects as plain JSON values (pydantic models dumped, None fields kept
    out so an SDK-added null does not change a hash)."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(exclude_none=True)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def content_text(content: Any) -> str:
    """A message content as stored: text as is, text-only parts joined, anything else as JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = plain(content)
    if isinstance(parts, list) and all(
        isinstance(p, Mapping) and p.get("type") in _TEXT_PARTS and isinstance(p.get("text"), str)
        for p in parts
    ):
        return "\n".join(p["text"] for p in parts)
    return canonical_json(parts)


def chat_item(message: Any) -> Item:
    message = plain(message)
    if not isinstance(message, Mapping):
        return Item("user", content_text(message))
    role = str(message.get("role") or "user")
    extras = {k: message[k] for k in ("tool_calls", "function_call") if message.get(k)}
    if extras:
        # A tool-calling turn is its calls as much as its text: keep both, as one JSON object.
        # No text is null however a client writes it ("" or null): one answer, one hash.
        return Item(role, canonical_json({"content": message.get("content") or None, **extras}))
    return Item(role, content_text(message.get("content")))


def chat_items(messages: Sequence[Any] | None) -> list[Item]:
    return [chat_item(m) for m in messages or ()]


def responses_items(raw_input: Any, instructions: Any = None) -> list[Item]:
    """A Responses API request's ``input`` (and ``instructions``) as conversation items."""
    items: list[Item] = []
    if isinstance(instructions, str) and instructions:
        items.append(Item("system", instructions))
    if isinstance(raw_input, str):
        items.append(Item("user", raw_input))
        return items
    for entry in plain(raw_input) or ():
        if isinstance(entry, Mapping) and entry.get("role") and entry.get("type", "message") == "message":
            items.append(Item(str(entry["role"]), content_text(entry.get("content"))))
        elif isinstance(entry, Mapping):
            items.append(Item(str(entry.get("type") or "item"), canonical_json(entry)))
        else:
            items.append(Item("user", content_text(entry)))
    return items


def chat_answer(response: Any) -> list[Item]:
    choices = getattr(response, "choices", None) or []
    if not choices:
        return []
    message = getattr(choices[0], "message", None)
    if message is None:
        return []
    return [chat_item(message)]


def responses_answer(response: Any) -> list[Item]:
    """The output of a Responses API answer: message text, and other items (function calls) as
    JSON. Reasoning items are left out, as vLLM leaves them out when it continues a response."""
    items: list[Item] = []
    for entry in plain(getattr(response, "output", None)) or ():
        if not isinstance(entry, Mapping) or entry.get("type") == "reasoning":
            continue
        if entry.get("type") == "message":
            items.append(Item(str(entry.get("role") or "assistant"), content_text(entry.get("content"))))
        else:
            items.append(Item(str(entry.get("type") or "item"), canonical_json(entry)))
    return items


def to_input_item(role: str, text: str) -> dict[str, Any]:
    """A stored message back as a Responses API input item, for a rebuilt conversation."""
    if role not in MESSAGE_ROLES:
        try:
            item = json.loads(text)
        except ValueError:
            item = None
        if isinstance(item, dict):
            return item
        return {"role": "user", "content": text}
    return {"role": role, "content": _parts_or_text(text)}


def _parts_or_text(text: str) -> Any:
    """Structured content was stored as a JSON list of typed parts: send it back as parts."""
    if text.startswith("[{") and text.endswith("}]"):
        try:
            parts = json.loads(text)
        except ValueError:
            return text
        if isinstance(parts, list) and all(isinstance(p, dict) and "type" in p for p in parts):
            return parts
    return text

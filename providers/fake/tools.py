"""The fake vLLM's tool calls: which requests get one, and how it goes on the wire.

A vLLM started with ``--enable-auto-tool-choice`` and a tool parser (hermes, llama3_json...)
answers a request that offers ``tools`` with calls when the model writes them. Here the model
"decides" deterministically: a request whose last message is the user's, offering function tools
(``tool_choice`` not ``"none"``), gets one call per offered tool (the named one under a named
``tool_choice``; the first only with ``parallel_tool_calls: false``; at most ``MAX_CALLS``). A
request whose last message is a tool result gets a text answer, as a model would once it has
the result.

The wire format is vLLM's streaming tool parsers': the first delta of a call carries its
``index``, ``id`` (``chatcmpl-tool-<32 hex>``), ``type`` and ``function.name``; the next ones
carry only the ``index`` and a fragment of ``function.arguments``; the finish reason is
``tool_calls``. A whole answer has ``content: null`` and the calls in ``message.tool_calls``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from litellm_failover.providers.fake.text import RequestError, answer_pieces

MAX_CALLS = 2
ARGUMENT_WORDS = 4  # words in each call's one argument: one argument fragment each


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One tool call of an answer: its arguments' JSON text in the fragments it streams in."""

    id: str
    name: str
    fragments: tuple[str, ...]

    @property
    def arguments(self) -> str:
        return "".join(self.fragments)

    def message(self) -> dict[str, Any]:
        """The call as a whole answer's ``message.tool_calls`` entry."""
        function = {"name": self.name, "arguments": self.arguments}
        return {"id": self.id, "type": "function", "function": function}

    def deltas(self, index: int) -> list[dict[str, Any]]:
        """The call's stream deltas (each one chunk's ``delta.tool_calls`` entry)."""
        head = {"id": self.id, "type": "function", "index": index, "function": {"name": self.name}}
        return [head, *({"index": index, "function": {"arguments": f}} for f in self.fragments)]


def parse_tools(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of the function tools a request lets the model call, checked as vLLM checks
    ``tools`` and ``tool_choice``; () when it offers none or says ``tool_choice: "none"``."""
    raw = body.get("tools")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RequestError("'tools' must be a list", "tools")
    names: list[str] = []
    for index, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name or tool.get("type") != "function":
            raise RequestError(f"tools[{index}] must be a function tool with a non-empty name", "tools")
        names.append(name)
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "required"):
        pass
    elif choice == "none":
        return ()
    else:
        function = choice.get("function") if isinstance(choice, dict) else None
        named = function.get("name") if isinstance(function, dict) else None
        if named not in names:
            message = "'tool_choice' must be auto, none, required or one of the tools"
            raise RequestError(message, "tool_choice")
        return (str(named),)
    if body.get("parallel_tool_calls") is False:
        return tuple(names[:1])
    return tuple(names[:MAX_CALLS])


def plan_calls(tools: Sequence[str], messages: Sequence[Mapping[str, Any]], choice: int) -> list[PlannedCall]:
    """The calls answering ``messages`` (none unless the user spoke last); arguments are
    deterministic per conversation, tool and choice, ids random as vLLM's are."""
    if not tools or messages[-1].get("role") != "user":
        return []
    calls = []
    for name in tools:
        seed = [*messages, {"role": "tool", "content": f"{name} {choice}"}]
        words = "".join(answer_pieces(seed, ARGUMENT_WORDS))
        text = json.dumps({"query": words})
        # Streamed as a parser sends it: the key, the value word by word, the closing quote.
        opening, rest = text[: text.index(": ") + 3], text[text.index(": ") + 3 : -2]
        pieces = [opening, *_split_words(rest), text[-2:]]
        calls.append(PlannedCall(f"chatcmpl-tool-{uuid.uuid4().hex}", name, tuple(pieces)))
    return calls


def _split_words(text: str) -> list[str]:
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)]

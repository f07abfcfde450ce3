"""A chat stream's answer as the client assembles it from the chunks, for the request's session.

With LiteLLM's ``turn_off_message_logging`` on, the answer LiteLLM logs has its text replaced by
a placeholder: a session that recorded it would store the placeholder's hash, and the next turn
(whose history holds the real answer) would not match it. So the answer is taken from the chunks
the client gets, assembled the way OpenAI clients assemble them:

- the text: the stream's own (``ResumingStream`` keeps it, stitched across continuations);
- tool calls: per ``index``, the ``id``, ``type`` and ``function.name`` (each sent once; LiteLLM
  repeats ``type`` on every delta) and the ``function.arguments`` fragments concatenated;
- with ``n`` > 1, choice 0 only, as a whole answer records choice 0 (``content.chat_answer``):
  the plugin cannot know which choice the next turn continues, and keeping every choice (or
  holding them until a next turn that may never come, or comes to another replica) would store
  or hold text no turn uses. A next turn that continues another choice is stored as a branch,
  as an edited turn is.

The assembled message is hashed like the whole answer's message (``content.chat_item``), so the
stored hash is the one the next turn's copy of it has.

The chunks are upstream input: sizes are bounded, and a delta that cannot be assembled (a bad
index, a second id for one call, a legacy ``function_call``, too much text) makes the capture give
up for that answer, never the client's stream: the session then records LiteLLM's logged copy,
and the reason (no content) is logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from litellm_failover.sessions.content import Item, chat_item
from litellm_failover.streams.chunks import Reading

MAX_TOOL_CALLS = 128  # per answer
MAX_FIELD_CHARS = 1024  # a call's id, type or name
MAX_CAPTURED_CHARS = 4_000_000  # arguments (and choice 0's text when n > 1) together


class GiveUp(Exception):
    """A delta the capture cannot take; the message says why, never with the delta's content."""


@dataclass(slots=True)
class _Call:
    id: str | None = None
    type: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


class AnswerCapture:
    """Fed every chunk of one client stream (``whole``), in order; says when the answer is whole."""

    def __init__(self, choices: int = 1) -> None:
        self._several = choices > 1  # choice 0's text is then assembled here (the stream's mixes them)
        self._choices = choices
        self._text: list[str] = []
        self._calls: dict[int, _Call] = {}
        self._chars = 0
        self._done = False
        self.failed: str | None = None  # why the answer is not captured

    def whole(self, chunk: Any, seen: Reading) -> bool:
        """Take the chunk; True once: on the chunk that ends choice 0's answer (after taking
        it), or on the first one the capture gives up on (``failed`` then says why)."""
        if self._done:
            return False
        if seen.tool_calls or self._several:
            try:
                finished = self._take(chunk)
            except GiveUp as exc:
                finished, self.failed = True, str(exc)
            except Exception as exc:  # a delta of an unexpected shape: never the client's problem
                finished, self.failed = True, f"an unreadable delta ({type(exc).__name__})"
        else:
            finished = seen.finish_reason is not None  # the hot path: text, nothing to assemble
        self._done = finished
        return finished

    def answer(self, sent: Sequence[str]) -> list[Item] | None:
        """Choice 0's message as the client has it (``sent``: the stream's text, for n == 1);
        None when the capture gave up (``failed`` says why)."""
        if self.failed is not None:
            return None
        calls = [self._calls[index] for index in range(len(self._calls))]  # indexes come in order
        if any(not call.id or not call.name for call in calls):
            self.failed = "a tool call without an id or a name"
            return None
        text = "".join(self._text if self._several else sent)
        if not calls:
            return [Item("assistant", text)]
        tool_calls = [
            {
                "id": call.id,
                "type": call.type or "function",
                "function": {"name": call.name, "arguments": "".join(call.arguments)},
            }
            for call in calls
        ]
        # No text beside the calls is ``content: null``, as in a whole answer (and as LiteLLM
        # assembles it); ``chat_item`` hashes a client's ``""`` the same.
        return [chat_item({"role": "assistant", "content": text or None, "tool_calls": tool_calls})]

    # -- assembling -----------------------------------------------------------------------

    def _take(self, chunk: Any) -> bool:
        finished = False
        for choice in getattr(chunk, "choices", None) or ():
            index = _get(choice, "index")
            if self._several and not (_is_int(index) and 0 <= index < self._choices):
                raise GiveUp(f"a choice index out of range 0..{self._choices - 1}")
            if self._several and index != 0:
                continue
            delta = _get(choice, "delta")
            if delta is not None:
                if _get(delta, "function_call") is not None:
                    raise GiveUp("a legacy function_call delta (not assembled)")
                if self._several:
                    self._add_text(_get(delta, "content"))
                for entry in _get(delta, "tool_calls") or ():
                    self._add_call(entry)
            finished = finished or _get(choice, "finish_reason") is not None
        return finished

    def _add_text(self, content: Any) -> None:
        self._add(self._text, content, "a delta's content")

    def _add_call(self, entry: Any) -> None:
        index = _get(entry, "index")
        if not _is_int(index) or not 0 <= index < MAX_TOOL_CALLS:
            raise GiveUp(f"a tool call index that is not an integer in 0..{MAX_TOOL_CALLS - 1}")
        call = self._calls.get(index)
        if call is None:
            if index != len(self._calls):
                raise GiveUp(f"tool call {index} before tool call {len(self._calls)}")
            call = self._calls[index] = _Call()
        call.id = _once(call.id, _get(entry, "id"), f"tool call {index}'s id")
        call.type = _once(call.type, _get(entry, "type"), f"tool call {index}'s type")
        if call.type not in (None, "function"):
            raise GiveUp(f"tool call {index} is not a function call")
        function = _get(entry, "function")
        if function is None:
            return
        call.name = _once(call.name, _get(function, "name"), f"tool call {index}'s name")
        self._add(call.arguments, _get(function, "arguments"), f"tool call {index}'s arguments")

    def _add(self, parts: list[str], fragment: Any, what: str) -> None:
        """A text fragment onto ``parts``, within the capture's bound on what it holds."""
        if fragment is None or fragment == "":
            return
        if not isinstance(fragment, str):
            raise GiveUp(f"{what} of type {type(fragment).__name__}")
        self._chars += len(fragment)
        if self._chars > MAX_CAPTURED_CHARS:
            raise GiveUp(f"more than {MAX_CAPTURED_CHARS} characters to assemble")
        parts.append(fragment)


def _get(value: Any, name: str) -> Any:
    """A field of a LiteLLM object or of a plain dict (the proxy may hand over either)."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _once(held: str | None, value: Any, what: str) -> str | None:
    """A field sent once per call (a repeat of the same value is harmless, another is not)."""
    if value is None or value == "":
        return held
    if not isinstance(value, str) or len(value) > MAX_FIELD_CHARS:
        raise GiveUp(f"{what} is not a string of at most {MAX_FIELD_CHARS} characters")
    if held is not None and held != value:
        raise GiveUp(f"{what} changed mid-stream")
    return value

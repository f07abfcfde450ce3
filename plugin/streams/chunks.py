"""Reading and re-stamping LiteLLM stream chunks (``ModelResponseStream``), with no I/O.

The resuming stream hands the client chunks from several upstream streams; what makes them one
stream is here: every chunk carries the first one's ``id``, ``created`` and ``model``, a
continuation's opening role chunk is not repeated, and the one usage chunk sums every part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices, Usage


@dataclass(frozen=True, slots=True)
class Reading:
    """What one chunk says, read once: each attribute of LiteLLM's ``Delta`` and choice costs
    most of a microsecond to read, and a stream hands over hundreds of chunks a second."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    opening: bool = False  # the assistant role and nothing else: a stream's first chunk
    tool_calls: bool = False
    bare: bool = False  # no choices: with usage, the stream's final usage chunk

    @property
    def final_usage(self) -> bool:
        return self.bare and self.usage is not None


def read(chunk: Any) -> Reading:
    """What the chunk's first choice says. LiteLLM and the engines send one choice a chunk, with
    ``n`` > 1 too (each chunk one choice's, the choices taking turns), so that is the chunk's choice,
    whichever its index: its text goes into the stream's (every choice's, mixed: harmless, as a
    stream of several choices is never continued) and its finish reason is the first of the
    stream's for ``ResumingStream`` (``Choices`` keeps them by choice)."""
    usage = _usage(chunk)
    choices = getattr(chunk, "choices", None)
    if not choices:
        return Reading(usage=usage, bare=True)
    choice = choices[0]
    reason = getattr(choice, "finish_reason", None) or None
    delta = getattr(choice, "delta", None)
    content = getattr(delta, "content", None) if delta is not None else None
    tool_calls = delta is not None and _calls(delta)
    if content:  # text: not an opening, but maybe beside a tool call (LiteLLM's Gemini chunks)
        return Reading(text=str(content), finish_reason=reason, usage=usage, tool_calls=tool_calls)
    opening = (
        delta is not None
        and not tool_calls
        and reason is None
        and usage is None
        and getattr(delta, "role", None) is not None
    )
    return Reading(finish_reason=reason, usage=usage, opening=opening, tool_calls=tool_calls)


def _calls(delta: Any) -> bool:
    """Whether a delta carries a tool call (or a legacy function call). LiteLLM's ``Delta`` keeps
    both as pydantic extras: read from that dict, as ``_usage`` does, since this runs on every
    chunk and pydantic's attribute lookup costs a microsecond or more each."""
    extra = getattr(delta, "__pydantic_extra__", None)
    if isinstance(extra, dict) and "tool_calls" in extra and "function_call" in extra:
        return bool(extra["tool_calls"] or extra["function_call"])
    return bool(getattr(delta, "tool_calls", None) or getattr(delta, "function_call", None))


def _usage(chunk: Any) -> Usage | None:
    # LiteLLM keeps a chunk's usage as a pydantic extra; reading a missing one through getattr
    # raises and catches inside pydantic, which costs more than all the other reads together.
    extra = getattr(chunk, "__pydantic_extra__", None)
    usage = extra.get("usage") if isinstance(extra, dict) else getattr(chunk, "usage", None)
    return usage if isinstance(usage, Usage) else None


def recorded_usage(stream: Any) -> Usage | None:
    """The running count of the chunk ``stream`` handed on last, where LiteLLM keeps it.

    LiteLLM takes the usage off every chunk it hands on, after keeping a copy with it in its
    record of the stream (``CustomStreamWrapper.chunks``), so an engine's running count
    (``continuous_usage_stats``) is read from the record's last entry. A stream without that
    record has none.
    """
    recorded = getattr(stream, "chunks", None)
    return _usage(recorded[-1]) if isinstance(recorded, list) and recorded else None


def drop_usage(chunk: Any) -> None:
    """Take a running count off a chunk the client gets (it asked for one usage chunk at most)."""
    extra = getattr(chunk, "__pydantic_extra__", None)
    if isinstance(extra, dict):
        extra.pop("usage", None)
    else:
        chunk.usage = None


def delta_text(chunk: Any) -> str:
    return read(chunk).text


def finish_reason(chunk: Any) -> str | None:
    return read(chunk).finish_reason


def strip_prefix(chunk: Any, pending: str) -> str:
    """Drop from the chunk's text the part of ``pending`` (text the client already has) it starts
    with; return what is still pending. A mismatch ends the skipping: nothing is dropped that
    the client does not already have."""
    text = delta_text(chunk)
    matched = 0
    while matched < len(text) and matched < len(pending) and text[matched] == pending[matched]:
        matched += 1
    if matched:
        chunk.choices[0].delta.content = text[matched:]
    if matched < len(text):
        return ""  # the text went its own way (or the prefix is used up): stop skipping
    return pending[matched:]


class Choices:
    """A stream's choices by index, for what ``read`` cannot say of one chunk alone.

    Openings: the client gets one role-only opening chunk per choice. A continuation's (or
    LiteLLM's own pre-content fallback's) opening repeats choice 0's and is dropped; with ``n`` > 1
    the first opening of choices 1..n-1 is theirs and passes. (LiteLLM's stream wrapper, up to
    1.110 at least, itself drops those: it passes a role-only chunk only as a stream's first.)

    Finishes (``n`` > 1 only): an answer is complete once every choice has finished, not at the
    first finish reason, which is choice 0's when it ends before the others (``complete``).
    """

    __slots__ = ("finished", "n", "opened")

    def __init__(self, n: int) -> None:
        self.n = n
        self.opened = {0}  # the stream's first chunk is choice 0's opening, whatever it carries
        self.finished: set[int] = set()

    def repeated_opening(self, chunk: Any) -> bool:
        """Whether an opening chunk (``Reading.opening``) after the stream's first repeats its
        choice's opening, which the client already has; the first of its choice is recorded."""
        index = _index(chunk.choices[0])
        if index in self.opened:
            return True
        if 0 <= index < self.n:
            self.opened.add(index)
        return False

    def take(self, chunk: Any) -> None:
        """Record the finish reasons a chunk carries (every choice of it; nothing for ``n`` = 1,
        where ``read``'s is the answer's)."""
        if self.n == 1:
            return
        for choice in getattr(chunk, "choices", None) or ():
            index = _index(choice)
            if getattr(choice, "finish_reason", None) and 0 <= index < self.n:
                self.finished.add(index)

    def complete(self, finished: bool) -> bool:
        """Whether an answer that broke now was complete: its finish reason came (``finished``)
        and, with ``n`` > 1, every choice's.

        LiteLLM's stream wrapper (1.108 to 1.110) passes on only the stream's first finish reason
        (choice 0's) and drops those of choices 1..n-1, so with ``n`` > 1 a stream that raises or
        stalls after it is a break (``StreamBrokenError``), never a quiet end with the other
        choices cut short. A node dropping the connection after choice 0's finish is not seen at
        all: LiteLLM takes a read error after a finish reason for the stream's end and ends it
        (``CustomStreamWrapper.__anext__``), as the ``[DONE]`` of a whole answer would.
        """
        return finished and (self.n == 1 or len(self.finished) == self.n)


def _index(choice: Any) -> int:
    index = getattr(choice, "index", 0)
    return index if isinstance(index, int) and not isinstance(index, bool) else -1


@dataclass(frozen=True, slots=True)
class Stamp:
    """The identity of the client's stream, taken from its first chunk."""

    id: str
    created: int
    model: str | None

    @classmethod
    def of(cls, chunk: Any) -> Stamp:
        return cls(id=str(chunk.id), created=int(chunk.created), model=getattr(chunk, "model", None))

    def apply(self, chunk: Any) -> None:
        if chunk.id != self.id:
            chunk.id = self.id
        if chunk.created != self.created:
            chunk.created = self.created
        if self.model is not None and getattr(chunk, "model", None) != self.model:
            chunk.model = self.model

    def finish_chunk(self, reason: str) -> ModelResponseStream:
        choice = StreamingChoices(index=0, delta=Delta(), finish_reason=reason)
        return ModelResponseStream(id=self.id, created=self.created, model=self.model, choices=[choice])

    def usage_chunk(self, usage: Usage) -> ModelResponseStream:
        return ModelResponseStream(
            id=self.id, created=self.created, model=self.model, choices=[], usage=usage
        )


def served_by(stream: Any) -> str | None:
    """The deployment a LiteLLM stream comes from, as LiteLLM records it (its hidden params
    follow LiteLLM's own pre-content fallback to another deployment)."""
    hidden = getattr(stream, "_hidden_params", None)
    model_id = hidden.get("model_id") if isinstance(hidden, dict) else None
    return str(model_id) if model_id else None


def provider_finished(stream: Any, chunk: Any) -> bool:
    """Whether a chunk with a ``finish_reason`` is the provider's, not LiteLLM's stand-in.

    When an upstream ends with neither a finish reason nor ``[DONE]`` (a clean close mid-answer),
    LiteLLM's ``CustomStreamWrapper`` makes up a ``finish_reason: "stop"`` chunk: truncation
    presented as success. It records the chunks it assembles the logged answer from, and keeps
    that stand-in out of them, which is the one way to tell the two apart from outside. A stream
    without that record (not a LiteLLM wrapper) is taken at its word.

    A chunk that came with usage (an engine's running count) is recorded as a copy, the usage
    still on it, and handed on without: a recorded finish reason is the provider's either way.
    """
    recorded = getattr(stream, "chunks", None)
    if not isinstance(recorded, list):
        return True
    return any(seen is chunk or finish_reason(seen) for seen in recorded[-3:])

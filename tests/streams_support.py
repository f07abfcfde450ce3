"""What a client saw of one stream, and servers that break streams in ways the fake vLLM's faults
do not: shared by the mid-stream failover tests on the Router and the proxy.

LiteLLM's chunks and the openai SDK's have the same shape (``id``, ``choices[0].delta.content``,
``choices[0].finish_reason``, ``usage``, ``system_fingerprint``), so one reader serves both.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from litellm_failover.providers.fake.text import answer_pieces
from litellm_failover.providers.fake.vllm import FakeVLLM

QUESTION = [{"role": "user", "content": "tell me about failover, at length"}]


@dataclass
class Seen:
    """Everything one client stream delivered, in order."""

    chunks: list[Any] = field(default_factory=list)
    text: str = ""
    error: BaseException | None = None
    arrived: list[float] = field(default_factory=list)

    @property
    def ids(self) -> set[str]:
        return {chunk.id for chunk in self.chunks}

    @property
    def usages(self) -> list[Any]:
        return [chunk.usage for chunk in self.chunks if getattr(chunk, "usage", None)]

    @property
    def finish_reasons(self) -> list[str]:
        return [c.choices[0].finish_reason for c in self.chunks if c.choices and c.choices[0].finish_reason]

    @property
    def served_by(self) -> list[str]:
        """The nodes that sent text, in order, each once (from ``system_fingerprint``)."""
        names: list[str] = []
        for chunk in self.chunks:
            if chunk.choices and chunk.choices[0].delta.content and chunk.system_fingerprint:
                if not names or names[-1] != chunk.system_fingerprint:
                    names.append(chunk.system_fingerprint)
        return names

    def assert_one_unbroken_answer(self, expected: str, *, words: int, usage: bool = True) -> None:
        """The client's view of a rescued stream: the whole answer once, one id, one finish, and
        (when asked for) one final usage chunk counting every word of the answer."""
        assert self.error is None, f"the client saw an error: {self.error!r}"
        assert self.text == expected
        assert len(self.ids) == 1, f"more than one stream id: {self.ids}"
        assert self.finish_reasons == ["stop"]
        if usage:
            assert len(self.usages) == 1 and getattr(self.chunks[-1], "usage", None) is not None
            assert self.usages[0].completion_tokens == words
            assert self.usages[0].total_tokens == self.usages[0].prompt_tokens + words
        else:
            assert self.usages == []


async def read_stream(stream: Any, *, on_chunk: Any = None) -> Seen:
    """Read a stream to its end (or its error); ``on_chunk(seen)`` runs after each chunk."""
    seen = Seen()
    try:
        async for chunk in stream:
            seen.chunks.append(chunk)
            seen.arrived.append(time.monotonic())
            if chunk.choices and chunk.choices[0].delta.content:
                seen.text += chunk.choices[0].delta.content
            if on_chunk is not None:
                on_chunk(seen)
    except Exception as exc:
        seen.error = exc
    return seen


def prefix(words: int, messages: list[dict[str, str]] = QUESTION) -> str:
    """The first ``words`` pieces of the answer: what a node that drops after them has sent."""
    return "".join(answer_pieces(messages)[:words])


class ClosingVLLM(FakeVLLM):
    """Under ``drop_midstream`` it ends the response cleanly where the fake vLLM aborts: no finish
    reason, no ``[DONE]``, a proper end of the chunked body. LiteLLM then makes up a
    ``finish_reason: "stop"``, and the truncated answer would pass for a complete one."""

    async def _dropped(self, request: web.Request, sent: int) -> bool:
        fault = self.fault
        return fault is not None and fault.mode == "drop_midstream" and sent >= fault.params["after_chunks"]


class AtWords:
    """An ``on_chunk`` for ``read_stream`` that runs ``action`` once, as soon as the client has
    ``words`` words; ``chars`` is how much text it had then (None: it never ran)."""

    def __init__(self, words: int, action: Callable[[], object]) -> None:
        self.words = words
        self.action = action
        self.chars: int | None = None

    def __call__(self, seen: Seen) -> None:
        if self.chars is None and len(seen.text.split()) >= self.words:
            self.chars = len(seen.text)
            self.action()


class Frozen:
    """SIGSTOP a node process (a hung GPU node: the socket stays open, nothing comes), SIGCONT on
    exit; use it as ``with Frozen(pid) as freeze: ... freeze()``."""

    def __init__(self, pid: int | None) -> None:
        assert pid is not None
        self.pid = pid
        self.frozen = False

    def __call__(self) -> None:
        if not self.frozen:
            os.kill(self.pid, signal.SIGSTOP)
            self.frozen = True

    def __enter__(self) -> Frozen:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.frozen:
            os.kill(self.pid, signal.SIGCONT)
            self.frozen = False

"""The tokens of a stitched stream (issue 12): what each part generated, and the usage it adds up to.

A continuation's ``max_tokens`` is the client's limit less the tokens of the text it goes on
from, and the client's one usage chunk counts the stitched answer. Neither can be read off the
chunks: speculative decoding and a stream interval put several tokens in one chunk, a detokenizer
holding back an incomplete character sends chunks with no text (LiteLLM drops those).

- Engines that count as they go (vLLM and SGLang, ``ProviderAdapter.running_usage``) are asked
  for usage on every chunk (``ask_running_usage``, from the deployment hook, once the deployment
  is known). LiteLLM moves a chunk's usage out of the chunk it hands on into its record of the
  stream (``CustomStreamWrapper.chunks``), where ``chunks.recorded_usage`` reads it. Each part
  keeps a ``Tally``: its text after every chunk against the count then. The client sees none of
  it: only the final usage chunk, and only when it asked for one (``stream_options.include_usage``).
- A continuation that cuts the text back (``providers.retokenize``) writes the cut-off tail
  again. Its ``max_tokens`` must leave out the tokens of the kept text only, which the running
  count tells exactly at a chunk boundary: the resumer lets the rule cut only there
  (``counted_points``), and elsewhere (a part with no count) counts the kept text on the safe
  side. The stitched answer's tokens are then where the last part started plus all it generated:
  the tail written again counts once.
- Where no engine count exists (hosted APIs report usage at the end only, and a part that broke
  never got there; TGI has no running count but streams one event per token), a part is
  estimated as the larger of its text chunks (every one carries at least one token) and the
  deployment tokenizer's count of its text. Neither is a bound: an over-count is the safe side of
  the client's limit (the continuation stops early, with ``length``), an under-count would let the
  stitched answer run past it, so the larger is taken.

The stitched usage is the first part's prompt plus the stitched answer's completion tokens. A
continuation's prompt (the question again, and the answer so far) is the plugin's cost of
repairing the stream, not the client's request: LiteLLM logs it with that call's own usage and
spend, and the client's usage stays what the uninterrupted answer would have reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import litellm
from litellm.types.utils import Usage

from litellm_failover.streams.tally import completion_tokens

if TYPE_CHECKING:
    from litellm_failover.streams.resume import Part

# Where a part's token count came from (the ``stream_resumed`` event's ``tokens_source``).
ENGINE = "engine_usage"  # the engine's own running (or final) count
CHUNKS = "chunk_count"  # its text chunks, one token at least each
ESTIMATE = "litellm_estimate"  # LiteLLM's tokenizer count of its text


def with_running_usage(kwargs: dict[str, Any], options: Mapping[str, Any]) -> bool:
    """Merge ``options`` into the request's ``stream_options``; False when they were there already.

    A new dict, never the client's own in place: the proxy and the Router read the client's
    ``stream_options`` again (whether it asked for usage) after this attempt's kwargs are built.
    """
    current = kwargs.get("stream_options")
    current = current if isinstance(current, Mapping) else {}
    if all(current.get(key) == value for key, value in options.items()):
        return False
    kwargs["stream_options"] = {**current, **options}
    return True


def stitched_usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def holding(parts: Sequence[Part], at: int) -> Part:
    """The part that generated the stitched answer's text up to ``at``: the last one whose
    span reaches it (a later part that broke early may start before ``at`` and stop short)."""
    for part in reversed(parts):
        if part.tally.start <= at <= part.tally.reach:
            return part
    return parts[0]


def counted_points(parts: Sequence[Part]) -> Callable[[int], bool]:
    """Where a continuation may start so that the tokens before it are known: a part's start, or
    a chunk boundary with the engine's count; anywhere in a part that has no count."""

    def accept(at: int) -> bool:
        tally = holding(parts, at).tally
        return at == tally.start or not tally.counted or tally.count_at(at - tally.start) is not None

    return accept


def stitched_text(parts: Sequence[Part]) -> str:
    return "".join(text for part in parts for text in part.texts)


class TokenCounter:
    """Counts a part's tokens: the engine's count when one came, else the estimate above."""

    def __init__(self, models: Mapping[str, str]) -> None:
        self._models = dict(models)  # deployment id -> LiteLLM model, for its tokenizer

    def track(self, models: Mapping[str, str], removed: Iterable[str] = ()) -> None:
        for dep_id in removed:
            self._models.pop(dep_id, None)
        self._models.update(models)

    async def generated(self, part: Part, text: str | None = None) -> int:
        """The completion tokens ``part`` generated for ``text`` (by default the text the
        client got of it)."""
        return (await self.counted(part, text))[0]

    async def counted(self, part: Part, text: str | None = None) -> tuple[int, str]:
        """``generated``, and where the count came from (``ENGINE``, ``CHUNKS``, ``ESTIMATE``)."""
        counted = completion_tokens(part.usage)
        if counted is not None:
            return counted, ENGINE
        chunks = max(part.content_chunks, len(part.tally.chars))
        text = "".join(part.texts) if text is None else text
        if not text:
            return chunks, CHUNKS
        estimate = await asyncio.to_thread(self._count, part.deployment, text=text)
        return (chunks, CHUNKS) if chunks >= estimate else (estimate, ESTIMATE)

    async def tokens_at(self, parts: Sequence[Part], at: int) -> int:
        """Tokens of the stitched answer's first ``at`` characters: exact at a counted point
        (``counted_points``), else never fewer than there are (the safe side of a limit)."""
        part = holding(parts, at)
        tally = part.tally
        own = at - tally.start
        if own <= 0:
            return tally.base
        past = tally.count_past(own)
        if past is not None:
            return tally.base + past
        text = stitched_text(parts)[tally.start : at]
        estimate = await asyncio.to_thread(self._count, part.deployment, text=text) if text else 0
        return tally.base + max(tally.chunks_before(own), estimate)

    async def answer_tokens(self, parts: Sequence[Part]) -> int:
        """Completion tokens of the stitched answer: where the last part started, plus what it
        generated (the tail it wrote again is in both the client's text and its count once)."""
        last = parts[-1]
        if len(parts) > 1 and not last.tally.chars and last.usage is None:
            return await self.answer_tokens(parts[:-1])  # it broke before its first chunk
        tally = last.tally
        text = stitched_text(parts)[tally.start : tally.reach]
        return tally.base + await self.generated(last, text)

    async def total_usage(self, parts: Sequence[Part]) -> Usage:
        first = parts[0]
        prompt = first.usage.prompt_tokens if first.usage is not None else None
        if not isinstance(prompt, int):
            prompt = await asyncio.to_thread(self._count, first.deployment, messages=first.messages)
        return stitched_usage(prompt, await self.answer_tokens(parts))

    def _count(self, deployment: str | None, **what: Any) -> int:
        model = self._models.get(deployment or "", "")
        try:
            return int(litellm.token_counter(model=model, **what))
        except Exception:  # an unknown tokenizer must not cost the client its stream
            return 0

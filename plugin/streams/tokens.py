"""The tokens of a stitched stream (issue 12): what each part generated, and the usage it adds up to.

A continuation's ``max_tokens`` is the client's limit less what the broken parts generated, and
the client's one usage chunk counts every part. Neither can be read off the chunks: speculative
decoding and a stream interval put several tokens in one chunk, a detokenizer holding back an
incomplete character sends chunks with no text (LiteLLM drops those).

- Engines that count as they go (vLLM and SGLang, ``ProviderAdapter.running_usage``) are asked
  for usage on every chunk (``ask_running_usage``, from the deployment hook, once the deployment
  is known). LiteLLM moves a chunk's usage out of the chunk it hands on into its record of the
  stream (``CustomStreamWrapper.chunks``), where ``chunks.recorded_usage`` reads it; the last
  count of a chunk the client got is what the part generated. The client sees none of it: only
  the final usage chunk, and only when it asked for one (``stream_options.include_usage``).
- Where no engine count exists (hosted APIs report usage at the end only, and a part that broke
  never got there; TGI has no running count but streams one event per token), a part is
  estimated as the larger of its text chunks (every one carries at least one token) and the
  deployment tokenizer's count of its text. Neither is a bound: an over-count is the safe side of
  the client's limit (the continuation stops early, with ``length``), an under-count would let the
  stitched answer run past it, so the larger is taken.

The stitched usage is the first part's prompt plus every part's completion. A continuation's
prompt (the question again, and the answer so far) is the plugin's cost of repairing the stream,
not the client's request: LiteLLM logs it with that call's own usage and spend, and the client's
usage stays what the uninterrupted answer would have reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import litellm
from litellm.types.utils import Usage

if TYPE_CHECKING:
    from litellm_failover.streams.resume import Part


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


def stitched_usage(prompt_tokens: int, completions: Sequence[int]) -> Usage:
    completion = sum(completions)
    return Usage(
        prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion
    )


class TokenCounter:
    """Counts a part's tokens: the engine's count when one came, else the estimate above."""

    def __init__(self, models: Mapping[str, str]) -> None:
        self._models = dict(models)  # deployment id -> LiteLLM model, for its tokenizer

    async def generated(self, part: Part) -> int:
        """The completion tokens ``part`` generated for the text the client has."""
        counted = _completion(part.usage)
        if counted is not None:
            return counted
        if not part.texts:
            return part.content_chunks
        estimate = await asyncio.to_thread(self._count, part.deployment, text="".join(part.texts))
        return max(part.content_chunks, estimate)

    async def total_usage(self, parts: Sequence[Part]) -> Usage:
        first = parts[0]
        prompt = first.usage.prompt_tokens if first.usage is not None else None
        if not isinstance(prompt, int):
            prompt = await asyncio.to_thread(self._count, first.deployment, messages=first.messages)
        return stitched_usage(prompt, [await self.generated(part) for part in parts])

    def _count(self, deployment: str | None, **what: Any) -> int:
        model = self._models.get(deployment or "", "")
        try:
            return int(litellm.token_counter(model=model, **what))
        except Exception:  # an unknown tokenizer must not cost the client its stream
            return 0


def _completion(usage: Usage | None) -> int | None:
    value = getattr(usage, "completion_tokens", None) if usage is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

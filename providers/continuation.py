"""How an endpoint kind continues a partial streamed answer (mid-stream failover, issue 5).

A stream that breaks after some text reached the client goes on on another deployment. What
that deployment is asked differs by kind, and each adapter holds one of these rules:

- ``ContinueFinalMessage``: the partial answer becomes the final assistant message and the server
  continues it in place (``continue_final_message: true`` with ``add_generation_prompt: false``).
  The chat template is rendered without closing that message, so the model picks up at that
  character; but the engine tokenizes the text again, which is the model's own tokens only where
  the cut falls between canonical tokens. The ``vllm``, ``sglang`` and ``llamacpp`` kinds use
  ``providers.retokenize.ContinueFromStableCut`` instead: the same request from a point that
  re-tokenizes identically, the cut-off tail written again and skipped; the stitched answer is
  the uninterrupted one (greedy decoding) or one the model could have given (sampling).
- ``AssistantPrefill`` (Anthropic): a trailing assistant message is a prefill the model continues.
  Anthropic refuses a prefill that ends in whitespace, so trailing whitespace is cut from it and
  the continuation's own leading whitespace, already sent, is dropped (``skip_prefix``).
- ``NoExactContinuation`` (OpenAI, Azure, OpenAI-compatible, TGI): these APIs always open a new
  assistant turn, so nothing guarantees that the continuation starts where the text stopped. The
  best effort shows the model what it wrote and asks it to go on; ``exact`` is False and the
  plugin's ``streams.inexact_continuation`` decides whether that is used at all.

Counting what a broken part generated (issue 12): the continuation's ``max_tokens`` is the client's
limit less the tokens already generated, and chunks do not count tokens (speculative decoding and
a stream interval put several tokens in one chunk, a held-back character none). A kind whose
engine can report its running count on every chunk names the ``stream_options`` that ask for it
(``running_usage``): vLLM and SGLang take ``continuous_usage_stats``. TGI has no such option, but
its stream is one event per generated token, so its chunks are its count; hosted APIs report
usage only at the end, and a part of theirs that broke is estimated (``streams.resumer``).

Rules are pure functions of the request: no I/O, no settings (this package must not import
``settings``; see ``providers/__init__``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# What the best effort asks of a model that cannot continue a message in place.
BEST_EFFORT_INSTRUCTION = (
    "Your previous answer was cut off. Continue it exactly where it stopped: output only the "
    "missing rest, without repeating any of the text above and without any preamble."
)


@dataclass(frozen=True, slots=True)
class Continuation:
    """The request that asks a deployment for the rest of a partial answer.

    ``messages`` replace the request's messages; ``extra_body`` is merged over the request's own;
    ``skip_prefix`` is text the client already has that the continuation is expected to start
    with (dropped where it matches, character by character).
    """

    messages: list[dict[str, Any]]
    exact: bool
    extra_body: dict[str, Any] = field(default_factory=dict)
    skip_prefix: str = ""


class ContinuationRule(Protocol):
    """One way of continuing; ``exact`` says whether the result is the uninterrupted answer.

    ``accept``, where given, takes a position in ``partial`` and says whether the continuation may
    start there (the plugin knows the tokens of the text before it); a rule that cuts the text
    back keeps to such points, the others send the whole of ``partial`` and ignore it.
    """

    exact: bool

    def build(
        self,
        messages: Sequence[Mapping[str, Any]],
        partial: str,
        request_extra: Mapping[str, Any],
        accept: Callable[[int], bool] | None = None,
    ) -> Continuation: ...


def message_text(content: object) -> str:
    """The text of a message's content: a string, or OpenAI content parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p for p in content if isinstance(p, Mapping) and p.get("type") == "text")
        return "".join(str(part.get("text", "")) for part in parts)
    return ""


def _split_prefix(
    messages: Sequence[Mapping[str, Any]], partial: str, *, continuing: bool
) -> tuple[list[dict[str, Any]], str]:
    """The history, and the assistant text the model goes on from: ``partial``, after the
    client's own trailing assistant prefix when the client was continuing one itself."""
    history = [dict(m) for m in messages]
    if continuing and history and history[-1].get("role") == "assistant":
        return history[:-1], message_text(history[-1].get("content")) + partial
    return history, partial


class ContinueFinalMessage:
    """vLLM's ``continue_final_message`` with the text as it is (exact between canonical tokens
    only; kept for engines whose tokenizer keeps no whitespace boundary, and as the bench's
    ``text`` baseline)."""

    exact = True

    def build(
        self,
        messages: Sequence[Mapping[str, Any]],
        partial: str,
        request_extra: Mapping[str, Any],
        accept: Callable[[int], bool] | None = None,
    ) -> Continuation:
        continuing = bool(request_extra.get("continue_final_message"))
        history, prefix = _split_prefix(messages, partial, continuing=continuing)
        return Continuation(
            messages=[*history, {"role": "assistant", "content": prefix}],
            exact=True,
            extra_body={"continue_final_message": True, "add_generation_prompt": False},
        )


class AssistantPrefill:
    """Anthropic's assistant prefill: the model continues a trailing assistant message."""

    exact = True

    def build(
        self,
        messages: Sequence[Mapping[str, Any]],
        partial: str,
        request_extra: Mapping[str, Any],
        accept: Callable[[int], bool] | None = None,
    ) -> Continuation:
        # A trailing assistant message to Anthropic is always a prefill, so always continued.
        history, prefix = _split_prefix(messages, partial, continuing=True)
        kept = prefix.rstrip()
        # The whitespace cut off is the tail of what the client already has (Anthropic refuses a
        # client's own prefill ending in whitespace, so none of it is theirs); the model writes it
        # again at the start of the continuation.
        prefill = [{"role": "assistant", "content": kept}] if kept else []
        return Continuation(messages=[*history, *prefill], exact=True, skip_prefix=prefix[len(kept) :])


class NoExactContinuation:
    """APIs that always open a new assistant turn: a best effort, never exact."""

    exact = False

    def __init__(self, instruction: str = BEST_EFFORT_INSTRUCTION) -> None:
        self.instruction = instruction

    def build(
        self,
        messages: Sequence[Mapping[str, Any]],
        partial: str,
        request_extra: Mapping[str, Any],
        accept: Callable[[int], bool] | None = None,
    ) -> Continuation:
        copied = [dict(m) for m in messages]
        copied.append({"role": "assistant", "content": partial})
        copied.append({"role": "user", "content": self.instruction})
        return Continuation(messages=copied, exact=False)


# vLLM's and SGLang's running count: usage on every chunk (needs ``include_usage`` as well).
CONTINUOUS_USAGE_STATS: Mapping[str, Any] = {"include_usage": True, "continuous_usage_stats": True}

CONTINUE_FINAL_MESSAGE = ContinueFinalMessage()
ASSISTANT_PREFILL = AssistantPrefill()
NO_EXACT_CONTINUATION = NoExactContinuation()


class ContinuingAdapter:
    """The part of ``ProviderAdapter`` that continues broken streams, by the kind's rule; an
    adapter class sets ``continuation_rule`` (or an instance does, for one kind of engine)."""

    continuation_rule: ContinuationRule = NO_EXACT_CONTINUATION
    # The ``stream_options`` that make this kind report its running token count on every chunk;
    # None where the engine has no such option.
    running_usage: Mapping[str, Any] | None = None

    @property
    def continues_exactly(self) -> bool:
        return self.continuation_rule.exact

    def continuation(
        self,
        messages: Sequence[Mapping[str, Any]],
        partial: str,
        request_extra: Mapping[str, Any],
        accept: Callable[[int], bool] | None = None,
    ) -> Continuation:
        return self.continuation_rule.build(messages, partial, request_extra, accept)


__all__ = [
    "ASSISTANT_PREFILL",
    "BEST_EFFORT_INSTRUCTION",
    "CONTINUE_FINAL_MESSAGE",
    "CONTINUOUS_USAGE_STATS",
    "NO_EXACT_CONTINUATION",
    "AssistantPrefill",
    "Continuation",
    "ContinuationRule",
    "ContinueFinalMessage",
    "ContinuingAdapter",
    "NoExactContinuation",
    "message_text",
]

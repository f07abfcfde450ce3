"""Continue a partial answer from a point that re-tokenizes as the model wrote it.

``continue_final_message`` sends the partial answer as text, and the engine tokenizes it again.
The model, though, wrote tokens: where the stream broke inside one (``" continu"`` of
``" continuation"``) or where the next characters would have merged with the last ones (a word
cut in half, a run of spaces or of punctuation cut short), the text tokenizes differently from
what the model had, the model sees a context it never produced, and greedy decoding goes
elsewhere. Measured on llama.cpp with a real BPE tokenizer (``bench/real_engine_continuation.py``):
most cuts inside a word diverge this way.

The fix cuts the text sent back to a boundary that every common tokenizer keeps (GPT-2's and
Llama 3's pre-tokenizer regexes, SentencePiece's word pieces): the end of the last word that
whitespace follows. No token spans that point, and the tokens before it are the canonical
tokenization of the text before it. The model then writes the cut-off tail again, and the
stream drops it (``skip_prefix``): the client already has it.

Exact as far as the model's own tokens up to that point were the canonical tokenization of its
text, which is what trained models write; an engine that takes token ids (llama.cpp's
``/completion``, vLLM's completions) would not even need that, but the stream through LiteLLM
carries text, not ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from litellm_failover.providers.continuation import Continuation, message_text


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def stable_cut(text: str, end: int | None = None) -> int:
    """Where to cut ``text[:end]`` so that its tokenization is a prefix of the full answer's.

    The end of the last word (letters, digits, marks) that whitespace follows in ``text[:end]``;
    the whitespace and anything after it are cut off. Punctuation right before that whitespace
    goes too (Llama 3 joins ``".\\n\\n"`` into one pre-token). 0 when there is no such point: then
    the whole answer is written again. ``end`` spares a caller walking back over several cuts a
    copy of the text per step.
    """
    i = len(text) if end is None else end
    # The last whitespace run followed by something (or ending the text) closes a word.
    while i > 0:
        if text[i - 1].isspace():
            break
        i -= 1
    if i == 0:
        return 0
    # i - 1 is whitespace: walk back over the run, then over punctuation before it.
    while i > 0 and text[i - 1].isspace():
        i -= 1
    while i > 0 and not text[i - 1].isspace() and not _is_word_char(text[i - 1]):
        i -= 1
    if i > 0 and text[i - 1].isspace():
        # Only punctuation between two whitespace runs ("a - b"): cut before it too.
        return stable_cut(text, i)
    return i


def counted_cut(text: str, floor: int = 0, accept: Callable[[int], bool] | None = None) -> int:
    """The last stable cut of ``text`` at or above ``floor`` that ``accept`` takes (``floor``
    itself when none is): the plugin accepts only points where it knows how many tokens the
    text before took, so that the continuation's ``max_tokens`` is exact (``streams.tokens``)."""
    cut = stable_cut(text)
    while cut > floor and accept is not None and not accept(cut):
        cut = stable_cut(text, cut)
    return max(cut, floor)


class ContinueFromStableCut:
    """``continue_final_message`` from a point that re-tokenizes identically, the rest skipped:
    the rule of the ``vllm``, ``sglang`` and ``llamacpp`` kinds.

    The engine must take vLLM's ``continue_final_message`` / ``add_generation_prompt`` on its
    chat API (vLLM and SGLang do; llama.cpp's server does, and also continues a trailing
    assistant message by itself). ``accept`` (positions in ``partial``) narrows the cut to points
    whose token count the stream knows: see ``counted_cut``.
    """

    exact = True

    def build(
        self,
        messages: Sequence[Mapping[str, Any]],
        partial: str,
        request_extra: Mapping[str, Any],
        accept: Callable[[int], bool] | None = None,
    ) -> Continuation:
        history = [dict(m) for m in messages]
        own = ""
        if request_extra.get("continue_final_message") and history and history[-1].get("role") == "assistant":
            # The client continued its own prefix: the engine tokenized that text itself, so its
            # end is a point the model's context already had; the cut never goes below it.
            own = message_text(history.pop().get("content"))
        prefix = own + partial
        floor = len(own)
        taken = None if accept is None else (lambda cut: accept(cut - floor))
        cut = counted_cut(prefix, floor, taken)
        kept, tail = prefix[:cut], prefix[cut:]
        if not kept:
            # Nothing safe to keep: ask again from the top; the whole partial text is skipped.
            return Continuation(messages=history, exact=True, skip_prefix=tail)
        return Continuation(
            messages=[*history, {"role": "assistant", "content": kept}],
            exact=True,
            extra_body={"continue_final_message": True, "add_generation_prompt": False},
            skip_prefix=tail,
        )


CONTINUE_FROM_STABLE_CUT = ContinueFromStableCut()

__all__ = ["CONTINUE_FROM_STABLE_CUT", "ContinueFromStableCut", "counted_cut", "stable_cut"]

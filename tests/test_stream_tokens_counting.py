"""How the plugin counts the tokens of a stitched answer at a cut (issue 12 §2), without I/O.

A part's ``Tally`` holds its text after every chunk against the engine's running count then; a
continuation may start only where that count is known (``counted_points``), and the kept text's
tokens (``TokenCounter.tokens_at``) are exact there and never too few anywhere else.
"""

from __future__ import annotations

import litellm
import pytest
from litellm.types.utils import Usage

from litellm_failover.providers import get_adapter
from litellm_failover.providers.retokenize import counted_cut, stable_cut
from litellm_failover.streams.resume import Part
from litellm_failover.streams.tally import Tally
from litellm_failover.streams.tokens import TokenCounter, counted_points


def running(count: int) -> Usage:
    return Usage(prompt_tokens=3, completion_tokens=count, total_tokens=3 + count)


def part_of(chunks: list[tuple[str, int | None]], *, start: int = 0, base: int = 0, name: str = "p1") -> Part:
    """A part as the resuming stream records it: each chunk's text with the engine's count then."""
    part = Part(name, (), [], tally=Tally(start, base))
    for text, count in chunks:
        part.usage = None if count is None else running(count)
        if not text:
            continue  # a chunk with no text marks nothing (``ResumingStream``): only its count moves
        part.tally.chunk(len(text), part.usage)
        part.texts.append(text)
        part.content_chunks += 1
    return part


# Three tokens a chunk ("The river", " Rhine flows" ...): the stable cut of the whole text is
# inside the last chunk, where the count is not known.
THREE_A_CHUNK = [("The river Rhine", 3), (" flows north through", 6), (" Basel and Strasbourg", 9)]


def test_the_cut_goes_back_to_a_chunk_boundary_whose_count_is_known():
    part = part_of(THREE_A_CHUNK)
    text = "".join(part.texts)
    assert text[: stable_cut(text)] == "The river Rhine flows north through Basel and"
    built = get_adapter("vllm").continuation([], text, {}, counted_points([part]))
    assert built.messages[-1]["content"] == "The river Rhine flows north through"
    assert built.skip_prefix == " Basel and Strasbourg"
    # Without counts every stable point is as good: the nearest one.
    assert counted_cut(text) == stable_cut(text)


async def test_the_kept_tokens_are_exact_at_a_boundary_and_never_too_few_inside_a_chunk():
    part = part_of(THREE_A_CHUNK)
    counter = TokenCounter({})
    assert await counter.tokens_at([part], len("The river Rhine flows north through")) == 6
    assert await counter.tokens_at([part], 0) == 0
    # Inside a chunk: the count at its end (8 is the truth for "...Basel and"), the safe side.
    assert await counter.tokens_at([part], len("The river Rhine flows north through Basel and")) == 9


async def test_a_second_part_counts_from_where_it_started():
    first = part_of(THREE_A_CHUNK)
    kept = len("The river Rhine flows north through")
    # The continuation wrote " Basel and Strasbourg" again (3 tokens, one chunk), then two more.
    second = part_of([(" Basel and Strasbourg", 3), (" to the", 5)], start=kept, base=6, name="p2")
    second.texts[0] = ""  # the client already had it: the stream skipped it
    parts = [first, second]
    counter = TokenCounter({})
    text = "".join(p for part in parts for p in part.texts)
    assert text.endswith("Strasbourg to the")
    # The stable cut of the whole is before " the", inside p2's last chunk: back to its boundary.
    cut = counted_cut(text, 0, counted_points(parts))
    assert text[:cut] == "The river Rhine flows north through Basel and Strasbourg"
    assert await counter.tokens_at(parts, cut) == 6 + 3
    # The stitched answer: where p2 started plus all p2 generated, the tail once.
    assert await counter.answer_tokens(parts) == 6 + 5


async def test_a_part_without_counts_is_cut_anywhere_and_estimated_high():
    part = part_of([("Supercalifragilistic", None), ("expialidocious words here", None)], name="a")
    counter = TokenCounter({"a": "gpt-4o"})
    text = "".join(part.texts)
    assert counted_cut(text, 0, counted_points([part])) == stable_cut(text)
    kept = stable_cut(text)
    tokens = litellm.token_counter(model="gpt-4o", text=text[:kept])
    assert tokens > 2  # more than its two chunks: the tokenizer's count is taken
    assert await counter.tokens_at([part], kept) == tokens
    counted, source = await counter.counted(part)
    assert source == "litellm_estimate" and counted == litellm.token_counter(model="gpt-4o", text=text)


@pytest.mark.parametrize(
    ("chunks", "kept"),
    [
        ([("one", 1), (" two", 2), (" three", 3)], "one two"),  # one token a chunk: the stable cut
        ([("one two three", 3), (" four", 4)], "one two three"),
        ([("one two three four", 4)], ""),  # no counted point before the last word: from the top
        ([("one", 1), ("", 2), (" two three", 4)], "one"),  # a chunk with no text is no boundary
    ],
)
def test_counted_cuts_for_several_chunkings(chunks, kept):
    part = part_of(chunks)
    text = "".join(part.texts)
    assert text[: counted_cut(text, 0, counted_points([part]))] == kept

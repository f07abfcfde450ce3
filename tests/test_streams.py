"""The parts of mid-stream failover that need no server: continuation rules per provider kind,
what a continuation keeps of a request, chunk handling, and the ``streams`` settings."""

from __future__ import annotations

import asyncio
import time

import litellm
import pytest
from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices, Usage

from litellm_failover import attach
from litellm_failover.providers import KINDS, get_adapter
from litellm_failover.providers.continuation import (
    BEST_EFFORT_INSTRUCTION,
    CONTINUOUS_USAGE_STATS,
    message_text,
)
from litellm_failover.providers.fake.text import answer_pieces, continuation_pieces
from litellm_failover.settings import FailoverConfigError, parse_settings
from litellm_failover.streams import chunks as ck
from litellm_failover.streams.request import StreamRequest
from litellm_failover.streams.resume import Part
from litellm_failover.streams.stall import Stalled, StallWatch
from litellm_failover.streams.tally import Tally
from litellm_failover.streams.tokens import TokenCounter, with_running_usage

QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a river."}]


def chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None, **kw):
    choice = StreamingChoices(index=0, delta=Delta(content=content, role=role), finish_reason=finish)
    return ModelResponseStream(
        id=kw.get("id", "c1"), created=kw.get("created", 7), model="m", choices=[choice]
    )


# -- continuation rules, per kind -----------------------------------------------------------


def test_every_kind_says_whether_it_continues_exactly():
    exact = {kind: get_adapter(kind).continues_exactly for kind in KINDS}
    assert exact == {
        "vllm": True,
        "sglang": True,
        "llamacpp": True,
        "anthropic": True,
        "tgi": False,
        "openai": False,
        "azure": False,
        "openai-compatible": False,
    }


@pytest.mark.parametrize("kind", ["vllm", "sglang", "llamacpp"])
def test_engines_continue_the_final_assistant_message(kind):
    # Cut back to a point that re-tokenizes as written (``providers.retokenize``): the space
    # may begin the next token, so the model writes it again and the stream skips it.
    built = get_adapter(kind).continuation(QUESTION, "The Rhine ", {})
    assert built.messages == [*QUESTION, {"role": "assistant", "content": "The Rhine"}]
    assert built.extra_body == {"continue_final_message": True, "add_generation_prompt": False}
    assert built.exact and built.skip_prefix == " "
    assert QUESTION[-1] == {"role": "user", "content": "Name a river."}  # the request is not touched


def test_a_client_continuing_its_own_prefix_gets_the_answer_appended_to_it():
    asked = [*QUESTION, {"role": "assistant", "content": [{"type": "text", "text": "Answer: "}]}]
    built = get_adapter("vllm").continuation(asked, "The Rhine is", {"continue_final_message": True})
    assert built.messages[-1] == {"role": "assistant", "content": "Answer: The Rhine"}
    assert len(built.messages) == len(asked) and built.skip_prefix == " is"


def test_anthropic_prefill_drops_trailing_whitespace_and_skips_it_once_resent():
    built = get_adapter("anthropic").continuation(QUESTION, "The Rhine \n", {})
    assert built.messages == [*QUESTION, {"role": "assistant", "content": "The Rhine"}]
    assert built.exact and built.extra_body == {} and built.skip_prefix == " \n"
    # A client prefill is continued, not followed by a second assistant message.
    asked = [*QUESTION, {"role": "assistant", "content": "Sure:"}]
    built = get_adapter("anthropic").continuation(asked, " the Rhine", {})
    assert built.messages[-1] == {"role": "assistant", "content": "Sure: the Rhine"}
    assert len(built.messages) == len(asked)


@pytest.mark.parametrize("kind", ["openai", "azure", "openai-compatible", "tgi"])
def test_hosted_apis_and_tgi_get_a_best_effort_only(kind):
    built = get_adapter(kind).continuation(QUESTION, "The Rhine", {"continue_final_message": True})
    assert not built.exact and built.extra_body == {}
    assert built.messages[-2:] == [
        {"role": "assistant", "content": "The Rhine"},
        {"role": "user", "content": BEST_EFFORT_INSTRUCTION},
    ]


def test_a_vllm_continuation_stitches_to_the_uninterrupted_answer():
    # The fake vLLM's rule, applied to what the vLLM adapter sends: the invariant the tests of
    # the Router and the proxy check over the wire.
    pieces = answer_pieces(QUESTION)
    for cut in (1, 7, len(pieces) - 1):
        sent = "".join(pieces[:cut])
        built = get_adapter("vllm").continuation(QUESTION, sent, {})
        kept = message_text(built.messages[-1]["content"]) if len(built.messages) > len(QUESTION) else ""
        rest = "".join(continuation_pieces(answer_pieces(QUESTION), kept))
        assert rest.startswith(built.skip_prefix) and kept + built.skip_prefix == sent
        assert sent + rest[len(built.skip_prefix) :] == "".join(pieces)


# -- what a continuation keeps of the request -----------------------------------------------


def test_a_continuation_keeps_generation_parameters_and_nothing_of_the_proxy():
    proxy_request = {
        "model": "chat",
        "messages": QUESTION,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "stop": ["\n\n"],
        "max_tokens": 50,
        "top_k": 5,  # the openai SDK's extra_body, flattened by the proxy
        "continue_final_message": False,
        "api_key": "sk-secret",
        "metadata": {"user_api_key": "hashed"},
        "litellm_logging_obj": object(),
        "proxy_server_request": {"headers": {}},
        "litellm_call_id": "call-1",
        "litellm_trace_id": "trace-1",
    }
    request = StreamRequest.from_kwargs("chat", QUESTION, proxy_request)
    assert request.request_keys == ("call-1", "trace-1") and request.include_usage
    kwargs = request.continuation_kwargs(
        [{"role": "user", "content": "x"}], {"add_generation_prompt": False}, 12
    )
    assert kwargs == {
        "temperature": 0.2,
        "stop": ["\n\n"],
        "max_tokens": 38,
        "top_k": 5,
        "messages": [{"role": "user", "content": "x"}],
        "extra_body": {"add_generation_prompt": False},
        "stream_options": {"include_usage": True},
    }


def test_what_cannot_be_continued_exactly_or_at_all():
    assert (
        StreamRequest.from_kwargs("chat", QUESTION, {"n": 2}).not_resumable()
        == "n=2 streams several answers at once"
    )
    assert StreamRequest.from_kwargs("chat", QUESTION, {}).not_resumable() is None
    assert StreamRequest.from_kwargs(
        "chat", QUESTION, {"response_format": {"type": "json_object"}}
    ).structured
    assert StreamRequest.from_kwargs("chat", QUESTION, {"extra_body": {"guided_json": {}}}).structured
    assert not StreamRequest.from_kwargs("chat", QUESTION, {"response_format": {"type": "text"}}).structured


# -- chunks ---------------------------------------------------------------------------------


def test_chunks_are_restamped_with_the_first_chunks_identity():
    stamp = ck.Stamp.of(chunk("a", id="first", created=1))
    later = chunk("b", id="second", created=9)
    stamp.apply(later)
    assert (later.id, later.created, later.model) == ("first", 1, "m")
    assert stamp.usage_chunk(Usage(prompt_tokens=1, completion_tokens=2)).id == "first"
    assert ck.finish_reason(stamp.finish_chunk("length")) == "length"


def test_opening_role_chunks_are_recognised_and_text_is_not():
    assert ck.read(chunk("", role="assistant")).opening
    assert not ck.read(chunk("Hi", role="assistant")).opening
    assert not ck.read(chunk(None, finish="stop")).opening
    usage = Usage(prompt_tokens=1, completion_tokens=2)
    only_usage = ModelResponseStream(id="c1", created=7, model="m", choices=[], usage=usage)
    assert ck.read(only_usage) == ck.Reading(usage=usage, bare=True) and ck.read(only_usage).final_usage
    assert ck.read(chunk("Hi")) == ck.Reading(text="Hi")


@pytest.mark.parametrize(
    ("text", "pending", "left", "remaining"),
    [
        (" world", " ", "world", ""),  # the resent whitespace is dropped
        ("\n", "\n\n", "", "\n"),  # used up across chunks
        ("world", " ", "world", ""),  # the model did not resend it: nothing dropped, skipping ends
    ],
)
def test_a_resent_prefix_is_dropped_only_where_it_matches(text, pending, left, remaining):
    piece = chunk(text)
    assert ck.strip_prefix(piece, pending) == remaining
    assert ck.delta_text(piece) == left


async def test_the_stitched_usage_is_the_first_prompt_and_every_parts_completion():
    counter = TokenCounter({})
    first = Part("a", (), [], content_chunks=2, usage=Usage(prompt_tokens=10, completion_tokens=6))
    # The second part went on from a cut 5 tokens into the first (it wrote the sixth again).
    second = Part("b", (), [], content_chunks=9, usage=Usage(prompt_tokens=17, completion_tokens=18))
    second.tally = Tally(start=20, base=5)
    total = await counter.total_usage([first, second])
    # The engines' counts, not the chunks; the continuation's prompt is not the client's, and
    # the token written again counts once.
    assert (total.prompt_tokens, total.completion_tokens, total.total_tokens) == (10, 23, 33)


async def test_a_part_without_an_engine_count_is_estimated_on_the_high_side():
    counter = TokenCounter({"a": "gpt-4o"})
    text = ["Supercalifragilistic", "expialidocious words"]
    tokens = litellm.token_counter(model="gpt-4o", text="".join(text))
    assert tokens > 2  # the tokenizer says more than the chunks: the tokenizer's count is taken
    assert await counter.generated(Part("a", (), [], content_chunks=2, texts=text)) == tokens
    many = Part("a", (), [], content_chunks=tokens + 5, texts=text)
    assert await counter.generated(many) == tokens + 5  # more chunks than tokens: the chunks
    assert await counter.generated(Part("a", (), [])) == 0


def test_running_usage_is_asked_without_touching_the_clients_options():
    options = {"include_usage": False, "extra": 1}
    kwargs = {"stream_options": options}
    assert with_running_usage(kwargs, CONTINUOUS_USAGE_STATS)
    assert kwargs["stream_options"] == {"include_usage": True, "continuous_usage_stats": True, "extra": 1}
    assert options == {"include_usage": False, "extra": 1}  # the client's dict, unchanged
    assert not with_running_usage(kwargs, CONTINUOUS_USAGE_STATS)  # already asked: no change
    bare: dict = {}
    assert with_running_usage(bare, CONTINUOUS_USAGE_STATS) and bare["stream_options"]["include_usage"]


@pytest.mark.parametrize(
    ("kind", "counts"), [("vllm", True), ("sglang", True), ("tgi", False), ("openai", False)]
)
def test_engines_that_count_as_they_go_say_how(kind, counts):
    assert (get_adapter(kind).running_usage == CONTINUOUS_USAGE_STATS) is counts


def test_a_running_count_is_read_from_litellms_record_and_dropped_from_the_chunk():
    class Recorded:
        def __init__(self, recorded):
            self.chunks = recorded

    counted = chunk(" two words")
    counted.usage = Usage(prompt_tokens=3, completion_tokens=5)
    assert ck.recorded_usage(Recorded([chunk("a"), counted])).completion_tokens == 5
    assert ck.recorded_usage(Recorded([counted, chunk("b")])) is None
    assert ck.recorded_usage(Recorded([])) is None and ck.recorded_usage(object()) is None
    ck.drop_usage(counted)
    assert getattr(counted, "usage", None) is None and ck.read(counted).usage is None


def test_a_finish_litellm_made_up_is_told_from_the_providers():
    class Recorded:
        def __init__(self, recorded):
            self.chunks = recorded

    real = chunk(None, finish="stop")
    assert ck.provider_finished(Recorded([chunk("a"), real]), real)
    assert not ck.provider_finished(Recorded([chunk("a")]), chunk(None, finish="stop"))
    assert ck.provider_finished(object(), real)  # no record to go by: taken at its word
    # A finish that came with a running count is recorded as a copy, handed on without it.
    handed_on = chunk(None, finish="stop")
    assert ck.provider_finished(Recorded([chunk("a"), chunk(None, finish="stop")]), handed_on)


# -- settings -------------------------------------------------------------------------------


def test_stream_settings_defaults():
    streams = parse_settings({}).streams
    assert (streams.resume, streams.max_resumes, streams.inter_token_timeout_s) == (True, 2, 30.0)
    assert streams.inexact_continuation == "error"
    assert parse_settings({"streams": {"inter_token_timeout_s": None}}).streams.inter_token_timeout_s is None


@pytest.mark.parametrize(
    ("raw", "path", "value"),
    [
        ({"max_resumes": -1}, "failover_settings.streams.max_resumes", "-1"),
        ({"max_resumes": "two"}, "failover_settings.streams.max_resumes", "a string"),
        ({"inter_token_timeout_s": 0}, "failover_settings.streams.inter_token_timeout_s", "0"),
        ({"inexact_continuation": "maybe"}, "failover_settings.streams.inexact_continuation", "'maybe'"),
        ({"resume": "sometimes"}, "failover_settings.streams.resume", "a string"),
        ({"resumes": 3}, "failover_settings.streams.resumes", "3"),
    ],
)
def test_bad_stream_settings_are_named_by_key_path(raw, path, value):
    with pytest.raises(FailoverConfigError) as info:
        parse_settings({"streams": raw})
    assert path in str(info.value) and f"(got {value})" in str(info.value)


# -- the inter-token timeout ----------------------------------------------------------------


async def paced(gaps: list[float], stall: asyncio.Event | None = None, stalling: asyncio.Event | None = None):
    """Chunks after the given gaps, then (with ``stall``) nothing until that event is set;
    ``stalling`` is set when the silence begins."""
    for index, gap in enumerate(gaps):
        await asyncio.sleep(gap)  # the pace under test, not a synchronisation
        yield index
    if stall is not None:
        if stalling is not None:
            stalling.set()
        await stall.wait()


async def test_a_wait_longer_than_the_limit_is_a_stall():
    watch = StallWatch(0.2)
    iterator = paced([0.0, 0.0], stall=asyncio.Event()).__aiter__()
    assert [await watch.next(iterator), await watch.next(iterator)] == [0, 1]
    started = time.monotonic()
    with pytest.raises(Stalled):
        await watch.next(iterator)
    assert 0.2 <= time.monotonic() - started < 1.0
    assert asyncio.current_task().cancelling() == 0  # the timeout's own cancellation is undone
    watch.close()


async def test_chunks_inside_the_limit_never_stall_however_long_the_stream():
    watch = StallWatch(0.15)
    iterator = paced([0.05] * 12).__aiter__()  # 0.6 s in all: four times the limit
    assert [await watch.next(iterator) for _ in range(12)] == list(range(12))
    watch.close()


async def test_a_cancellation_from_outside_is_not_a_stall():
    watch = StallWatch(5.0)
    stalling = asyncio.Event()
    iterator = paced([], stall=asyncio.Event(), stalling=stalling).__aiter__()
    waiting = asyncio.ensure_future(watch.next(iterator))
    await asyncio.wait_for(stalling.wait(), 5)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    watch.close()


# -- wiring ---------------------------------------------------------------------------------


def test_attach_wraps_the_routers_acompletion_and_detach_puts_it_back(tmp_path):
    entry = {
        "model_name": "chat",
        "litellm_params": {"model": "hosted_vllm/m", "api_base": "http://127.0.0.1:9/v1"},
        "model_info": {"id": "a", "failover": {"probe": False}},
    }
    router = litellm.Router(model_list=[entry])
    plugin = attach(router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/e.db"})
    try:
        assert "acompletion" in vars(router)  # the instance's own, in front of the class's
    finally:
        plugin.detach()
    assert "acompletion" not in vars(router)
    assert router.acompletion.__func__ is litellm.Router.acompletion

"""The ``llamacpp`` kind: probes against a server answering as llama-server does, and the
continuation rule that cuts the resent text back to a point that re-tokenizes identically.

The rule's effect on a real engine is checked in ``tests/test_llamacpp_engine.py`` (skipped
unless the cached llama.cpp build exists) and measured in ``bench/real_engine_continuation.py``.
"""

from __future__ import annotations

import pytest
from provider_servers import by_name, probe_once, prober_for, serve, text

from litellm_failover.providers import get_adapter
from litellm_failover.providers.base import LoadSignals
from litellm_failover.providers.retokenize import CONTINUE_FROM_STABLE_CUT, stable_cut

# What llama-server --metrics prints (trimmed; names and types as in tools/server/server-task.cpp).
LLAMACPP_METRICS = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 1520
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 5
"""


async def test_llamacpp_is_probed_for_running_and_deferred_requests():
    async with serve({"/health": text('{"status":"ok"}'), "/metrics": text(LLAMACPP_METRICS)}) as srv:
        params = {"model": "openai/tiny", "api_base": f"{srv.url}/v1"}
        report = await probe_once(prober_for(params, {"provider": "llamacpp"}))
    assert list(by_name(report)) == ["http_health", "probe_latency", "metrics", "queue_depth"]
    assert report.load == LoadSignals(queue_waiting=5, requests_running=2)
    assert report.failed == ()


async def test_llamacpp_without_metrics_flag_fails_metrics():
    async with serve({"/health": text('{"status":"ok"}'), "/metrics": text("", status=501)}) as srv:
        params = {"model": "openai/tiny", "api_base": srv.url}
        report = await probe_once(prober_for(params, {"provider": "llamacpp"}))
    assert by_name(report)["metrics"].reason == f"GET {srv.url}/metrics answered 501"


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("The answer continues", len("The answer")),  # inside the last word: back to the one before
        ("The answer ", len("The answer")),  # trailing whitespace: the word before it is whole
        ("one two  three", len("one two")),  # a run of spaces goes whole
        ("Done.\n\nNext", len("Done")),  # punctuation before the whitespace goes too
        ("a - b", len("a")),  # punctuation alone between two runs
        ("日本語のテキスト", 0),  # no whitespace at all: everything is written again
        ("Grüße aus Kö", len("Grüße aus")),  # multi-byte characters are letters like any other
        ("", 0),
        ("word", 0),
    ],
)
def test_stable_cut(text, cut):
    assert stable_cut(text) == cut


def test_the_rule_keeps_the_stable_part_and_skips_the_rest():
    messages = [{"role": "user", "content": "hi"}]
    built = CONTINUE_FROM_STABLE_CUT.build(messages, "Hello there, wor", {})
    assert built.messages == [*messages, {"role": "assistant", "content": "Hello there"}]
    assert built.skip_prefix == ", wor"
    assert built.extra_body == {"continue_final_message": True, "add_generation_prompt": False}
    assert built.exact


def test_nothing_stable_resends_the_request_and_skips_everything():
    messages = [{"role": "user", "content": "hi"}]
    built = CONTINUE_FROM_STABLE_CUT.build(messages, "Hel", {})
    assert built.messages == messages and built.extra_body == {}
    assert built.skip_prefix == "Hel"


def test_a_clients_own_prefix_is_never_cut_into():
    # The engine tokenized the client's prefix itself, so its end is a point the model had.
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure"}]
    built = CONTINUE_FROM_STABLE_CUT.build(messages, "thi", {"continue_final_message": True})
    assert built.messages[-1] == {"role": "assistant", "content": "Sure"}
    assert built.skip_prefix == "thi"
    built = CONTINUE_FROM_STABLE_CUT.build(messages, ", here it is", {"continue_final_message": True})
    assert built.messages[-1] == {"role": "assistant", "content": "Sure, here it"}
    assert built.skip_prefix == " is"


def test_the_adapter_continues_exactly_with_the_rule():
    adapter = get_adapter("llamacpp")
    assert adapter.continues_exactly and adapter.self_hosted
    built = adapter.continuation([{"role": "user", "content": "q"}], "ab cd", {})
    assert built.skip_prefix == " cd"

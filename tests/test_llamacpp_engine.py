"""Continuation against a real engine: llama.cpp's server with a tiny local model (issue 12 §3).

Skipped unless the cached build exists (``bench/real_engine/build.sh`` compiles it once, for
minutes; CI does not). The model's weights are random, its tokenizer a real byte-level BPE, its
decoding greedy: the check is that the ``llamacpp`` kind's continuation, sent as a chat request
the way the plugin sends it, stitches back into the uninterrupted answer, where resending the
partial text as it is (``continue_final_message`` alone, what vLLM gets) does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # bench/ is not an installed package

from bench import real_engine_continuation as bench  # noqa: E402
from bench.real_engine import server  # noqa: E402
from litellm_failover.providers.retokenize import stable_cut  # noqa: E402

pytestmark = pytest.mark.skipif(server.missing() is not None, reason=str(server.missing()))

PROMPT = bench.PROMPTS[0]


@pytest.fixture(scope="module")
def check():
    with server.running_engine() as engine:
        yield bench.Check(engine, PROMPT, max_tokens=32)


def _cuts_inside_tokens(check: bench.Check, limit: int) -> list[int]:
    ends = set(check.ends)
    inside = [k for k in range(1, len(check.answer)) if k not in ends]
    return inside[:: max(1, len(inside) // limit)][:limit]


def test_the_greedy_answer_is_deterministic(check):
    again = check.engine.stream_chat({"messages": check.messages, "max_tokens": 32, **check.greedy})
    assert again == check.answer and len(check.ids) == 32


def test_stable_cut_continues_exactly_where_the_kept_text_is_the_models_own_tokens(check):
    cuts = _cuts_inside_tokens(check, 24)
    tried = 0
    for k in cuts:
        kept = stable_cut(check.answer[:k])
        if not check.canonical_prefix(kept):
            continue  # tokens no text can reproduce: the bench counts these apart
        tried += 1
        exact, _ = check.run(k, "stable_cut")
        assert exact, f"cut at {k} ({check.answer[:k]!r}) did not stitch back"
    assert tried >= 5, f"only {tried} of {len(cuts)} cuts kept the model's own tokens"


def test_the_client_limit_holds_exactly_over_the_stitched_answer(check):
    # The answer was asked with max_tokens=32 and used all of them: a continuation given the
    # limit less the kept tokens (the plugin's count, from a running count per token) must end
    # exactly where the uninterrupted answer did, at cuts inside and between tokens alike.
    ends = set(check.ends)
    between = [k for k in range(1, len(check.answer)) if k in ends][::3]
    tried = 0
    for k in [*_cuts_inside_tokens(check, 12), *between]:
        exact, info = check.run(k, "stable_cut_limit")
        if not check.canonical_prefix(info["kept"]):
            continue
        tried += 1
        assert exact, f"cut at {k} ({check.answer[:k]!r}) did not end where the answer did"
    assert tried >= 5


def test_resending_the_text_as_is_diverges_inside_tokens(check):
    # Why the kind needs the rule: the same cuts, continued from the raw partial text.
    cuts = _cuts_inside_tokens(check, 24)
    inexact = [k for k in cuts if not check.run(k, "text")[0]]
    assert inexact, "every cut inside a token continued exactly from the raw text"


def test_token_ids_continue_exactly(check):
    # The engine itself is deterministic from the same tokens: divergence is tokenization alone.
    for k in _cuts_inside_tokens(check, 8):
        assert check.run(k, "token_ids")[0], f"cut at {k}"


async def test_a_real_llama_server_passes_the_llamacpp_probe(check):
    from provider_servers import probe_once, prober_for

    params = {"model": "openai/tiny", "api_base": f"{check.engine.base}/v1"}
    report = await probe_once(prober_for(params, {"provider": "llamacpp"}))
    assert report.failed == (), report.failed
    assert report.load is not None and report.load.requests_running is not None

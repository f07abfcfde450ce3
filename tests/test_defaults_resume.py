"""A continuation that fails to open on the only other deployment is asked there again (drill,
2026-12-07), through the real ``litellm.Router`` against fake vLLMs.

At the plugin's default settings on a loaded machine a ``midstream_drop`` stream broke on p1 and
was answered "could not be continued: no other healthy deployment" with ``resumes: 1`` although
s1 was never ejected: the one continuation opened on s1 failed before its first chunk (s1 was
answering in 1-7 s against a 3 s stream timeout), s1 was then left out like a deployment that had
cut the stream, and nothing was left. A deployment that only failed to open the continuation and
is still routable is asked again while ``streams.max_resumes`` allows.
"""

from __future__ import annotations

import litellm
import pytest
from aiohttp import web
from fake_nodes import serving, tiered_model_list
from streams_support import QUESTION, read_stream

from litellm_failover import attach
from litellm_failover.providers.fake.text import DEFAULT_WORDS, expected_answer
from litellm_failover.providers.fake.vllm import FakeVLLM

# CI runs these on the oldest and the newest supported LiteLLM (.ci/run).
pytestmark = pytest.mark.litellm_range

ANSWER = expected_answer(QUESTION)
TIERS = {"p1": 1, "s1": 2}


class RefusesFirst(FakeVLLM):
    """Answers its first ``refuse`` chat requests with a 500 before any chunk (a continuation
    that cannot open), then serves as the fake vLLM does."""

    def __init__(self, name: str, refuse: int, **options: object) -> None:
        super().__init__(name, **options)
        self.refuse = refuse
        self.refused = 0

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self.refused < self.refuse:
            self.refused += 1
            return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=500)
        return await super()._chat(request)


@pytest.mark.parametrize("refuse", [1, 2], ids=["once", "twice"])
async def test_a_continuation_that_failed_to_open_is_retried_on_the_same_deployment(tmp_path, refuse):
    nodes = {"p1": FakeVLLM("p1", tokens_per_s=0), "s1": RefusesFirst("s1", refuse, tokens_per_s=0)}
    async with serving(nodes) as servers:
        model_list = tiered_model_list(
            servers, TIERS, model="hosted_vllm/fake-model", api_key="fake", probe=False
        )
        router = litellm.Router(model_list=model_list, num_retries=2, retry_after=0)
        plugin = attach(router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db"})
        try:
            async with plugin:
                servers["p1"].set_fault("drop_midstream", after_chunks=5)
                stream = await router.acompletion(
                    model="chat", messages=QUESTION, stream=True, stream_options={"include_usage": True}
                )
                seen = await read_stream(stream)
                resumed = [e for e in plugin.core.recent_events if e.event_type == "stream_resumed"]
                broken = [e for e in plugin.core.recent_events if e.event_type == "stream_broken"]
                if refuse == 1:
                    # Before the fix: StreamBrokenError "no other healthy deployment", resumes 1.
                    seen.assert_one_unbroken_answer(ANSWER, words=DEFAULT_WORDS)
                    assert seen.served_by == ["p1", "s1"]
                    assert [(e.from_deployment, e.to_deployment, e.details["resume"]) for e in resumed] == [
                        ("p1", "s1", 2)
                    ]
                    assert broken == []
                else:
                    # streams.max_resumes (2) bounds it: both continuations used, the stream breaks.
                    assert seen.error is not None and "streams.max_resumes" in str(seen.error)
                    assert resumed == [] and len(broken) == 1 and broken[0].details["resumes"] == 2
                assert servers["s1"].refused == refuse
                # s1 never cut the stream and stays routable (one or two failures, below ejection).
                assert plugin.core.health["s1"].state.value == "healthy"
        finally:
            plugin.detach()

"""The fake vLLM server: API shape, determinism, continuation, faults, and the subprocess helper.

Everything goes through real HTTP on 127.0.0.1 (aiohttp client and the ``openai`` SDK), because
the plugin and LiteLLM only ever see this server over the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_until

from litellm_failover.cli import fake_vllm as fake_vllm_cli
from litellm_failover.providers.fake.faults import FaultError
from litellm_failover.providers.fake.process import FakeVLLMProcess, FakeVLLMProcessError
from litellm_failover.providers.fake.text import VOCAB, answer_pieces, continuation_pieces, expected_answer
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.providers.gpu import DcgmGpuReader
from litellm_failover.providers.http import ReadTracker
from litellm_failover.providers.probe_client import ProbeClient
from litellm_failover.providers.thresholds import ProbeThresholds

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name some places in the mountains"},
]
CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}
SHORT = aiohttp.ClientTimeout(total=0.3)


@pytest.fixture
async def server() -> AsyncIterator[FakeVLLM]:
    node = FakeVLLM("node-a", tokens_per_s=0)
    await node.start()
    yield node
    await node.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


@pytest.fixture
async def client(server: FakeVLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=server.api_base, api_key="fake", max_retries=0, timeout=5)
    yield sdk
    await sdk.close()


async def stream_contents(client: openai.AsyncOpenAI, messages: list[dict], **kwargs: object) -> list[str]:
    """Content of every streamed chunk that carries content, in order."""
    stream = await client.chat.completions.create(model="my-model", messages=messages, stream=True, **kwargs)
    return [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]


async def sse_payloads(response: aiohttp.ClientResponse) -> AsyncIterator[dict]:
    async for line in response.content:
        if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
            yield json.loads(line[len(b"data: ") :])


def metrics(text: str) -> dict[str, tuple[float, dict[str, str]]]:
    return {
        family.name: (family.samples[0].value, family.samples[0].labels)
        for family in text_string_to_metric_families(text)
    }


async def fetch(http: aiohttp.ClientSession, method: str, url: str, **kwargs: object) -> tuple[int, bytes]:
    """One whole request as a coroutine, so it can run as a task while a fault holds it."""
    async with http.request(method, url, **kwargs) as response:
        return response.status, await response.read()


async def state(http: aiohttp.ClientSession, node: FakeVLLM) -> dict:
    async with http.get(f"{node.url}/control/state") as response:
        return await response.json()


# --- endpoints -------------------------------------------------------------------------------


async def test_health_and_models_carry_the_name(http: aiohttp.ClientSession) -> None:
    async with FakeVLLM("node-m", model="llama-70b") as node:
        async with http.get(f"{node.url}/health") as response:
            assert response.status == 200
            assert await response.read() == b""
            assert response.headers["x-fake-vllm-name"] == "node-m"
        async with http.get(f"{node.api_base}/models") as response:
            body = await response.json()
            assert response.headers["x-fake-vllm-name"] == "node-m"
        assert body["object"] == "list"
        assert [m["id"] for m in body["data"]] == ["llama-70b"]


async def test_metrics_use_vllm_names_and_parse(http: aiohttp.ClientSession, server: FakeVLLM) -> None:
    async with FakeVLLM("odd", model='org/m "q" \\ x') as odd, http.get(f"{odd.url}/metrics") as response:
        labels = {
            family.samples[0].labels["model_name"]
            for family in text_string_to_metric_families(await response.text())
            if family.name.startswith("vllm:")
        }
    assert labels == {'org/m "q" \\ x'}
    async with http.get(f"{server.url}/metrics") as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        parsed = metrics(await response.text())
    assert parsed["vllm:num_requests_running"] == (0.0, {"model_name": "fake-model"})
    assert parsed["vllm:num_requests_waiting"] == (0.0, {"model_name": "fake-model"})
    assert parsed["vllm:kv_cache_usage_perc"][0] == pytest.approx(0.05)
    assert parsed["vllm:gpu_cache_usage_perc"] == parsed["vllm:kv_cache_usage_perc"]


async def test_metrics_also_serve_a_dcgm_exporter_reading(server: FakeVLLM) -> None:
    """``gpu_source: dcgm`` pointed at the fake's ``/metrics`` reads its GPU, pressure included."""
    async with ProbeClient() as session:
        reader = DcgmGpuReader(server.url)
        outcome = await reader.read(session, ProbeThresholds(), ReadTracker())
        assert [check.ok for check in outcome.checks] == [True, True]
        assert outcome.memory_ratio == pytest.approx(0.6)
        server.set_fault("gpu_pressure")
        outcome = await reader.read(session, ProbeThresholds(), ReadTracker())
        assert outcome.memory_ratio == pytest.approx(0.97)
        assert not outcome.checks[1].ok


async def test_running_reflects_in_flight_streams(http: aiohttp.ClientSession) -> None:
    async with FakeVLLM("paced", tokens_per_s=20) as node:  # 24 words take 1.2 s
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        response = await http.post(f"{node.api_base}/chat/completions", json=body)
        await response.content.readline()  # the role chunk: the request is now running
        async with http.get(f"{node.url}/metrics") as metrics_response:
            parsed = metrics(await metrics_response.text())
        assert parsed["vllm:num_requests_running"][0] == 1.0
        assert parsed["vllm:kv_cache_usage_perc"][0] == pytest.approx(0.07)
        response.close()  # a client that goes away cancels its request, as in vLLM
        await wait_until(lambda: node.state()["running"] == 0, timeout=5, what="running back to 0")
        by_status = node.state()["requests"]["by_status"]
        assert by_status.pop("200") == 1  # /metrics
        assert list(by_status) in (["cancelled"], ["client_disconnected"])


async def test_gpu_status_and_memory_shapes(http: aiohttp.ClientSession, server: FakeVLLM) -> None:
    async with http.get(f"{server.url}/gpu-status") as response:
        status = await response.json()
    assert set(status) == {"healthy", "reason", "read_at", "gpus"}
    assert status["healthy"] is True and status["reason"] == ""
    assert abs(status["read_at"] - time.time()) < 60
    (gpu,) = status["gpus"]
    assert set(gpu) == {
        "index", "name", "memory_used_bytes", "memory_total_bytes", "used_ratio",
        "utilization_pct", "temperature_c", "xid_errors", "ecc_errors",
    }  # fmt: skip
    assert (gpu["index"], gpu["name"], gpu["xid_errors"], gpu["ecc_errors"]) == (0, "Fake GPU", 0, 0)
    assert isinstance(gpu["memory_used_bytes"], int) and isinstance(gpu["memory_total_bytes"], int)
    assert gpu["used_ratio"] == pytest.approx(0.6, abs=0.01)
    assert all(isinstance(gpu[k], float) for k in ("used_ratio", "utilization_pct", "temperature_c"))
    async with http.get(f"{server.url}/gpu-memory") as response:
        memory = await response.json()
    assert set(memory) == {"used_ratio", "read_at"}
    assert memory["used_ratio"] == gpu["used_ratio"]


# --- chat ------------------------------------------------------------------------------------


async def test_streaming_is_one_word_per_chunk_with_usage(
    client: openai.AsyncOpenAI, server: FakeVLLM
) -> None:
    stream = await client.chat.completions.create(
        model="my-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert {c.system_fingerprint for c in chunks} == {"node-a"}
    assert {c.model for c in chunks} == {"my-model"}
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(contents) == 24
    assert all(len(piece.split()) == 1 for piece in contents)
    assert "".join(contents) == server.answer_for(MESSAGES)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 24, 33)


async def test_chunks_carry_several_tokens_or_none_and_the_running_usage_on_request(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeVLLM("node-c", tokens_per_s=0, chunk_tokens="1,3,0,2") as node:
        body = {"messages": MESSAGES, "stream": True, "max_tokens": 10}
        body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        async with http.post(f"{node.api_base}/chat/completions", json=body) as response:
            payloads = [payload async for payload in sse_payloads(response)]
        texts = [p["choices"][0]["delta"].get("content") for p in payloads[1:] if p["choices"]][:-1]
        assert [len(text.split()) for text in texts] == [1, 3, 0, 2, 1, 3]  # cycled, cut at 10
        assert "".join(texts) == "".join(answer_pieces(MESSAGES)[:10])
        # vLLM's running count: every chunk, the opening one included, then the final usage chunk.
        running = [p["usage"]["completion_tokens"] for p in payloads]
        assert running == [0, 1, 4, 4, 6, 7, 10, 10, 10] and payloads[-1]["choices"] == []
        # continuous_usage_stats without include_usage is no usage at all, as on vLLM.
        body["stream_options"] = {"continuous_usage_stats": True}
        async with http.post(f"{node.api_base}/chat/completions", json=body) as response:
            plain = [payload async for payload in sse_payloads(response)]
        assert plain and all("usage" not in payload for payload in plain)


@pytest.mark.parametrize("bad", ["0", "0,0", "1,x", "-1", ""])
def test_a_chunking_pattern_is_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="chunk_tokens"):
        FakeVLLM("node-x", chunk_tokens=bad)


async def test_non_streaming_matches_the_stream(client: openai.AsyncOpenAI, server: FakeVLLM) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="my-model", messages=MESSAGES)
    assert raw.headers["x-fake-vllm-name"] == "node-a"
    completion = raw.parse()
    assert completion.model == "my-model" and completion.system_fingerprint == "node-a"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == "".join(await stream_contents(client, MESSAGES))
    assert completion.usage.prompt_tokens == 9 and completion.usage.completion_tokens == 24


async def test_answers_are_deterministic(client: openai.AsyncOpenAI, server: FakeVLLM) -> None:
    first = await client.chat.completions.create(model="m", messages=MESSAGES)
    second = await client.chat.completions.create(model="other", messages=MESSAGES)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.choices[0].message.content == expected_answer(MESSAGES)
    other = [{"role": "user", "content": "something else"}]
    assert expected_answer(other) != expected_answer(MESSAGES)
    assert expected_answer(MESSAGES, words=5) == " ".join(expected_answer(MESSAGES).split()[:5])
    assert set(expected_answer(MESSAGES).split()) <= set(VOCAB)
    async with FakeVLLM("node-b", tokens_per_s=0, words=7) as node_b:
        assert node_b.answer_for(MESSAGES) == expected_answer(MESSAGES, words=7)


async def test_max_tokens_truncates_with_length(client: openai.AsyncOpenAI, server: FakeVLLM) -> None:
    completion = await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=5)
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "".join(answer_pieces(MESSAGES)[:5])
    assert completion.usage.completion_tokens == 5
    assert len(await stream_contents(client, MESSAGES, max_tokens=5)) == 5


# --- continuation ----------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 12, 23])
async def test_continuation_after_a_cut_rebuilds_the_answer(
    client: openai.AsyncOpenAI, server: FakeVLLM, cut: int
) -> None:
    """The failover invariant: prefix(first k chunks) + continuation == uninterrupted answer."""
    full = await stream_contents(client, MESSAGES)
    prefix = "".join(full[:cut])  # what a client had when the stream broke after chunk k
    resumed = [*MESSAGES, {"role": "assistant", "content": prefix}]
    streamed = await stream_contents(client, resumed, extra_body=CONTINUE)
    assert prefix + "".join(streamed) == "".join(full) == server.answer_for(MESSAGES)
    assert streamed == full[cut:]  # word boundaries kept
    completion = await client.chat.completions.create(model="m", messages=resumed, extra_body=CONTINUE)
    assert prefix + completion.choices[0].message.content == "".join(full)
    assert completion.usage.completion_tokens == 24 - cut


async def test_continuation_inside_a_word_and_from_a_foreign_prefix(
    client: openai.AsyncOpenAI, server: FakeVLLM
) -> None:
    answer = server.answer_for(MESSAGES)
    cut = len(answer.split()[0]) + 3  # mid second word
    resumed = [*MESSAGES, {"role": "assistant", "content": answer[:cut]}]
    streamed = await stream_contents(client, resumed, extra_body=CONTINUE)
    assert answer[:cut] + "".join(streamed) == answer
    assert len(streamed) == 23  # the rest of word 2 is one chunk
    foreign = [*MESSAGES, {"role": "assistant", "content": "not from this server"}]
    completion = await client.chat.completions.create(model="m", messages=foreign, extra_body=CONTINUE)
    assert completion.choices[0].message.content == "".join(answer_pieces(MESSAGES)[4:])
    assert continuation_pieces(answer_pieces(MESSAGES), answer) == []


async def test_a_prefix_flag_alone_opens_a_new_turn_like_vllm(
    client: openai.AsyncOpenAI, server: FakeVLLM
) -> None:
    """LiteLLM's continuation sends the partial text as ``{"role": "assistant", "prefix": true}``
    without ``continue_final_message``. vLLM's chat templates never read ``prefix`` and, with
    ``add_generation_prompt`` on by default, open a new assistant turn after that message: a
    fresh answer to the longer conversation, not the rest of the cut one. The fake does the same."""
    answer = server.answer_for(MESSAGES)
    partial = "".join(answer_pieces(MESSAGES)[:8])
    resumed = [*MESSAGES, {"role": "assistant", "content": partial, "prefix": True}]
    streamed = "".join(await stream_contents(client, resumed))
    assert streamed == expected_answer(resumed)  # a new turn, seeded by the whole conversation
    assert partial + streamed != answer and not answer.endswith(streamed)
    assert len(streamed.split()) == 24  # a whole answer again: the budget is not the rest's
    # With continue_final_message the same message continues, the flag changes nothing.
    continued = await stream_contents(client, resumed, extra_body=CONTINUE)
    assert partial + "".join(continued) == answer


async def test_continuation_rejects_conflicting_flags(client: openai.AsyncOpenAI, server: FakeVLLM) -> None:
    resumed = [*MESSAGES, {"role": "assistant", "content": "x"}]
    both = {"continue_final_message": True, "add_generation_prompt": True}
    with pytest.raises(openai.BadRequestError, match="add_generation_prompt"):
        await client.chat.completions.create(model="m", messages=resumed, extra_body=both)
    with pytest.raises(openai.BadRequestError, match="assistant"):
        await client.chat.completions.create(model="m", messages=MESSAGES, extra_body=CONTINUE)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "m", "messages": [{"role": "wizard", "content": "x"}]}', "role"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens"),
    ],
)
async def test_bad_chat_requests_get_openai_errors(
    http: aiohttp.ClientSession, server: FakeVLLM, body: bytes, needle: str
) -> None:
    async with http.post(f"{server.api_base}/chat/completions", data=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert needle in error["message"]
    assert error["code"] == 400 and error["type"] == "BadRequestError"


# --- faults ----------------------------------------------------------------------------------


async def test_http_500_breaks_completions_and_health(
    http: aiohttp.ClientSession, client: openai.AsyncOpenAI, server: FakeVLLM
) -> None:
    server.set_fault("http_500")
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=MESSAGES)
    async with http.get(f"{server.url}/health") as response:
        assert response.status == 500
    async with http.get(f"{server.url}/metrics") as response:
        assert response.status == 200  # a dead engine still has a metrics page
    server.clear_fault()
    async with http.get(f"{server.url}/health") as response:
        assert response.status == 200
    assert (await client.chat.completions.create(model="m", messages=MESSAGES)).choices


async def test_health_lie(http: aiohttp.ClientSession, client: openai.AsyncOpenAI, server: FakeVLLM) -> None:
    server.set_fault("health_lie")
    async with http.get(f"{server.url}/health") as response:
        assert response.status == 200
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=MESSAGES)


async def test_hang_holds_requests_until_cleared(http: aiohttp.ClientSession, server: FakeVLLM) -> None:
    server.set_fault("hang")
    with pytest.raises(TimeoutError):
        async with http.get(f"{server.url}/health", timeout=SHORT):
            pass
    body = {"model": "m", "messages": MESSAGES}
    held = asyncio.create_task(fetch(http, "POST", f"{server.api_base}/chat/completions", json=body))
    await wait_until(lambda: server.state()["waiting"] == 1, timeout=5, what="the request to be held")
    assert (await state(http, server))["fault"] == {"mode": "hang"}  # control still answers
    assert not held.done()
    server.clear_fault()
    status, raw = await asyncio.wait_for(held, timeout=5)
    assert status == 200
    assert json.loads(raw)["choices"][0]["message"]["content"] == server.answer_for(MESSAGES)


async def test_engine_hang_holds_generation_while_health_answers(
    http: aiohttp.ClientSession, server: FakeVLLM
) -> None:
    """A wedged engine behind a live HTTP server: completions pile up, probes still pass; a
    ``hang`` set afterwards keeps them held (the rescue tests hold requests, then fail probes)."""
    server.set_fault("engine_hang")
    body = {"model": "m", "messages": MESSAGES}
    held = asyncio.create_task(fetch(http, "POST", f"{server.api_base}/chat/completions", json=body))
    await wait_until(lambda: server.state()["waiting"] == 1, timeout=5, what="the request to be held")
    for path in ("/health", "/v1/models", "/gpu-status"):
        async with http.get(f"{server.url}{path}", timeout=SHORT) as response:
            assert response.status == 200, path
    server.set_fault("hang")
    with pytest.raises(TimeoutError):
        async with http.get(f"{server.url}/health", timeout=SHORT):
            pass
    assert not held.done() and server.state()["waiting"] == 1
    server.clear_fault()
    status, raw = await asyncio.wait_for(held, timeout=5)
    assert status == 200
    assert json.loads(raw)["choices"][0]["message"]["content"] == server.answer_for(MESSAGES)


async def test_hang_is_released_by_stop(http: aiohttp.ClientSession) -> None:
    node = FakeVLLM("stopper", tokens_per_s=0)
    await node.start()
    node.set_fault("hang")
    held = asyncio.create_task(fetch(http, "GET", f"{node.url}/health"))
    await wait_until(lambda: node.state()["requests"]["total"] == 1, timeout=5, what="the request to arrive")
    await asyncio.wait_for(node.stop(), timeout=5)
    status, _ = await asyncio.wait_for(held, timeout=5)
    assert status == 503


async def test_slow_adds_latency_and_clear_releases(http: aiohttp.ClientSession, server: FakeVLLM) -> None:
    server.set_fault("slow", delay_s=0.3)
    started = time.monotonic()
    async with http.get(f"{server.url}/health") as response:
        assert response.status == 200
    assert time.monotonic() - started >= 0.3
    server.set_fault("slow", delay_s=60)
    body = {"model": "m", "messages": MESSAGES}
    held = asyncio.create_task(fetch(http, "POST", f"{server.api_base}/chat/completions", json=body))
    await wait_until(lambda: server.state()["waiting"] == 1, timeout=5, what="the request to be delayed")
    with pytest.raises(TimeoutError):  # every non-control endpoint is slowed, /metrics included
        await fetch(http, "GET", f"{server.url}/metrics", timeout=SHORT)
    server.clear_fault()
    status, _ = await asyncio.wait_for(held, timeout=5)  # released long before 60 s
    assert status == 200


async def test_drop_midstream_aborts_the_connection(
    http: aiohttp.ClientSession, client: openai.AsyncOpenAI, server: FakeVLLM
) -> None:
    server.set_fault("drop_midstream", after_chunks=3)
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    received: list[str] = []
    async with http.post(f"{server.api_base}/chat/completions", json=body) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for payload in sse_payloads(response):
                received.append(payload["choices"][0]["delta"]["content"])
    assert "".join(received) == "".join(answer_pieces(MESSAGES)[:3])  # role chunk's "" + 3 words
    assert len([piece for piece in received if piece]) == 3
    with pytest.raises((httpx.RemoteProtocolError, openai.APIConnectionError)):
        await stream_contents(client, MESSAGES)
    completion = await client.chat.completions.create(model="m", messages=MESSAGES)  # unaffected
    assert completion.choices[0].message.content == server.answer_for(MESSAGES)
    assert server.state()["requests"]["by_status"] == {"aborted": 2, "200": 1}


async def test_gpu_pressure_shows_saturation_but_serves(
    http: aiohttp.ClientSession, client: openai.AsyncOpenAI, server: FakeVLLM
) -> None:
    server.set_fault("gpu_pressure")
    async with http.get(f"{server.url}/metrics") as response:
        parsed = metrics(await response.text())
    assert parsed["vllm:kv_cache_usage_perc"][0] == parsed["vllm:gpu_cache_usage_perc"][0] == 0.99
    assert parsed["vllm:num_requests_waiting"][0] == 64
    async with http.get(f"{server.url}/gpu-status") as response:
        assert (await response.json())["gpus"][0]["used_ratio"] == pytest.approx(0.97)
    async with http.get(f"{server.url}/gpu-memory") as response:
        assert (await response.json())["used_ratio"] == pytest.approx(0.97)
    completion = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].message.content == server.answer_for(MESSAGES)


# --- control ---------------------------------------------------------------------------------


async def test_control_endpoint_sets_clears_and_counts(http: aiohttp.ClientSession, server: FakeVLLM) -> None:
    async with http.post(f"{server.url}/control/fault", json={"mode": "drop_midstream"}) as response:
        assert response.status == 200
        assert (await response.json())["fault"] == {"mode": "drop_midstream", "after_chunks": 3}
    async with http.post(f"{server.url}/control/fault", json={"mode": "slow", "delay_s": 0}) as response:
        assert (await response.json())["fault"] == {"mode": "slow", "delay_s": 0.0}
    async with http.delete(f"{server.url}/control/fault") as response:
        assert (await response.json())["fault"] is None
    async with http.get(f"{server.url}/health"):
        pass
    async with http.get(f"{server.url}/nowhere"):
        pass
    counters = (await state(http, server))["requests"]
    assert counters == {
        "total": 2,
        "by_endpoint": {"/health": 1, "other": 1},
        "by_status": {"200": 1, "404": 1},
    }


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"mode": "meltdown"}, "meltdown"),
        ({"mode": "slow", "delay_s": -1}, "delay_s"),
        ({"mode": "slow", "delay_s": "soon"}, "delay_s"),
        ({"mode": "drop_midstream", "after_chunks": 1.5}, "after_chunks"),
        ({"mode": "hang", "delay_s": 1}, "delay_s"),
        ({"delay_s": 1}, "mode"),
    ],
)
async def test_control_rejects_bad_faults(
    http: aiohttp.ClientSession, server: FakeVLLM, body: dict, needle: str
) -> None:
    async with http.post(f"{server.url}/control/fault", json=body) as response:
        assert response.status == 400
        assert needle in (await response.json())["error"]["message"]
    assert server.fault is None


async def test_control_rejects_non_json(http: aiohttp.ClientSession, server: FakeVLLM) -> None:
    async with http.post(f"{server.url}/control/fault", data=b"hang") as response:
        assert response.status == 400


def test_set_fault_validates_in_process() -> None:
    node = FakeVLLM("offline")
    with pytest.raises(FaultError, match="meltdown"):
        node.set_fault("meltdown")
    with pytest.raises(FaultError, match="after_chunks"):
        node.set_fault("drop_midstream", after_chunks=True)
    assert node.set_fault("slow", delay_s="1.5").params == {"delay_s": 1.5}


# --- CLI and subprocess ----------------------------------------------------------------------


def test_cli_builds_the_configured_server() -> None:
    parser = argparse.ArgumentParser()
    fake_vllm_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["fake-vllm", "--port", "8011", "--name", "n1", "--words", "5", "--tokens-per-s", "0",
         "--fault", "slow", "--fault-param", "delay_s=2", "--chunk-tokens", "2,0"]
    )  # fmt: skip
    assert args.handler is fake_vllm_cli.run
    node = fake_vllm_cli._server_from_args(args)
    assert (node.name, node.port, node.words, node.tokens_per_s) == ("n1", 8011, 5, 0.0)
    assert node.chunk_tokens == (2, 0)
    assert node.fault is not None and node.fault.as_dict() == {"mode": "slow", "delay_s": 2.0}
    with pytest.raises(SystemExit):
        parser.parse_args(["fake-vllm", "--port", "1", "--name", "x", "--fault-param", "novalue"])


def test_process_survives_sigkill_and_restarts_on_the_same_port() -> None:
    with FakeVLLMProcess("proc-a", tokens_per_s=0) as node:
        sdk = openai.OpenAI(base_url=node.api_base, api_key="fake", max_retries=0, timeout=5)
        before = sdk.chat.completions.create(model="m", messages=MESSAGES)
        assert before.system_fingerprint == "proc-a"
        assert before.choices[0].message.content == expected_answer(MESSAGES)
        port = node.port
        node.kill()
        assert not node.alive
        with pytest.raises(openai.APIConnectionError):
            sdk.chat.completions.create(model="m", messages=MESSAGES)
        node.restart()
        assert node.alive and node.port == port
        after = sdk.chat.completions.create(model="m", messages=MESSAGES)
        assert after.choices[0].message.content == before.choices[0].message.content
        node.set_fault("http_500")
        with pytest.raises(openai.InternalServerError):
            sdk.chat.completions.create(model="m", messages=MESSAGES)
        with pytest.raises(FaultError, match="meltdown"):
            node.set_fault("meltdown")
        assert node.clear_fault()["fault"] is None
        sdk.close()
    assert not node.alive
    assert node.returncode == 0  # SIGTERM is a clean stop


def test_process_start_failure_reports_stderr() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        node = FakeVLLMProcess("proc-b", port=taken.getsockname()[1])
        with pytest.raises(FakeVLLMProcessError, match="cannot bind"):
            node.start(timeout=10)
    assert not node.alive


def test_a_picked_port_taken_before_the_node_binds_it_moves_the_node_once() -> None:
    """The port ``FakeVLLMProcess`` picks is free when picked, but another process can take it
    before the node binds it (a drill on a busy host lost a scenario so: "address already in
    use"). Until the node has served, it moves to another port; afterwards a restart keeps it."""
    node = FakeVLLMProcess("proc-m")
    picked = node.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", picked))
        taken.listen()
        with node:
            assert node.port != picked and node.state()["name"] == "proc-m"
            moved = node.port
            node.restart(timeout=30)
            assert node.port == moved


def test_process_with_a_start_fault_is_up_but_unhealthy() -> None:
    node = FakeVLLMProcess("proc-c", extra_args=["--fault", "http_500"])
    with node:
        assert node.state()["fault"] == {"mode": "http_500"}
        with pytest.raises(httpx.HTTPStatusError):
            httpx.get(f"{node.url}/health", timeout=5).raise_for_status()


# --- responses (stateful, like vLLM's) -------------------------------------------------------


async def chained(client: openai.AsyncOpenAI, texts: list[str]) -> tuple[list, list[dict]]:
    """A Responses API chain: each turn names the previous response; returns responses and the
    conversation the node built from them."""
    responses, conversation = [], []
    for text in texts:
        previous = {"previous_response_id": responses[-1].id} if responses else {}
        response = await client.responses.create(model="m", input=text, **previous)
        conversation += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": response.output_text},
        ]
        responses.append(response)
    return responses, conversation


async def test_responses_chain_like_vllm_and_answer_deterministically(
    client: openai.AsyncOpenAI, server: FakeVLLM
) -> None:
    responses, conversation = await chained(client, ["first", "second", "third"])
    for turn, response in enumerate(responses):
        assert response.output_text == expected_answer(conversation[: 2 * turn + 1])
        assert response.status == "completed" and response.id.startswith("resp_")
    assert responses[1].previous_response_id == responses[0].id
    assert responses[2].usage.output_tokens == 24 and responses[2].usage.input_tokens == sum(
        len(m["content"].split()) for m in conversation[:5]
    )
    # The same conversation sent in full (as the plugin rebuilds it) gets the same answer.
    whole = await client.responses.create(model="m", input=conversation[:5])
    assert whole.output_text == responses[2].output_text
    parts = [{"role": "user", "content": [{"type": "input_text", "text": "first"}]}]
    assert (await client.responses.create(model="m", input=parts)).output_text == responses[0].output_text
    assert len(server.responses) == 5
    instructed = await client.responses.create(model="m", input="first", instructions="be brief")
    assert instructed.output_text == expected_answer(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first"}]
    )


async def test_responses_unknown_to_a_node_are_a_404(client: openai.AsyncOpenAI, server: FakeVLLM) -> None:
    responses, _ = await chained(client, ["hello"])
    async with FakeVLLM("node-b", tokens_per_s=0) as other:
        sdk = openai.AsyncOpenAI(base_url=other.api_base, api_key="fake", max_retries=0, timeout=5)
        with pytest.raises(openai.NotFoundError) as info:
            await sdk.responses.create(model="m", input="more", previous_response_id=responses[0].id)
        await sdk.close()
        assert f"Response with id '{responses[0].id}' not found." in str(info.value)
        assert other.state()["requests"]["by_status"] == {"404": 1}


async def test_responses_stream_named_events_and_store_the_whole_answer(
    client: openai.AsyncOpenAI, server: FakeVLLM
) -> None:
    stream = await client.responses.create(model="m", input="stream it", stream=True)
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    final = events[-1].response
    assert len(deltas) == 24 and "".join(deltas) == final.output_text
    assert final.output_text == expected_answer([{"role": "user", "content": "stream it"}])
    assert [event.sequence_number for event in events] == list(range(len(events)))
    follow = await client.responses.create(model="m", input="next", previous_response_id=final.id)
    assert follow.output_text == expected_answer(
        [
            {"role": "user", "content": "stream it"},
            {"role": "assistant", "content": final.output_text},
            {"role": "user", "content": "next"},
        ]
    )


async def test_responses_store_false_truncation_and_cuts_are_not_kept(
    http: aiohttp.ClientSession, client: openai.AsyncOpenAI, server: FakeVLLM
) -> None:
    unstored = await client.responses.create(model="m", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="m", input="x", previous_response_id=unstored.id)
    short = await client.responses.create(model="m", input="hi", max_output_tokens=3)
    assert short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens"
    assert short.output_text == "".join(answer_pieces([{"role": "user", "content": "hi"}])[:3])
    server.set_fault("drop_midstream", after_chunks=2)
    body = {"model": "m", "input": "cut me", "stream": True}
    async with http.post(f"{server.api_base}/responses", json=body) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    server.clear_fault()
    assert len(server.responses) == 1  # only the truncated-but-complete answer
    assert [type(r).__name__ for r in server.received] == ["ResponsesRequest"] * 4


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b'{"model": "m"}', 400, "'input'"),
        (b'{"model": "m", "input": [{"role": "wizard", "content": "x"}]}', 400, "role"),
        (b'{"model": "m", "input": [{"type": "function_call_output"}]}', 400, "message item"),
        (b'{"model": "m", "input": "x", "max_output_tokens": 0}', 400, "max_output_tokens"),
        (b'{"model": "m", "input": "x", "previous_response_id": "resp_gone"}', 404, "not found"),
        (b"{nope", 400, "not valid JSON"),
    ],
)
async def test_bad_responses_requests_get_openai_errors(
    http: aiohttp.ClientSession, server: FakeVLLM, body: bytes, status: int, needle: str
) -> None:
    async with http.post(f"{server.api_base}/responses", data=body) as response:
        assert response.status == status
        error = (await response.json())["error"]
    assert needle in error["message"] and error["code"] == status


async def test_responses_obey_faults(client: openai.AsyncOpenAI, server: FakeVLLM) -> None:
    server.set_fault("http_500")
    with pytest.raises(openai.InternalServerError):
        await client.responses.create(model="m", input="x")
    server.clear_fault()
    assert (await client.responses.create(model="m", input="x")).status == "completed"
    assert server.state()["requests"]["by_endpoint"] == {"/v1/responses": 2}


def test_a_restarted_process_has_forgotten_its_responses() -> None:
    with FakeVLLMProcess("proc-r") as node:
        sdk = openai.OpenAI(base_url=node.api_base, api_key="fake", max_retries=0, timeout=5)
        first = sdk.responses.create(model="m", input="remember this")
        assert sdk.responses.create(model="m", input="ok?", previous_response_id=first.id).output_text
        node.restart()
        with pytest.raises(openai.NotFoundError):
            sdk.responses.create(model="m", input="ok?", previous_response_id=first.id)
        sdk.close()

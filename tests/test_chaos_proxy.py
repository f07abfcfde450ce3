"""Fault injection through the real LiteLLM proxy, enabled from config.yaml alone, steered with the
real ``litellm-failover chaos`` CLI through the proxy's database and read with the openai SDK, as
an operator running a drill on staging would.

One proxy for the module in front of two fake vLLM processes in two tiers (p1 serves, p2 is the
standby). Ejection is out of reach, so where a request goes says what the fault did.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import openai
import pytest
from control_support import run_cli, wide_terminal  # noqa: F401 (wide_terminal: autouse)
from fake_nodes import proxy_running, running, tiered_model_list, wait_all_healthy
from streams_support import QUESTION, read_stream
from waiting import wait_until

from litellm_failover.drill.loadgen import openai_sender
from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.text import DEFAULT_WORDS, expected_answer
from litellm_failover.store.queries import list_events

pytestmark = pytest.mark.proxy

TIERS = {"p1": 1, "p2": 2}


def proxy_config(nodes: dict[str, FakeVLLMProcess], database_url: str) -> dict[str, Any]:
    return {
        "model_list": tiered_model_list(nodes, TIERS),
        "litellm_settings": {"callbacks": ["litellm_failover.proxy_handler"]},
        "router_settings": {"num_retries": 2, "retry_after": 0},
        "failover_settings": {
            "database_url": database_url,
            "health": {"interval_s": 0.5, "failure_interval_s": 0.1},
            "outlier": {"consecutive_errors": 1000, "eject_on_connect_error": False},
            "control": {"poll_interval_s": 0.1, "heartbeat_interval_s": 0.5},
            "chaos": {"enabled": True, "max_duration_s": 600},
        },
    }


@pytest.fixture(scope="module")
def nodes():
    with running({name: FakeVLLMProcess(name, tokens_per_s=200) for name in TIERS}) as started:
        yield started


@pytest.fixture(scope="module")
def proxy(nodes, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("chaos-proxy")
    database_url = f"sqlite+aiosqlite:///{workdir}/events.db"
    with proxy_running(proxy_config(nodes, database_url), workdir, database_url) as process:
        yield process


@pytest.fixture
async def client(proxy):
    await wait_all_healthy(proxy.database_url, TIERS)
    sdk = openai.AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=30)
    yield sdk
    await sdk.close()
    assert await run_cli("chaos", "clear", "--url", proxy.database_url) == 0  # no fault outlives a test


async def stored(proxy: ProxyProcess, event_type: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` events of a type, once the proxy's writer has flushed them."""
    found: list[dict[str, Any]] = []

    async def written() -> bool:
        nonlocal found
        try:
            found = await list_events(proxy.database_url, event_type=event_type, limit=1000)
        except Exception:
            return False
        return len(found) >= count

    await wait_until(written, timeout=10, what=f"{count} {event_type} event(s)")
    return sorted(found, key=lambda e: e["created_at"])


async def test_an_injected_error_never_reaches_the_client(proxy, client, capsys):
    url = proxy.database_url
    code = await run_cli(
        "chaos", "inject", "p1", "--kind", "error", "--probability", "1", "--for", "5m", "--url", url
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "applied  injecting error 503 at p=1 on p1" in out.out
    send = openai_sender(client, "chat")
    answers = [await send(index, index % 2 == 1) for index in range(6)]
    assert [r.error for r in answers if not r.ok] == []
    assert Counter(r.served_by for r in answers) == {"p2": 6}

    assert await run_cli("status", "--live", "--url", url) == 0
    assert "error 503" in capsys.readouterr().out
    assert await run_cli("chaos", "clear", "p1", "--url", url) == 0
    assert "cleared 1 fault(s) on p1" in capsys.readouterr().out
    assert Counter(r.served_by for r in [await send(index, False) for index in range(2)]) == {"p1": 2}

    [started] = await stored(proxy, "chaos_injected", 1)
    [ended] = await stored(proxy, "chaos_cleared", 1)
    assert started["deployment_id"] == "p1" and "@" in started["details"]["issued_by"]
    assert ended["details"]["injected"] == 6  # one injected failure per request, none seen by a client


async def test_a_cut_stream_is_continued_behind_the_proxy(proxy, client, capsys):
    url = proxy.database_url
    code = await run_cli(
        "chaos", "inject", "p1", "--kind", "stream_cut", "--probability", "1", "--for", "5m",
        "--after-chunks", "6", "--url", url,
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    before = len(await list_events(url, event_type="stream_resumed", limit=1000))
    for _ in range(2):
        stream = await client.chat.completions.create(
            model="chat", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
        seen = await read_stream(stream)
        seen.assert_one_unbroken_answer(expected_answer(QUESTION), words=DEFAULT_WORDS)
        assert seen.served_by == ["p1", "p2"]
    resumed = (await stored(proxy, "stream_resumed", before + 2))[before:]
    assert [(e["from_deployment"], e["to_deployment"]) for e in resumed] == [("p1", "p2")] * 2
    assert all("chaos" in e["details"]["cause"] for e in resumed)


async def test_latency_then_expiry_behind_the_proxy(proxy, client, capsys):
    url = proxy.database_url
    code = await run_cli(
        "chaos", "inject", "p1", "--kind", "latency", "--probability", "1", "--for", "3s",
        "--delay", "600ms", "--url", url,
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    send = openai_sender(client, "chat")
    [slow] = [await send(0, False)]
    assert slow.ok and slow.served_by == "p1" and slow.ended_at - slow.started_at >= 0.6
    [expired] = await stored(proxy, "chaos_expired", 1)  # about 3 s after the inject
    assert expired["deployment_id"] == "p1" and expired["details"]["injected"] >= 1
    [after] = [await send(1, False)]
    assert after.ok and after.served_by == "p1"
    capsys.readouterr()
    assert await run_cli("status", "--live", "--url", url, "--json") == 0
    [live] = json.loads(capsys.readouterr().out)["results"]
    assert live["details"]["chaos"] == {"enabled": True, "active": []}
    # Nothing was injected after the end: the expired event's count is the whole count.
    assert expired["details"]["injected"] == 1


async def test_a_proxy_refuses_an_unknown_deployment(proxy, client, capsys):
    code = await run_cli(
        "chaos", "inject", "p7", "--kind", "error", "--probability", "0.5", "--for", "1m", "--url",
        proxy.database_url,
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 1
    assert "refused  unknown deployment 'p7' (known: p1, p2)" in out.out
    # Over the proxy's own chaos.max_duration_s (600 s here): refused by the proxy, not the CLI.
    code = await run_cli(
        "chaos", "inject", "p1", "--kind", "error", "--probability", "0.5", "--for", "1h", "--url",
        proxy.database_url,
    )  # fmt: skip
    assert code == 1 and "over chaos.max_duration_s=600" in capsys.readouterr().out

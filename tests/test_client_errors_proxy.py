"""A client's bad request is the client's error (issue 11 §7), through the real LiteLLM proxy.

Two proxies in front of the same two fake vLLM processes, one with the plugin and one without.
Each kind of malformed request, sent as raw JSON the way any HTTP client could, gets the same
status and the same error message from both; afterwards the plugin's live status (read with the
real CLI) shows every deployment healthy with nothing in flight, and a drain completes at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from control_support import run_cli
from fake_nodes import running

from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.providers.fake.process import FakeVLLMProcess

pytestmark = pytest.mark.proxy

BAD_REQUESTS: dict[str, dict[str, Any]] = {
    "max_tokens not an integer": {"max_tokens": "ten"},
    "stream not a boolean": {"stream": "yes"},
    "messages a string": {"messages": "hi"},
    "messages of numbers": {"messages": [1]},
    "unknown role": {"messages": [{"role": "wizard", "content": "x"}]},
    "streamed, max_tokens not an integer": {"stream": True, "max_tokens": "ten"},
    "streamed, messages a string": {"stream": True, "messages": "hi"},
}


def proxy_config(nodes: dict[str, FakeVLLMProcess], database_url: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_list": [
            {
                "model_name": "chat",
                "litellm_params": {"model": "hosted_vllm/fake-model", "api_base": n.api_base, "timeout": 5},
                "model_info": {"id": name, "failover": {"gpu_url": n.url}},
            }
            for name, n in nodes.items()
        ],
        "router_settings": {"num_retries": 2, "retry_after": 0},
    }
    if database_url is not None:
        config["litellm_settings"] = {"callbacks": ["litellm_failover.proxy_handler"]}
        config["failover_settings"] = {
            "database_url": database_url,
            "health": {"interval_s": 0.5, "failure_interval_s": 0.1},
            "control": {"poll_interval_s": 0.1, "heartbeat_interval_s": 0.5},
        }
    return config


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("LITELLM_FAILOVER_REDIS_URL", raising=False)


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[tuple[ProxyProcess, ProxyProcess, str]]:
    """(without the plugin, with it, the plugin's database url)."""
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    (tmp_path / "plain").mkdir()
    (tmp_path / "plugin").mkdir()
    with running({name: FakeVLLMProcess(name, tokens_per_s=0) for name in ("p1", "p2")}) as nodes:
        with ProxyProcess(proxy_config(nodes, None), tmp_path / "plain") as plain:
            with ProxyProcess(proxy_config(nodes, database_url), tmp_path / "plugin") as plugged:
                yield plain, plugged, database_url


async def send(proxy: ProxyProcess, extra: dict[str, Any]) -> tuple[int, str]:
    """The status and the error message's first line."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "hello"}], **extra}
    headers = {"Authorization": f"Bearer {proxy.master_key}"}
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{proxy.url}/chat/completions", json=body, headers=headers)
    try:
        message = str(response.json()["error"]["message"]).splitlines()[0]
    except (ValueError, KeyError, TypeError, IndexError):
        message = response.text[:200]
    return response.status_code, message


async def live_deployments(database_url: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert await run_cli("status", "--live", "--url", database_url, "--json") == 0
    [live] = json.loads(capsys.readouterr().out)["results"]
    return live["details"]["groups"]["chat"]["deployments"]


async def test_each_bad_request_gets_the_backends_answer_and_leaves_nothing_behind(proxies, capsys):
    plain, plugged, database_url = proxies
    for kind, extra in BAD_REQUESTS.items():
        for _ in range(3):  # more than one deployment's worth: exclusions would show
            expected = await send(plain, extra)
            assert 400 <= expected[0] < 500, (kind, expected)
            assert await send(plugged, extra) == expected, kind
    for row in await live_deployments(database_url, capsys):
        assert (row["state"], row["in_flight"]) == ("healthy", 0), row
        assert "eject" not in row["reason"], row
    assert await run_cli("drain", "p1", "--url", database_url) == 0
    assert "p1 drained: 0 in flight" in capsys.readouterr().out

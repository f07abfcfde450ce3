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
from control_support import run_cli, wide_terminal  # noqa: F401 (wide_terminal: autouse)
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


GROUPS = {"chat": ("p", False), "tiered": ("q", True)}
"""Both fake nodes in each group: ``chat`` in one tier (p1, p2); ``tiered`` with q1 at order 1
and q2 at order 2, where LiteLLM falls back tier by tier after any failure, a 400 included."""


def deployment(group: str, index: int, node: FakeVLLMProcess) -> dict[str, Any]:
    prefix, tiered = GROUPS[group]
    params: dict[str, Any] = {"model": "hosted_vllm/fake-model", "api_base": node.api_base, "timeout": 5}
    if tiered:
        params["order"] = index + 1
    info = {"id": f"{prefix}{index + 1}", "failover": {"gpu_url": node.url}}
    return {"model_name": group, "litellm_params": params, "model_info": info}


def proxy_config(nodes: dict[str, FakeVLLMProcess], database_url: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_list": [
            deployment(group, i, node) for group in GROUPS for i, node in enumerate(nodes.values())
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


async def send(proxy: ProxyProcess, group: str, extra: dict[str, Any]) -> tuple[int, str]:
    """The status and the error message's first line."""
    body = {"model": group, "messages": [{"role": "user", "content": "hello"}], **extra}
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
    return [row for group in GROUPS for row in live["details"]["groups"][group]["deployments"]]


async def test_each_bad_request_gets_the_backends_answer_and_leaves_nothing_behind(proxies, capsys):
    plain, plugged, database_url = proxies
    for group in GROUPS:
        for kind, extra in BAD_REQUESTS.items():
            for _ in range(3):  # more than one deployment's worth: exclusions would show
                expected = await send(plain, group, extra)
                assert 400 <= expected[0] < 500 and expected[0] != 429, (group, kind, expected)
                assert await send(plugged, group, extra) == expected, (group, kind)
    rows = await live_deployments(database_url, capsys)
    assert len(rows) == 4
    for row in rows:
        assert (row["state"], row["in_flight"]) == ("healthy", 0), row
        assert "eject" not in row["reason"], row
    for deployment_id in ("p1", "q1"):
        assert await run_cli("drain", deployment_id, "--url", database_url) == 0
        assert f"{deployment_id} drained: 0 in flight" in capsys.readouterr().out

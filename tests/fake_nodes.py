"""Start a set of fake vLLM servers for a test and stop every one afterwards, whatever happened.

``serving`` runs in-process ``FakeVLLM`` servers (the Router tests); ``running`` runs
``FakeVLLMProcess`` subprocesses (the proxy tests, where a node is SIGKILLed and restarted).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.vllm import FakeVLLM


@asynccontextmanager
async def serving(servers: dict[str, FakeVLLM]) -> AsyncIterator[dict[str, FakeVLLM]]:
    try:
        for server in servers.values():
            await server.start()
        yield servers
    finally:
        for server in servers.values():
            await server.stop()


@contextmanager
def running(nodes: dict[str, FakeVLLMProcess]) -> Iterator[dict[str, FakeVLLMProcess]]:
    try:
        for node in nodes.values():
            node.start()
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


def tiered_model_list(
    nodes: Mapping[str, Any],
    tiers: Mapping[str, int],
    *,
    model: str = "hosted_vllm/fake-model",
    api_key: str | None = None,
    probe: bool = True,
    timeout_s: float = 10,
) -> list[dict[str, Any]]:
    """One ``chat`` deployment per node, its id the node's name and its tier ``tiers[name]``:
    the model list most Router and proxy tests share. ``probe=False`` leaves detection to
    traffic (``model_info.failover.probe``), as Router tests without a prober want."""
    deployments = []
    for name, node in nodes.items():
        params: dict[str, Any] = {"model": model, "api_base": node.api_base}
        if api_key is not None:
            params["api_key"] = api_key
        params.update(order=tiers[name], timeout=timeout_s, stream_timeout=timeout_s)
        info: dict[str, Any] = {"id": name}
        if not probe:
            info["failover"] = {"probe": False}
        deployments.append({"model_name": "chat", "litellm_params": params, "model_info": info})
    return deployments


async def wait_all_healthy(database_url: str, ids: Iterable[str], *, within_s: float = 15) -> None:
    """Wait until a proxy's plugin has stored every deployment in ``ids`` as healthy: its probes
    have run and its writer has flushed, so a test starts from a settled routing table."""
    from waiting import wait_until

    from litellm_failover.store.queries import list_deployment_states

    wanted = dict.fromkeys(ids, "healthy")

    async def all_healthy() -> bool:
        try:
            rows = await list_deployment_states(database_url)
        except Exception:
            return False  # the table appears with the plugin's first flush
        return {row["deployment_id"]: row["state"] for row in rows} == wanted

    await wait_until(all_healthy, timeout=within_s, what=f"{', '.join(wanted)} healthy")


@contextmanager
def proxy_running(config: dict[str, Any], workdir: Path, database_url: str) -> Iterator[ProxyProcess]:
    """A real ``litellm --config`` proxy for a test, stopped afterwards whatever happened; its
    ``database_url`` (the plugin's store) rides along for the test to read events back."""
    process = ProxyProcess(config, workdir)
    process.database_url = database_url  # type: ignore[attr-defined]
    with process:
        yield process

"""Start a set of fake vLLM servers for a test and stop every one afterwards, whatever happened.

``serving`` runs in-process ``FakeVLLM`` servers (the Router tests); ``running`` runs
``FakeVLLMProcess`` subprocesses (the proxy tests, where a node is SIGKILLed and restarted).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
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


def quick_probe_proxy_config(
    nodes: Mapping[str, Any],
    tiers: Mapping[str, int],
    database_url: str,
    *,
    timeout_s: float,
    **failover: Any,
) -> dict[str, Any]:
    """A proxy config with the plugin probing every 0.25 s (0.05 s after a failure) and calling a
    probe unanswered after 1 s, LiteLLM's own timeouts at ``timeout_s`` and two retries: the
    setup of the tests that eject a node for not answering behind the proxy. ``failover``: more
    ``failover_settings`` sections."""
    return {
        "model_list": tiered_model_list(nodes, tiers, timeout_s=timeout_s),
        "litellm_settings": {"callbacks": ["litellm_failover.proxy_handler"]},
        "router_settings": {"num_retries": 2, "retry_after": 0},
        "failover_settings": {
            "database_url": database_url,
            "health": {"interval_s": 0.25, "failure_interval_s": 0.05, "max_probe_latency_s": 1.0},
            **failover,
        },
    }


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


async def wait_events(
    database_url: str,
    event_type: str,
    wanted: Callable[[list[dict[str, Any]]], bool] = bool,
    *,
    within_s: float = 10,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """The store's ``event_type`` events (from ``since``, inclusive, when given), once
    ``wanted(events)`` holds (bounded). A proxy's writer flushes on its own schedule and writes
    events and state rows in separate steps, so a test that saw a request answered, or a state row
    change, reads events through this rather than once."""
    from waiting import wait_until

    from litellm_failover.store.queries import list_events

    found: list[dict[str, Any]] = []

    async def present() -> bool:
        try:
            found[:] = await list_events(database_url, event_type=event_type, since=since, limit=10_000)
        except Exception:
            return False  # the table appears with the writer's first flush
        return wanted(found)

    await wait_until(present, timeout=within_s, what=f"the {event_type} events wanted in the store")
    return found


@contextmanager
def proxy_running(config: dict[str, Any], workdir: Path, database_url: str) -> Iterator[ProxyProcess]:
    """A real ``litellm --config`` proxy for a test, stopped afterwards whatever happened; its
    ``database_url`` (the plugin's store) rides along for the test to read events back."""
    process = ProxyProcess(config, workdir)
    process.database_url = database_url  # type: ignore[attr-defined]
    with process:
        wait_store_migrated(database_url)
        yield process


def wait_store_migrated(database_url: str, *, within_s: float = 30) -> None:
    """Wait until the proxy's writer has migrated its store to head.

    The writer migrates in the background and lets the proxy serve after 2 s whatever happened
    (rows wait in its buffer), so on a loaded machine a test could otherwise read the store before
    its tables exist. Synchronous, since proxies start from sync fixtures and from inside async
    tests alike: each check runs on its own loop in a worker thread.
    """
    from litellm_failover.store.migrate import current_revision, head_revision

    head = head_revision()

    def revision() -> str | None:
        try:
            return asyncio.run(current_revision(database_url))
        except Exception:
            return None  # no file or no version table yet

    deadline = time.monotonic() + within_s
    with ThreadPoolExecutor(max_workers=1) as pool:
        while pool.submit(revision).result() != head:
            if time.monotonic() > deadline:
                raise AssertionError(f"the proxy's store did not reach revision {head} in {within_s}s")
            time.sleep(0.05)  # polling a condition with a deadline, not synchronising on time

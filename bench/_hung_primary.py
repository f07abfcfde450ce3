"""A hung primary under load, plain LiteLLM vs LiteLLM with litellm-failover (issue 12 §1).

One primary (p1, ``order: 1``) and one standby (s1, ``order: 2``), fake vLLM subprocesses, the
real ``litellm.Router`` in this process with the timeouts of the issue's run (``timeout: 30``,
``stream_timeout: 10``; LiteLLM's own default, 600 s, would only make plain LiteLLM look worse).
``plain`` is LiteLLM alone as a careful user sets it up (``num_retries: 2``, ``allowed_fails: 1``,
``cooldown_time: 30``); ``plugin`` is the same Router with ``attach()`` and default settings.

Two loads, each on fresh nodes and a fresh Router, every other request streamed:

- open loop: a request every ``1 / rate`` seconds whatever the answers do (a client population
  that does not slow down when the gateway does);
- closed loop: ``workers`` clients, each sending its next request when its last one is answered.

``FAULT_AT_S`` into the load p1 hangs (accepts, never answers, probes included); the load goes on
for ``WINDOW_S`` more. Reported per profile and load, for requests started in the ``WINDOW_S``
after the fault: their p99 and max latency, errors, and the longest any request (started before or
after the fault) waited; for the plugin, the detection time (fault to ejection), against the goal
that no request waits longer than the detection time plus 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # python -m bench.failover_comparison
    from bench import _common as common
except ImportError:  # python bench/failover_comparison.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]

FAULT_AT_S = 2.0
WINDOW_S = 10.0
OPEN_RATE_PER_S = 8.0
WORKERS = 8
REQUEST_CAP_S = 60.0  # a request still waiting after this counts as an error (bounds the run)
TIMEOUT_S = 30
STREAM_TIMEOUT_S = 10
LOADS = ("open", "closed")


@dataclass(slots=True)
class Sample:
    started: float
    ended: float = math.nan
    ok: bool = False
    served_by: str | None = None


async def _one(router: Any, index: int) -> Sample:
    sample = Sample(started=time.monotonic())
    stream = index % 2 == 1
    messages = [{"role": "user", "content": f"hung-primary bench request {index}"}]
    try:
        async with asyncio.timeout(REQUEST_CAP_S):
            response = await router.acompletion(model="chat", messages=messages, stream=stream)
            if stream:
                async for chunk in response:
                    sample.served_by = getattr(chunk, "system_fingerprint", None) or sample.served_by
            else:
                sample.served_by = getattr(response, "system_fingerprint", None)
        sample.ok = True
    except Exception:  # an error or the cap: the sample says so
        sample.ok = False
    sample.ended = time.monotonic()
    return sample


async def _open_loop(router: Any, stop_at: float) -> list[Sample]:
    tasks = []
    start = time.monotonic()
    for index in itertools.count():
        due = start + index / OPEN_RATE_PER_S
        if due >= stop_at:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(_one(router, index)))
    return list(await asyncio.gather(*tasks))


async def _closed_loop(router: Any, stop_at: float) -> list[Sample]:
    counter = itertools.count()
    samples: list[Sample] = []

    async def worker() -> None:
        while time.monotonic() < stop_at:
            samples.append(await _one(router, next(counter)))

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return samples


def _model_list(nodes: dict[str, Any]) -> list[dict[str, Any]]:
    order = {"p1": 1, "s1": 2}
    return [
        {
            "model_name": "chat",
            "litellm_params": {
                "model": "hosted_vllm/fake-model",
                "api_base": node.api_base,
                "order": order[name],
                "timeout": TIMEOUT_S,
                "stream_timeout": STREAM_TIMEOUT_S,
            },
            "model_info": {"id": name},
        }
        for name, node in nodes.items()
    ]


async def run_one(profile: str, load: str, workdir: Path) -> dict[str, Any]:
    """One profile under one load, on fresh nodes; returns its figures."""
    import litellm

    from litellm_failover import attach
    from litellm_failover.providers.fake.process import FakeVLLMProcess

    nodes = {name: FakeVLLMProcess(name, tokens_per_s=400) for name in ("p1", "s1")}
    plugin = None
    with contextlib.ExitStack() as stack:
        for node in nodes.values():
            node.start()
            stack.callback(node.stop)
        router = litellm.Router(
            model_list=_model_list(nodes), num_retries=2, retry_after=0, allowed_fails=1, cooldown_time=30
        )
        if profile == "plugin":
            plugin = attach(router, {"database_url": f"sqlite+aiosqlite:///{workdir}/{load}.db"})
            await plugin.start()
        try:
            for index in range(4):  # LiteLLM builds its clients on the first calls
                await _one(router, 1000 + index)
            return await _measure(router, plugin, nodes, load)
        finally:
            if plugin is not None:
                await plugin.stop()
                plugin.detach()


async def _measure(router: Any, plugin: Any, nodes: dict[str, Any], load: str) -> dict[str, Any]:
    start = time.monotonic()
    fault_at = start + FAULT_AT_S
    stop_at = fault_at + WINDOW_S
    ejected: list[float] = []

    def on_event(event: Any) -> None:
        # The ejection's own moment: a poller on this loop would see it late when the loop is busy.
        unhealthy = event.event_type == "state_change" and event.details.get("to_state") == "unhealthy"
        if unhealthy and event.deployment_id == "p1" and not ejected:
            ejected.append(time.monotonic())

    if plugin is not None:
        plugin.core.listeners.append(on_event)

    async def fault_then_watch() -> None:
        await asyncio.sleep(FAULT_AT_S)
        await asyncio.to_thread(nodes["p1"].set_fault, "hang")

    runner: Callable[[Any, float], Awaitable[list[Sample]]] = _open_loop if load == "open" else _closed_loop
    watcher = asyncio.create_task(fault_then_watch())
    samples = await runner(router, stop_at)
    await watcher
    window = [s for s in samples if fault_at <= s.started < stop_at]
    touched = [s for s in samples if s.ended >= fault_at]  # in flight at the fault, or after it
    latencies = [s.ended - s.started for s in window]
    figures = {
        "requests": len(samples),
        "window_requests": len(window),
        "window_errors": sum(not s.ok for s in window),
        "window_p50_s": common.percentile(latencies, 50),
        "window_p99_s": common.percentile(latencies, 99),
        "window_max_s": max(latencies, default=math.nan),
        "longest_wait_s": max((s.ended - s.started for s in touched), default=math.nan),
        "detection_s": ejected[0] - fault_at if ejected else math.nan,
        "served_by_standby": sum(s.served_by == "s1" for s in window),
    }
    if plugin is not None:
        figures["rescued"] = sum(plugin.status()["rescue"]["rescued"].values())
    return figures


async def run_all(workdir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Every load under both profiles, plain first."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for load in LOADS:
        for profile in ("plain", "plugin"):
            results.setdefault(load, {})[profile] = await run_one(profile, load, workdir)
    return results


def report(results: dict[str, dict[str, dict[str, Any]]], wall_s: float) -> dict[str, Any]:
    """Print the side-by-side table; the bench result with its goals (the plugin's side)."""
    columns = ("load", "profile", "window reqs", "errors", "p50 s", "p99 s", "max s", "longest wait s",
               "detection s", "rescued")  # fmt: skip
    rows = []
    metrics: dict[str, float] = {}
    goals = []
    for load, profiles in results.items():
        for profile, f in profiles.items():
            rows.append((load, profile, f["window_requests"], f["window_errors"], f["window_p50_s"],
                         f["window_p99_s"], f["window_max_s"], f["longest_wait_s"], f["detection_s"],
                         f.get("rescued", math.nan)))  # fmt: skip
            for key in ("window_p99_s", "window_max_s", "longest_wait_s", "window_errors"):
                metrics[f"{load}_{profile}_{key}"] = float(f[key])
        plugin = profiles["plugin"]
        goals.append(
            common.Goal(
                f"{load} loop: longest wait - detection (s)",
                plugin["longest_wait_s"] - plugin["detection_s"],
                "<=",
                1.0,
            )
        )
        goals.append(common.Goal(f"{load} loop: errors after the fault", plugin["window_errors"], "<=", 0))
    common.print_rows(
        "hung primary: requests started in the 10 s after the fault", columns, rows, text_columns=2
    )
    print(f"wall time: {wall_s:.0f} s")
    return common.result("hung_primary", metrics, goals, {"loads": results})

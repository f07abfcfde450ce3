"""A hung primary under load, plain LiteLLM vs LiteLLM with litellm-failover (issue 12 §1).

One primary (p1, ``order: 1``) and one standby (s1, ``order: 2``), fake vLLM subprocesses, the
real ``litellm.Router`` in this process. ``plain`` is LiteLLM alone as a careful user sets it up
(``num_retries: 2``, ``retry_after: 0``, ``allowed_fails: 1``, ``cooldown_time: 30``); ``plugin``
is the same Router with ``attach()`` and the plugin's DEFAULT settings: the only setting given is
``database_url`` (a SQLite file per run), because a bench must not write into a shared database.
``plugin_tuned`` adds the drill's detection settings (``TUNED_HEALTH``: probe every 0.5 s, 0.1 s
while failing, a probe slower than 1 s fails), the settings of the earlier published figures.

Two sets of deployment timeouts (``TIMEOUTS``), each run on both profiles:

- ``usual``: ``timeout: 30``, ``stream_timeout: 10`` (the issue's run);
- ``stock``: none set, so LiteLLM's own default applies (600 s). A request still waiting after
  ``REQUEST_CAP_S`` is cut by the bench (it bounds the run) and counted as *capped*: its true
  latency is longer.

Two loads, each on fresh nodes and a fresh Router, every other request streamed:

- open loop: a request every ``1 / rate`` seconds whatever the answers do (a client population
  that does not slow down when the gateway does);
- closed loop: ``workers`` clients, each sending its next request when its last one is answered.

``FAULT_AT_S`` into the load p1 hangs (accepts, never answers, probes included); the load goes on
for ``WINDOW_S`` more. Reported per timeouts, load and profile, for requests started in the
``WINDOW_S`` after the fault: their p99 and max latency and errors; the longest any request
(started before or after the fault) waited; for the plugin, the detection time, from the fault to
the ``created_at`` of the plugin's own ``state_change`` event taking p1 out (the timestamp the
events table stores), against the goal that no request waits longer than the detection time plus
1 s. Every request that was in flight at the fault or started after it is traced
(``bench/_hung_trace.py``): start and end relative to the fault, its deployment path (every attempt,
``!`` marking a failed one) and its rescues; the slowest are printed, all go into ``--json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # python -m bench.failover_comparison
    from bench import _common as common
    from bench import _hung_trace as trace
except ImportError:  # python bench/failover_comparison.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]
    import _hung_trace as trace  # type: ignore[no-redef]

FAULT_AT_S = 2.0
WINDOW_S = 10.0
OPEN_RATE_PER_S = 8.0
WORKERS = 8
REQUEST_CAP_S = 60.0  # a request still waiting after this is cut and counted as capped (bounds the run)
TIMEOUTS: dict[str, dict[str, int]] = {
    "usual": {"timeout": 30, "stream_timeout": 10},
    "stock": {},  # LiteLLM's own default: 600 s
}
LOADS = ("open", "closed")
PROFILES = ("plain", "plugin", "plugin_tuned")
TUNED_HEALTH = {"interval_s": 0.5, "failure_interval_s": 0.1, "max_probe_latency_s": 1.0}
SLOWEST_SHOWN = 5


@dataclass(slots=True)
class Sample:
    index: int
    started: float  # monotonic: latencies
    started_wall: float  # wall clock: joined with LiteLLM's hook times and the events' timestamps
    ended: float = math.nan
    ended_wall: float = math.nan
    ok: bool = False
    capped: bool = False
    served_by: str | None = None
    sent_late_s: float = 0.0  # open loop: how long after its due time the busy loop sent it


async def _one(router: Any, index: int, due: float | None = None) -> Sample:
    """One request. ``due`` (monotonic): when an open loop meant to send it; its latency counts
    from then, so a request the busy loop sent late is not reported as fast (no coordinated
    omission)."""
    now, wall = time.monotonic(), time.time()
    late = max(0.0, now - due) if due is not None else 0.0
    sample = Sample(index=index, started=now - late, started_wall=wall - late, sent_late_s=late)
    stream = index % 2 == 1
    messages = [{"role": "user", "content": f"hung-primary bench request {index}"}]
    try:
        async with asyncio.timeout(REQUEST_CAP_S):
            response = await router.acompletion(
                model="chat", messages=messages, stream=stream, litellm_trace_id=trace.trace_id(index)
            )
            if stream:
                async for chunk in response:
                    sample.served_by = getattr(chunk, "system_fingerprint", None) or sample.served_by
            else:
                sample.served_by = getattr(response, "system_fingerprint", None)
        sample.ok = True
    except TimeoutError:
        sample.capped = True  # the bench's cap, not the request's own timeout (LiteLLM raises its own)
    except Exception:  # an error: the sample says so
        sample.ok = False
    sample.ended = time.monotonic()
    sample.ended_wall = time.time()
    return sample


async def _open_loop(router: Any, stop_at: float) -> list[Sample]:
    tasks = []
    start = time.monotonic()
    for index in itertools.count():
        due = start + index / OPEN_RATE_PER_S
        if due >= stop_at:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(_one(router, index, due)))
    return list(await asyncio.gather(*tasks))


async def _closed_loop(router: Any, stop_at: float) -> list[Sample]:
    counter = itertools.count()
    samples: list[Sample] = []

    async def worker() -> None:
        while time.monotonic() < stop_at:
            samples.append(await _one(router, next(counter)))

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return samples


def _model_list(nodes: dict[str, Any], timeouts: dict[str, int]) -> list[dict[str, Any]]:
    order = {"p1": 1, "s1": 2}
    return [
        {
            "model_name": "chat",
            "litellm_params": {
                "model": "hosted_vllm/fake-model",
                "api_base": node.api_base,
                "order": order[name],
                **timeouts,
            },
            "model_info": {"id": name},
        }
        for name, node in nodes.items()
    ]


def plugin_settings(workdir: Path, name: str, profile: str) -> dict[str, Any]:
    """The plugin's settings in this bench: its defaults and a database of the run's own, plus
    the drill's detection settings for ``plugin_tuned``."""
    settings: dict[str, Any] = {"database_url": f"sqlite+aiosqlite:///{workdir}/{name}.db"}
    if profile == "plugin_tuned":
        settings["health"] = dict(TUNED_HEALTH)
    return settings


async def run_one(profile: str, load: str, timeouts: str, workdir: Path) -> dict[str, Any]:
    """One profile under one load, on fresh nodes; returns its figures."""
    import litellm

    from litellm_failover import attach
    from litellm_failover.providers.fake.process import FakeVLLMProcess

    nodes = {name: FakeVLLMProcess(name, tokens_per_s=400) for name in ("p1", "s1")}
    plugin = None
    attempts = trace.attempt_log_class()()
    with contextlib.ExitStack() as stack:
        for node in nodes.values():
            node.start()
            stack.callback(node.stop)
        router = litellm.Router(
            model_list=_model_list(nodes, TIMEOUTS[timeouts]),
            num_retries=2,
            retry_after=0,
            allowed_fails=1,
            cooldown_time=30,
        )
        if profile != "plain":
            plugin = attach(router, plugin_settings(workdir, f"{timeouts}-{load}-{profile}", profile))
            await plugin.start()
        litellm.logging_callback_manager.add_litellm_callback(attempts)
        stack.callback(litellm.logging_callback_manager.remove_callback_from_all_lists, attempts)
        try:
            for index in range(4):  # LiteLLM builds its clients on the first calls
                await _one(router, 100_000 + index)
            attempts.attempts.clear()
            return await _measure(router, plugin, nodes, load, attempts)
        finally:
            if plugin is not None:
                await plugin.stop()
                plugin.detach()


async def _measure(
    router: Any, plugin: Any, nodes: dict[str, Any], load: str, attempts: Any
) -> dict[str, Any]:
    log = trace.PluginLog(primary="p1")
    if plugin is not None:
        plugin.core.listeners.append(log)
    start = time.monotonic()
    stop_at = start + FAULT_AT_S + WINDOW_S
    fault: list[float] = []  # monotonic, wall: when p1 hangs (the control call returned)

    async def fault_later() -> None:
        await asyncio.sleep(FAULT_AT_S)
        await asyncio.to_thread(nodes["p1"].set_fault, "hang")
        fault.extend((time.monotonic(), time.time()))

    runner: Callable[[Any, float], Awaitable[list[Sample]]] = _open_loop if load == "open" else _closed_loop
    faulter = asyncio.create_task(fault_later())
    cpu_before = time.process_time()
    samples = await runner(router, stop_at)
    cpu_s = time.process_time() - cpu_before
    await faulter
    fault_at, fault_wall = fault
    window = [s for s in samples if fault_at <= s.started < fault_at + WINDOW_S]
    touched = [s for s in samples if s.ended >= fault_at]  # in flight at the fault, or after it
    latencies = [s.ended - s.started for s in window]
    detection = log.ejected_at - fault_wall if log.ejected_at is not None else math.nan
    requests = [_request_row(s, fault_wall, attempts, log) for s in sorted(touched, key=lambda s: s.started)]
    figures: dict[str, Any] = {
        "requests": len(samples),
        "window_requests": len(window),
        "window_errors": sum(not s.ok for s in window),
        "window_capped": sum(s.capped for s in window),
        "window_p50_s": common.percentile(latencies, 50),
        "window_p99_s": common.percentile(latencies, 99),
        "window_max_s": max(latencies, default=math.nan),
        "longest_wait_s": max((s.ended - s.started for s in touched), default=math.nan),
        "detection_s": detection,
        "served_by_standby": sum(s.served_by == "s1" for s in window),
        # Signs of a saturated CPU: this process's CPU over the load, and how late the open loop
        # could send (a loop busy elsewhere sends late; the latency still counts from the due time).
        "cpu_s": round(cpu_s, 2),
        "sent_late_max_s": round(max((s.sent_late_s for s in samples), default=0.0), 3),
        "traced": requests,
    }
    if plugin is not None:
        rescue = plugin.status()["rescue"]
        figures["rescued"] = sum(rescue["rescued"].values())
        figures["rescue"] = {k: v for k, v in rescue.items() if k not in ("first_token", "enabled")}
        figures["ejection"] = log.ejection
        # The goal per request: no wait longer than the detection time plus 1 s.
        figures["over_goal"] = sum(r["latency_s"] > detection + 1.0 for r in requests)
    return figures


def _request_row(sample: Sample, fault_wall: float, attempts: Any, log: trace.PluginLog) -> dict[str, Any]:
    key = trace.trace_id(sample.index)
    path = [a.deployment + ("!" if a.failed else "") for a in attempts.attempts.get(key, ())]
    return {
        "index": sample.index,
        "stream": sample.index % 2 == 1,
        "start_s": round(sample.started_wall - fault_wall, 3),
        "end_s": round(sample.ended_wall - fault_wall, 3),
        "latency_s": round(sample.ended - sample.started, 3),
        "ok": sample.ok,
        "capped": sample.capped,
        "served_by": sample.served_by,
        "path": " > ".join(path),
        "rescued": [
            {
                "at_s": round(r["at"] - fault_wall, 3),
                "from": r["from"],
                "cause": r["cause"],
                "waited_ms": r["waited_ms"],
            }
            for r in log.rescued.get(key, ())
        ],
    }


async def run_all(workdir: Path, timeouts: Sequence[str] = tuple(TIMEOUTS)) -> dict[str, Any]:
    """Every timeouts set and load under both profiles, plain first."""
    results: dict[str, Any] = {}
    for name in timeouts:
        for load in LOADS:
            for profile in PROFILES:
                figures = await run_one(profile, load, name, workdir)
                results.setdefault(name, {}).setdefault(load, {})[profile] = figures
    return results


def report(results: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """Print the side-by-side table and the slowest traced requests; the bench result with its
    goals (the plugin's side)."""
    columns = ("timeouts", "load", "profile", "window reqs", "errors", "capped", "p50 s", "p99 s", "max s",
               "longest wait s", "detection s", "rescued")  # fmt: skip
    rows = []
    metrics: dict[str, float] = {}
    goals = []
    for name, loads in results.items():
        for load, profiles in loads.items():
            for profile, f in profiles.items():
                rows.append((name, load, profile, f["window_requests"], f["window_errors"],
                             f["window_capped"], f["window_p50_s"], f["window_p99_s"], f["window_max_s"],
                             f["longest_wait_s"], f["detection_s"], f.get("rescued", math.nan)))  # fmt: skip
                for key in ("window_p99_s", "window_max_s", "longest_wait_s", "window_errors", "detection_s"):
                    metrics[f"{name}_{load}_{profile}_{key}"] = float(f[key])
            for profile in (p for p in profiles if p != "plain"):
                plugin = profiles[profile]
                label = f"{profile}, {name} timeouts, {load} loop"
                goals.append(
                    common.Goal(
                        f"{label}: longest wait - detection (s)",
                        plugin["longest_wait_s"] - plugin["detection_s"],
                        "<=",
                        1.0,
                    )
                )
                errors = plugin["window_errors"]
                goals.append(common.Goal(f"{label}: errors after the fault", errors, "<=", 0))
    common.print_rows(
        f"hung primary: requests started in the {WINDOW_S:g} s after the fault"
        " (plugin: default settings; plugin_tuned: the drill's probes)",
        columns,
        rows,
        text_columns=3,
    )
    _print_slowest(results)
    print(f"wall time: {wall_s:.0f} s; a capped request was cut at {REQUEST_CAP_S:g} s by the bench")
    return common.result("hung_primary", metrics, goals, {"timeouts": TIMEOUTS, "results": results})


def _print_slowest(results: dict[str, Any]) -> None:
    columns = ("run", "request", "start s", "end s", "latency s", "path", "rescued")
    rows = []
    runs = [
        (f"{profile}/{name}/{load}", f)
        for name, loads in results.items()
        for load, profiles in loads.items()
        for profile, f in profiles.items()
        if profile != "plain"
    ]
    for run, f in runs:
        slowest = sorted(f["traced"], key=lambda r: r["latency_s"], reverse=True)[:SLOWEST_SHOWN]
        for r in slowest:
            rescued = ", ".join(f"{x['cause']} at {x['at_s']:.2f} s" for x in r["rescued"]) or "-"
            kind = "stream" if r["stream"] else "call"
            rows.append((run, f"{r['index']} ({kind})", r["start_s"], r["end_s"], r["latency_s"],
                         r["path"] or "?", rescued))  # fmt: skip
        summary = {k: v for k, v in f["rescue"].items() if k not in ("rescued", "tracked")}
        print(f"{run}: ejection at {f['detection_s']:.3f} s ({f['ejection'].get('source')}),"
              f" {f['over_goal']} requests over detection + 1 s, CPU {f['cpu_s']} s,"
              f" open loop sent up to {f['sent_late_max_s']} s late; rescue {summary}")  # fmt: skip
    common.print_rows(
        "plugin: slowest requests (times relative to the fault; '!' marks a failed attempt)",
        columns,
        rows,
        text_columns=2,
    )

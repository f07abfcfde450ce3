"""End-to-end overhead of the plugin in a real LiteLLM proxy: latency and throughput, A/B.

Two ``litellm --config`` proxies run side by side in front of the same fake vLLM nodes: A without
the plugin, B with it enabled the way users enable it (``litellm_settings.callbacks`` plus a
``failover_settings`` block, probes on). The same bounded load (half streamed, fixed concurrency,
through the openai SDK) goes to A and B in alternating rounds, A B, B A, A B ..., so that drift on
a shared machine lands on both. The fake nodes answer instantly (``tokens_per_s=0``) and run as
subprocesses, so what is measured is the proxy's own work, which is where the plugin lives.

Reported: p50 and p99 latency and throughput of each, and the ratios B/A (goals: p50 ratio <= 1.05,
throughput ratio >= 0.95). B's state table is read back at the end to prove its plugin was running.

Run: ``.venv/bin/python bench/proxy_overhead.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:  # python -m bench.proxy_overhead
    from bench import _common as common
except ImportError:  # python bench/proxy_overhead.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]

if TYPE_CHECKING:
    from litellm_failover.drill.loadgen import RequestResult
    from litellm_failover.drill.proxy_process import ProxyProcess
    from litellm_failover.providers.fake.process import FakeVLLMProcess

NODES = ("n1", "n2", "n3")
P50_GOAL = 1.05
THROUGHPUT_GOAL = 0.95
ROUND_DEADLINE_S = 60.0  # one round, whatever happens
RUN_DEADLINE_S = 240.0  # all measured rounds together


def proxy_config(nodes: dict[str, FakeVLLMProcess], database_url: str | None) -> dict[str, Any]:
    """The same model list for both proxies; only B names the plugin and its settings."""
    config: dict[str, Any] = {
        "model_list": [
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": "hosted_vllm/fake-model",
                    "api_base": node.api_base,
                    "order": 1,
                    "timeout": 30,
                    "stream_timeout": 30,
                },
                "model_info": {"id": name, "failover": {"gpu_url": node.url}},
            }
            for name, node in nodes.items()
        ],
        "router_settings": {"num_retries": 2, "retry_after": 0},
    }
    if database_url is not None:
        config["litellm_settings"] = {"callbacks": ["litellm_failover.proxy_handler"]}
        config["failover_settings"] = {"database_url": database_url}
    return config


async def one_round(proxy: ProxyProcess, total: int, concurrency: int) -> tuple[list[RequestResult], float]:
    """``total`` requests, every second one streamed, ``concurrency`` at a time; (results, wall s)."""
    from openai import AsyncOpenAI

    from litellm_failover.drill.loadgen import openai_sender, run_load

    client = AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=30)
    try:
        started = time.perf_counter()
        results = await run_load(
            openai_sender(client, "chat"),
            total=total,
            concurrency=concurrency,
            stream_every=2,
            deadline_s=ROUND_DEADLINE_S,
        )
        return results, time.perf_counter() - started
    finally:
        await client.close()


def summarise(results: list[RequestResult], wall_s: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    latencies_ms = [r.latency_s * 1000 for r in ok]
    return {
        "requests": len(results),
        "ok": len(ok),
        "failed": len(results) - len(ok),
        "errors": Counter((r.error or "")[:120] for r in results if not r.ok).most_common(3),
        "p50_ms": common.percentile(latencies_ms, 50),
        "p99_ms": common.percentile(latencies_ms, 99),
        "p50_ms_plain": common.percentile([r.latency_s * 1000 for r in ok if not r.stream], 50),
        "p50_ms_stream": common.percentile([r.latency_s * 1000 for r in ok if r.stream], 50),
        "throughput_rps": len(ok) / wall_s if wall_s > 0 else float("nan"),
        "wall_s": wall_s,
        "served_by": dict(Counter(r.served_by or "?" for r in ok)),
    }


async def measure(
    proxies: dict[str, ProxyProcess], rounds: int, total: int, concurrency: int, warmup: int
) -> dict[str, Any]:
    for proxy in proxies.values():  # warm both: connections, lazy imports, the plugin's first probes
        results, _ = await one_round(proxy, warmup, concurrency)
        failed = [r.error for r in results if not r.ok]
        assert not failed, f"warm-up through {proxy.url} failed: {failed[:3]}"

    results: dict[str, list[RequestResult]] = {"without": [], "with": []}
    walls: dict[str, float] = {"without": 0.0, "with": 0.0}
    per_round: dict[str, list[float]] = {"without": [], "with": []}
    deadline = time.monotonic() + RUN_DEADLINE_S
    done = 0
    for index in range(rounds):
        if time.monotonic() > deadline:
            break
        for mode in ("without", "with") if index % 2 == 0 else ("with", "without"):
            batch, wall = await one_round(proxies[mode], total, concurrency)
            results[mode] += batch
            walls[mode] += wall
            per_round[mode].append(sum(r.ok for r in batch) / wall)
        done += 1
    summary = {mode: summarise(results[mode], walls[mode]) for mode in results}
    for mode in summary:
        summary[mode]["per_round_rps"] = per_round[mode]
    summary["rounds"] = done
    return summary


def start_all(items: list[Any]) -> None:
    """Start processes in parallel threads: each start only waits (bounded) on its child."""
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        for future in [pool.submit(item.start) for item in items]:
            future.result()


def run(quick: bool = False) -> dict[str, Any]:
    from litellm_failover.drill.proxy_process import ProxyProcess
    from litellm_failover.providers.fake.process import FakeVLLMProcess
    from litellm_failover.store.queries import list_deployment_states

    rounds, total, concurrency, warmup = (2, 40, 8, 16) if quick else (6, 120, 8, 40)
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        workdir = Path(tmp)
        database_url = f"sqlite+aiosqlite:///{workdir}/events.db"
        nodes = {name: FakeVLLMProcess(name, tokens_per_s=0) for name in NODES}
        proxies: dict[str, ProxyProcess] = {}
        try:
            start_all(list(nodes.values()))
            proxies = {
                "without": ProxyProcess(proxy_config(nodes, None), workdir / "without"),
                "with": ProxyProcess(proxy_config(nodes, database_url), workdir / "with"),
            }
            start_all(list(proxies.values()))
            summary = asyncio.run(measure(proxies, rounds, total, concurrency, warmup))
            states = asyncio.run(list_deployment_states(database_url))
        finally:
            for proxy in proxies.values():
                proxy.stop()
            for node in nodes.values():
                node.stop()
    # B's plugin wrote a state row per deployment: it was attached and probing, not silently off.
    recorded = {row["deployment_id"]: row["state"] for row in states}
    assert set(recorded) == set(NODES), f"the plugin in proxy B recorded {recorded}, expected {NODES}"

    a, b = summary["without"], summary["with"]
    p50_ratio = common.ratio(b["p50_ms"], a["p50_ms"])
    p99_ratio = common.ratio(b["p99_ms"], a["p99_ms"])
    rps_ratio = common.ratio(b["throughput_rps"], a["throughput_rps"])
    metrics = {
        "p50_ms_without": a["p50_ms"],
        "p50_ms_with": b["p50_ms"],
        "p99_ms_without": a["p99_ms"],
        "p99_ms_with": b["p99_ms"],
        "throughput_rps_without": a["throughput_rps"],
        "throughput_rps_with": b["throughput_rps"],
        "p50_ratio": p50_ratio,
        "p99_ratio": p99_ratio,
        "throughput_ratio": rps_ratio,
        "failed_requests": a["failed"] + b["failed"],
    }
    goals = [
        common.Goal("proxy p50 latency ratio with/without", p50_ratio, "<=", P50_GOAL),
        common.Goal("proxy throughput ratio with/without", rps_ratio, ">=", THROUGHPUT_GOAL),
        common.Goal("failed requests (both proxies)", a["failed"] + b["failed"], "<=", 0),
    ]
    details = {
        **summary,
        "requests_per_round": total,
        "concurrency": concurrency,
        "warmup_requests": warmup,
        "plugin_states": recorded,
    }
    return common.result("proxy_overhead", metrics, goals, details)


def report(data: dict[str, Any]) -> None:
    d, m = data["details"], data["metrics"]
    a, b = d["without"], d["with"]
    common.print_rows(
        f"LiteLLM proxy, {d['rounds']} alternating rounds x {d['requests_per_round']} requests each "
        f"(half streamed), concurrency {d['concurrency']}",
        ["", "without plugin", "with plugin", "ratio", "goal"],
        [
            ["p50 latency ms", a["p50_ms"], b["p50_ms"], m["p50_ratio"], f"<= {P50_GOAL}"],
            ["p99 latency ms", a["p99_ms"], b["p99_ms"], m["p99_ratio"], ""],
            ["p50 ms, non-streamed", a["p50_ms_plain"], b["p50_ms_plain"], "", ""],
            ["p50 ms, streamed", a["p50_ms_stream"], b["p50_ms_stream"], "", ""],
            [
                "throughput req/s",
                a["throughput_rps"],
                b["throughput_rps"],
                m["throughput_ratio"],
                f">= {THROUGHPUT_GOAL}",
            ],
            ["requests ok / failed", f"{a['ok']} / {a['failed']}", f"{b['ok']} / {b['failed']}", "", ""],
        ],
    )


def main() -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    data = run(quick=args.quick)
    report(data)
    return common.finish(args, data)


if __name__ == "__main__":
    raise SystemExit(main())

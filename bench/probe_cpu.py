"""CPU cost of background probing: 100 deployments probed every 2 s, as % of one core.

Active probes run in the same process and event loop as the Router that serves traffic, so their
CPU is taken from request handling. This bench builds a Router with 100 vLLM deployments spread
over 10 fake GPU nodes (each deployment has a ``gpu_url``, so every probe round reads ``/health``,
``/metrics`` and ``/gpu-status``), attaches the plugin with ``health.interval_s: 2``, and measures
this process's CPU time (all threads: the store writer's SQLite thread included) over a window
with the plugin's background work running, minus an idle window of the same length measured in
the same run (same Router, same event loop, plugin attached but not started).

The fake nodes are separate processes, so their CPU is not counted. Probe rounds completed in the
window are reported with the number expected, so it is clear probing really ran.

Run: ``.venv/bin/python bench/probe_cpu.py`` (``--quick`` for a smoke run, ``--window S``).
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import resource
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:  # python -m bench.probe_cpu
    from bench import _common as common
except ImportError:  # python bench/probe_cpu.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]

if TYPE_CHECKING:
    from litellm_failover.plugin import FailoverPlugin
    from litellm_failover.providers.fake_vllm_process import FakeVLLMProcess

NODE_COUNT = 10
DEPLOYMENTS = 100
INTERVAL_S = 2.0
CPU_GOAL_PCT = 5.0


def model_list(nodes: list[FakeVLLMProcess]) -> list[dict[str, Any]]:
    """100 deployments in 10 groups, round-robin over the nodes: several deployments share a node,
    as models share a GPU box, but each is probed on its own."""
    return [
        {
            "model_name": f"model-{i % 10}",
            "litellm_params": {
                "model": "hosted_vllm/fake-model",
                "api_base": nodes[i % len(nodes)].api_base,
                "order": 1,
            },
            "model_info": {"id": f"d{i}", "failover": {"gpu_url": nodes[i % len(nodes)].url}},
        }
        for i in range(DEPLOYMENTS)
    ]


class CpuWindow:
    """CPU seconds (user + system, every thread of this process) against wall seconds."""

    def __enter__(self) -> CpuWindow:
        self._wall = time.perf_counter()
        self._usage = resource.getrusage(resource.RUSAGE_SELF)
        return self

    def __exit__(self, *exc_info: object) -> None:
        end = resource.getrusage(resource.RUSAGE_SELF)
        self.wall_s = time.perf_counter() - self._wall
        self.user_s = end.ru_utime - self._usage.ru_utime
        self.system_s = end.ru_stime - self._usage.ru_stime

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.system_s

    def as_dict(self) -> dict[str, float]:
        return {
            "wall_s": self.wall_s,
            "user_s": self.user_s,
            "system_s": self.system_s,
            "cpu_s": self.cpu_s,
            "pct_of_core": 100.0 * self.cpu_s / self.wall_s,
        }


async def measure(plugin: FailoverPlugin, window_s: float, profile_to: Path | None) -> dict[str, Any]:
    # Idle first: same Router, same loop, plugin attached but nothing started.
    await asyncio.sleep(0.5)
    with CpuWindow() as idle:
        await asyncio.sleep(window_s)
    async with plugin:
        # One interval to let every deployment's loop start (their first rounds are spread over
        # one interval on purpose) and the writer flush the initial state rows.
        await asyncio.sleep(INTERVAL_S + 0.5)
        rounds_before = plugin.prober.rounds
        profiler = cProfile.Profile() if profile_to is not None else None
        if profiler is not None:
            profiler.enable()
        with CpuWindow() as probing:
            await asyncio.sleep(window_s)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_to)
        rounds = plugin.prober.rounds - rounds_before
    records = plugin.core.health.values()
    return {
        "idle": idle.as_dict(),
        "probing": probing.as_dict(),
        "rounds": rounds,
        "states": dict(Counter(record.state.value for record in records)),
        "checks": dict(Counter(str(name) for record in records for name in record.checks)),
    }


def start_nodes(count: int) -> list[FakeVLLMProcess]:
    from litellm_failover.providers.fake_vllm_process import FakeVLLMProcess

    nodes = [FakeVLLMProcess(f"gpu{i}", tokens_per_s=0) for i in range(count)]
    try:
        with ThreadPoolExecutor(max_workers=count) as pool:  # each start only waits on its child
            for future in [pool.submit(node.start) for node in nodes]:
                future.result()
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def run(window_s: float, profile_to: Path | None = None) -> dict[str, Any]:
    import litellm

    from litellm_failover import attach

    nodes = start_nodes(NODE_COUNT)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
            router = litellm.Router(model_list=model_list(nodes))
            plugin = attach(
                router,
                {
                    "database_url": f"sqlite+aiosqlite:///{tmp}/events.db",
                    "health": {"interval_s": INTERVAL_S},
                },
            )
            try:
                assert len(plugin.prober.deployment_ids) == DEPLOYMENTS, "not every deployment is probed"
                measured = asyncio.run(measure(plugin, window_s, profile_to))
            finally:
                plugin.detach()
    finally:
        for node in nodes:
            node.stop()

    idle, probing = measured["idle"], measured["probing"]
    net_pct = probing["pct_of_core"] - idle["pct_of_core"]
    expected = DEPLOYMENTS * probing["wall_s"] / INTERVAL_S
    assert measured["rounds"] >= 0.8 * expected, (
        f"only {measured['rounds']} probe rounds, ~{expected:.0f} expected"
    )
    # Every deployment must have answered all three endpoints: /health, /metrics and /gpu-status.
    for check in ("http_health", "metrics", "gpu_health"):
        assert measured["checks"].get(check) == DEPLOYMENTS, f"{check} missing: {measured['checks']}"
    # CPU the probing added, per probe round: the probing window minus the idle rate over as long.
    added_cpu_s = probing["cpu_s"] - idle["cpu_s"] * probing["wall_s"] / idle["wall_s"]
    metrics = {
        "cpu_pct_probing_net": net_pct,
        "cpu_pct_probing_gross": probing["pct_of_core"],
        "cpu_pct_idle": idle["pct_of_core"],
        "probe_rounds": measured["rounds"],
        "probe_rounds_expected": expected,
        "cpu_ms_per_round": 1000 * added_cpu_s / max(1, measured["rounds"]),
    }
    goals = [common.Goal("probe CPU, % of one core (100 deployments / 2 s)", net_pct, "<", CPU_GOAL_PCT)]
    details = {
        **measured,
        "window_s": window_s,
        "deployments": DEPLOYMENTS,
        "nodes": NODE_COUNT,
        "interval_s": INTERVAL_S,
    }
    return common.result("probe_cpu", metrics, goals, details)


def report(data: dict[str, Any]) -> None:
    d, m = data["details"], data["metrics"]
    common.print_rows(
        f"{d['deployments']} deployments on {d['nodes']} fake nodes, probed every {d['interval_s']:g} s; "
        f"windows of {d['window_s']:g} s",
        ["window", "wall s", "user s", "system s", "% of one core"],
        [
            [
                "idle (plugin not started)",
                d["idle"]["wall_s"],
                d["idle"]["user_s"],
                d["idle"]["system_s"],
                d["idle"]["pct_of_core"],
            ],
            [
                "probing",
                d["probing"]["wall_s"],
                d["probing"]["user_s"],
                d["probing"]["system_s"],
                d["probing"]["pct_of_core"],
            ],
            ["probing minus idle", "", "", "", m["cpu_pct_probing_net"]],
        ],
    )
    common.print_rows(
        "Probing really ran",
        [
            "probe rounds in window",
            "expected (~deployments x window / interval)",
            "CPU ms per round",
            "states",
            "checks",
        ],
        [
            [
                m["probe_rounds"],
                m["probe_rounds_expected"],
                m["cpu_ms_per_round"],
                str(d["states"]),
                f"{len(d['checks'])} kinds, each on {min(d['checks'].values())}+ deployments",
            ]
        ],
    )


def main() -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--window", type=float, default=None, help="seconds per window (default 20, 6 with --quick)"
    )
    p.add_argument("--profile", type=Path, default=None, help="write a cProfile of the probing window here")
    args = p.parse_args()
    window = args.window if args.window is not None else (6.0 if args.quick else 20.0)
    data = run(window, args.profile)
    report(data)
    if args.profile is not None:
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(20)
    return common.finish(args, data)


if __name__ == "__main__":
    raise SystemExit(main())

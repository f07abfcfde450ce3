"""CPU cost of background probing: 100 deployments probed every 2 s, as % of one core, two topologies.

Active probes run in the same process and event loop as the Router that serves traffic, so their
CPU is taken from request handling. This bench builds a Router with 100 vLLM deployments, each
with a ``gpu_url`` (so a probe round reads ``/health`` and ``/metrics``, and ``/gpu-status`` when
the last GPU read is older than ``health.gpu_read_interval_s``, default 5 s: every third round
here), attaches the plugin with ``health.interval_s: 2`` and otherwise default settings, and
measures this process's CPU time (all threads: the store writer's SQLite thread included) over a
window with the plugin's background work running, minus an idle window of the same length measured
just before it (same Router, same event loop, plugin attached but not started). It does so for two
topologies, one after the other:

- **100 deployments on 100 servers**: every deployment is its own vLLM server with its own GPU
  sidecar, so there are 100 distinct probe targets and 50 probe rounds a second. The worst case
  for probing: nothing can be shared.
- **100 deployments on 10 servers**: 10 deployments per server (several model names or LoRA
  adapters served by one vLLM, as a GPU box often does), same ``api_base`` and ``gpu_url``. The
  plugin probes each distinct target once and applies the round to every deployment behind it,
  so there are 10 targets and 5 rounds a second.

In both, the 100 deployments form 10 model groups of 10. All fake servers run in one helper
process (``_fake_servers.py``), so their CPU is not counted. Probe rounds and the deployment state
updates they led to are reported with the numbers expected, so it is clear probing really ran.

Run: ``.venv/bin/python bench/probe_cpu.py`` (``--quick`` for a smoke run, ``--window S``,
``--topology 100_servers`` for one of the two, ``--profile PATH`` for a cProfile of each window).
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import resource
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:  # python -m bench.probe_cpu
    from bench import _common as common
    from bench._fake_servers import FakeServers
except ImportError:  # python bench/probe_cpu.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]
    from _fake_servers import FakeServers  # type: ignore[no-redef]

if TYPE_CHECKING:
    from litellm_failover.plugin import FailoverPlugin
    from litellm_failover.providers.base import ProbeReport

DEPLOYMENTS = 100
GROUPS = 10
INTERVAL_S = 2.0
CPU_GOAL_PCT = 5.0


@dataclass(frozen=True, slots=True)
class Topology:
    key: str  # used in metric names and --topology
    title: str
    servers: int

    @property
    def per_server(self) -> int:
        return DEPLOYMENTS // self.servers


TOPOLOGIES = (
    Topology("100_servers", "100 deployments on 100 servers", 100),
    Topology("10_servers", "100 deployments on 10 servers", 10),
)


def model_list(topology: Topology, servers: FakeServers) -> list[dict[str, Any]]:
    """Deployment ``i`` on server ``i // per_server``, in group ``model-{i % 10}``.

    With 10 per server, server 0 serves ``adapter-0`` .. ``adapter-9`` (one per group), as one vLLM
    serves several LoRA adapters; each group then spans all 10 servers. Deployments on one server
    share ``api_base`` and ``gpu_url`` and differ only in model, which is not part of a probe
    target, so they share one probe round.
    """
    deployments = []
    for i in range(DEPLOYMENTS):
        url = servers.url(i // topology.per_server)
        deployments.append(
            {
                "model_name": f"model-{i % GROUPS}",
                "litellm_params": {
                    "model": f"hosted_vllm/adapter-{i % GROUPS}",
                    "api_base": f"{url}/v1",
                    "order": 1,
                },
                "model_info": {"id": f"d{i}", "failover": {"gpu_url": url}},
            }
        )
    return deployments


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


class UpdateCounter:
    """Counts the probe reports applied to deployments (``FailoverCore.apply_probe`` calls).

    One probe round of a shared target is applied to every deployment behind it, so this, not
    the round count, says whether every deployment kept being updated. Wrapping the bound method
    on the instance costs one Python call per update, nothing next to a probe round.
    """

    def __init__(self, plugin: FailoverPlugin) -> None:
        self.count = 0
        apply = plugin.core.apply_probe

        def counted(deployment_id: str, report: ProbeReport) -> None:
            self.count += 1
            apply(deployment_id, report)

        plugin.core.apply_probe = counted  # type: ignore[method-assign]


async def measure(plugin: FailoverPlugin, window_s: float, profile_to: Path | None) -> dict[str, Any]:
    updates = UpdateCounter(plugin)
    # Idle first: same Router, same loop, plugin attached but nothing started.
    await asyncio.sleep(0.5)
    with CpuWindow() as idle:
        await asyncio.sleep(window_s)
    async with plugin:
        # One interval to let every probe loop start (their first rounds are spread over one
        # interval on purpose) and the writer flush the initial state rows.
        await asyncio.sleep(INTERVAL_S + 0.5)
        rounds_before, updates_before = plugin.prober.rounds, updates.count
        profiler = cProfile.Profile() if profile_to is not None else None
        if profiler is not None:
            profiler.enable()
        with CpuWindow() as probing:
            await asyncio.sleep(window_s)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_to)
        rounds = plugin.prober.rounds - rounds_before
        applied = updates.count - updates_before
    records = plugin.core.health.values()
    return {
        "idle": idle.as_dict(),
        "probing": probing.as_dict(),
        "rounds": rounds,
        "deployment_updates": applied,
        "states": dict(Counter(record.state.value for record in records)),
        "checks": dict(Counter(str(name) for record in records for name in record.checks)),
    }


def run_topology(topology: Topology, servers: FakeServers, window_s: float, profile_to: Path | None) -> dict:
    import litellm

    from litellm_failover import attach

    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        router = litellm.Router(model_list=model_list(topology, servers))
        plugin = attach(
            router,
            {"database_url": f"sqlite+aiosqlite:///{tmp}/events.db", "health": {"interval_s": INTERVAL_S}},
        )
        try:
            assert len(plugin.prober.deployment_ids) == DEPLOYMENTS, "not every deployment is probed"
            measured = asyncio.run(measure(plugin, window_s, profile_to))
        finally:
            plugin.detach()

    idle, probing = measured["idle"], measured["probing"]
    expected_updates = DEPLOYMENTS * probing["wall_s"] / INTERVAL_S
    assert measured["deployment_updates"] >= 0.8 * expected_updates, (
        f"{topology.title}: only {measured['deployment_updates']} deployment updates, "
        f"~{expected_updates:.0f} expected"
    )
    # Every deployment must have answered all three endpoints: /health, /metrics and /gpu-status.
    for check in ("http_health", "metrics", "gpu_health"):
        assert measured["checks"].get(check) == DEPLOYMENTS, f"{check} missing: {measured['checks']}"
    # CPU the probing added: the probing window minus the idle rate over as long.
    added_cpu_s = probing["cpu_s"] - idle["cpu_s"] * probing["wall_s"] / idle["wall_s"]
    rounds = measured["rounds"]
    return {
        **measured,
        "title": topology.title,
        "servers": topology.servers,
        "net_pct": probing["pct_of_core"] - idle["pct_of_core"],
        "rounds_expected": topology.servers * probing["wall_s"] / INTERVAL_S,
        "deployment_updates_expected": expected_updates,
        "deployments_per_round": measured["deployment_updates"] / max(1, rounds),
        "cpu_ms_per_round": 1000 * added_cpu_s / max(1, rounds),
        "cpu_ms_per_deployment_update": 1000 * added_cpu_s / max(1, measured["deployment_updates"]),
    }


def run(window_s: float, topologies: list[Topology], profile_to: Path | None = None) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    with FakeServers(max(t.servers for t in topologies)) as servers:
        for topology in topologies:
            profile = profile_to.with_suffix(f".{topology.key}.prof") if profile_to is not None else None
            rows[topology.key] = run_topology(topology, servers, window_s, profile)
    metrics: dict[str, float] = {}
    goals: list[common.Goal] = []
    for key, row in rows.items():
        metrics |= {
            f"cpu_pct_probing_net_{key}": row["net_pct"],
            f"cpu_pct_probing_gross_{key}": row["probing"]["pct_of_core"],
            f"cpu_pct_idle_{key}": row["idle"]["pct_of_core"],
            f"probe_rounds_{key}": row["rounds"],
            f"probe_rounds_expected_{key}": row["rounds_expected"],
            f"deployment_updates_{key}": row["deployment_updates"],
            f"deployments_per_round_{key}": row["deployments_per_round"],
            f"cpu_ms_per_round_{key}": row["cpu_ms_per_round"],
        }
        name = f"probe CPU, % of one core: {row['title']}"
        goals.append(common.Goal(name, row["net_pct"], "<", CPU_GOAL_PCT))
    details = {
        "topologies": rows,
        "window_s": window_s,
        "deployments": DEPLOYMENTS,
        "groups": GROUPS,
        "interval_s": INTERVAL_S,
    }
    return common.result("probe_cpu", metrics, goals, details)


def report(data: dict[str, Any]) -> None:
    d = data["details"]
    rows = d["topologies"]
    common.print_rows(
        f"Probe CPU, % of one core: {d['deployments']} deployments probed every {d['interval_s']:g} s, "
        f"windows of {d['window_s']:g} s, each topology with its own idle window",
        ["topology", "idle", "probing", "probing minus idle", "goal", "meets goal"],
        [
            [
                row["title"],
                row["idle"]["pct_of_core"],
                row["probing"]["pct_of_core"],
                row["net_pct"],
                f"< {CPU_GOAL_PCT:g}",
                "[green]yes[/green]" if row["net_pct"] < CPU_GOAL_PCT else "[red]NO[/red]",
            ]
            for row in rows.values()
        ],
    )
    common.print_rows(
        "Probing really ran, in the probing window (expected: targets or deployments x window / interval)",
        [
            "100 deployments",
            "probe rounds",
            "expected",
            "deployment updates",
            "expected",
            "deployments / round",
            "CPU ms / round",
            "states",
        ],
        [
            [
                f"on {row['servers']} servers",
                row["rounds"],
                row["rounds_expected"],
                row["deployment_updates"],
                row["deployment_updates_expected"],
                row["deployments_per_round"],
                row["cpu_ms_per_round"],
                ", ".join(f"{count} {state}" for state, count in row["states"].items()),
            ]
            for row in rows.values()
        ],
    )


def main() -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--window", type=float, default=None, help="seconds per window (default 20, 6 with --quick)"
    )
    p.add_argument(
        "--topology",
        choices=[t.key for t in TOPOLOGIES],
        action="append",
        default=None,
        help="measure only this topology (repeatable; default both)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="cProfile each probing window to PATH with the topology in the suffix (PATH.100_servers.prof)",
    )
    args = p.parse_args()
    window = args.window if args.window is not None else (6.0 if args.quick else 20.0)
    topologies = [t for t in TOPOLOGIES if args.topology is None or t.key in args.topology]
    data = run(window, topologies, args.profile)
    report(data)
    if args.profile is not None:
        for topology in topologies:
            path = args.profile.with_suffix(f".{topology.key}.prof")
            print(f"\n{topology.title}: {path}")
            pstats.Stats(str(path)).sort_stats("tottime").print_stats(20)
    return common.finish(args, data)


if __name__ == "__main__":
    raise SystemExit(main())

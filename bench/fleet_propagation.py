"""Fleet propagation: time from replica A's ejection (its core's decision) to replica B applying it.

Two replicas share the local Redis (``redis://127.0.0.1:6379/0``, or ``LITELLM_FAILOVER_BENCH_REDIS_URL``)
on a fresh channel. Replica B runs in its own process (its own event loop and Redis connections,
as a second proxy would): a ``FailoverCore`` with the plugin's fleet wiring, printing the moment
(``time.monotonic``, one clock for every process on Linux) each remote ejection changes its
routing. Replica A, in this process, ejects deployments through its core
(``record_failure(..., CONNECT_ERROR)``, what a refused connection does) and notes the moment of
each decision. Measured over the whole path: A's event listener, the publish queue, the pipelined
``SET`` + ``PUBLISH``, Redis, B's subscription, decoding, applying, B's routing-table rebuild.

Two rounds, each over its own deployments (probes off, so nothing but the fleet moves them):

- ``sequential``: one ejection at a time, the next after B applied the previous one;
- ``burst``: all ejections of the round at once (a whole rack failing), each timed on its own.

Goals: median and p99 under one second in both rounds. The state keys are deleted afterwards.

Run: ``.venv/bin/python bench/fleet_propagation.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import sys
import time
import uuid
from typing import Any

try:  # python -m bench.fleet_propagation
    from bench import _common as common
except ImportError:  # python bench/fleet_propagation.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]

REDIS_URL = os.environ.get("LITELLM_FAILOVER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
GOAL_S = 1.0
GROUP_SIZE = 10
WAIT_S = 10.0  # longest wait for one ejection to reach B before the bench gives up on it
RUN_DEADLINE_S = 120.0
CHANNEL = ""  # a fresh channel per run, set in run() and passed to replica B on its command line


def build_core(instance_id: str, count: int) -> tuple[Any, Any]:
    """A core over ``count`` unprobed deployments in groups of ten (no server is ever contacted)."""
    from litellm_failover.core import FailoverCore
    from litellm_failover.deployments import read_model_list
    from litellm_failover.settings import FailoverSettings

    settings = FailoverSettings(
        instance_id=instance_id,
        redis_url=REDIS_URL,
        outlier={"base_ejection_s": 300},
        fleet={"channel": CHANNEL, "operation_timeout_s": 1.0},
    )
    model_list = [
        {
            "model_name": f"group-{index // GROUP_SIZE}",
            "litellm_params": {"model": "hosted_vllm/m", "api_base": "http://127.0.0.1:9/v1"},
            "model_info": {"id": f"d{index}", "failover": {"probe": False}},
        }
        for index in range(count)
    ]
    specs = read_model_list(model_list, settings.health)
    return FailoverCore(settings, specs, instance_id=instance_id, probed=lambda spec: False), settings


async def replica_b(count: int) -> None:
    """The child process: apply what the fleet says and print when each ejection landed."""
    from litellm_failover.fleet import fleet_for

    core, settings = build_core("bench-b", count)

    def landed(event: Any) -> None:
        if event.event_type == "state_change" and event.details.get("source") == "fleet":
            print(f"applied {event.deployment_id} {time.monotonic():.6f}", flush=True)

    core.listeners.append(landed)
    fleet = fleet_for(core, settings)
    await fleet.start()
    if not fleet.status()["connected"]:
        print(f"error {fleet.status()['last_error']}", flush=True)
        return
    print("ready", flush=True)
    # Serve until the parent closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(f"status {fleet.status()['applied']} {fleet.status()['ignored']}", flush=True)
    await fleet.stop()


class Child:
    """Replica B's process; ``landed[deployment_id]`` is when B applied that ejection."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.landed: dict[str, float] = {}
        self.arrived = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--replica-b",
            "--channel",
            CHANNEL,
            "--count",
            str(self.count),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        first = await asyncio.wait_for(self._line(), 60)
        if first != "ready":
            raise RuntimeError(f"replica B did not start: {first!r}")
        self._reader = asyncio.create_task(self._read())

    async def _line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        return (await self.process.stdout.readline()).decode().strip()

    async def _read(self) -> None:
        while line := await self._line():
            self.lines.append(line)
            kind, _, rest = line.partition(" ")
            if kind == "applied":
                deployment, at = rest.split()
                self.landed[deployment] = float(at)
                self.arrived.set()

    async def wait_for(self, deployments: list[str], timeout: float) -> bool:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not all(d in self.landed for d in deployments):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except TimeoutError:
                return False
        return True

    async def stop(self) -> None:
        if self.process is None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await asyncio.wait_for(self._reader, 5)


async def measure(count: int) -> dict[str, Any]:
    from litellm_failover.fleet import fleet_for
    from litellm_failover.fleet.sync import clear_state
    from litellm_failover.outlier import Outcome

    core, settings = build_core("bench-a", 2 * count)
    fleet = fleet_for(core, settings)
    child = Child(2 * count)
    await fleet.start()
    if not fleet.status()["connected"]:
        raise SystemExit(f"Redis at {fleet.status()['url']} is not reachable: {fleet.status()['last_error']}")
    await child.start()
    deadline = time.monotonic() + RUN_DEADLINE_S
    decided: dict[str, float] = {}
    try:
        sequential = [f"d{i}" for i in range(count)]
        for deployment in sequential:
            if time.monotonic() > deadline:
                break
            decided[deployment] = time.monotonic()
            core.record_failure(deployment, Outcome.CONNECT_ERROR, error="connection refused")
            await child.wait_for([deployment], WAIT_S)
        burst = [f"d{i}" for i in range(count, 2 * count)]
        for deployment in burst:
            decided[deployment] = time.monotonic()
            core.record_failure(deployment, Outcome.CONNECT_ERROR, error="connection refused")
        await child.wait_for(burst, WAIT_S)
    finally:
        await child.stop()
        status = fleet.status()
        await fleet.stop()
        await clear_state(REDIS_URL, CHANNEL)

    def latencies(names: list[str]) -> list[float]:
        return [child.landed[n] - decided[n] for n in names if n in child.landed and n in decided]

    return {
        "sequential": latencies(sequential),
        "burst": latencies(burst),
        "expected": count,
        "a_status": {k: status[k] for k in ("published", "dropped", "ignored")},
        "b_status": next((line for line in child.lines if line.startswith("status")), ""),
    }


def run(quick: bool) -> dict[str, Any]:
    global CHANNEL
    CHANNEL = f"bench_fleet_{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    count = 50 if quick else 200
    data = asyncio.run(measure(count))
    metrics: dict[str, float] = {}
    for round_name in ("sequential", "burst"):
        values_ms = [v * 1000 for v in data[round_name]]
        metrics[f"{round_name}_median_ms"] = common.median(values_ms)
        metrics[f"{round_name}_p99_ms"] = common.percentile(values_ms, 99)
        metrics[f"{round_name}_max_ms"] = max(values_ms) if values_ms else float("nan")
        metrics[f"{round_name}_applied"] = len(values_ms)
    goals = [
        common.Goal(f"{name} {stat} propagation ms", metrics[f"{name}_{stat}_ms"], "<", GOAL_S * 1000)
        for name in ("sequential", "burst")
        for stat in ("median", "p99")
    ]
    goals += [
        common.Goal(
            f"{name} ejections not applied by B", data["expected"] - metrics[f"{name}_applied"], "<=", 0
        )
        for name in ("sequential", "burst")
    ]
    details = {"ejections_per_round": data["expected"], "a": data["a_status"], "b": data["b_status"]}
    return common.result("fleet_propagation", metrics, goals, details)


def report(data: dict[str, Any]) -> None:
    m, d = data["metrics"], data["details"]
    common.print_rows(
        f"Fleet propagation, replica A -> Redis -> replica B, {d['ejections_per_round']} ejections a round",
        ["round", "applied", "median ms", "p99 ms", "max ms"],
        [
            [
                name,
                f"{m[f'{name}_applied']:.0f}",
                m[f"{name}_median_ms"],
                m[f"{name}_p99_ms"],
                m[f"{name}_max_ms"],
            ]
            for name in ("sequential", "burst")
        ],
    )


def main() -> int:
    global CHANNEL
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--replica-b", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--channel", default="", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Fleet messages are signed: both replicas (B inherits the environment) share a key of this
    # run's own unless one is set, so signing is part of what is measured.
    os.environ.setdefault("LITELLM_FAILOVER_SIGNING_KEYS", f"bench:{secrets.token_hex(16)}")
    if args.replica_b:
        CHANNEL = args.channel
        asyncio.run(replica_b(args.count))
        return 0
    data = run(quick=args.quick)
    report(data)
    return common.finish(args, data)


if __name__ == "__main__":
    raise SystemExit(main())

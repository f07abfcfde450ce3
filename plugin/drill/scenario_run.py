"""One scenario under load, phase by phase: warm, fault, recovery, then stop and drain the load.

Each phase's length comes from the run's ``PhasePlan`` (``litellm_failover.drill.timing``: the
tuned lengths times ``--duration-scale``, longer where the plugin settings in use detect or fail
back more slowly); recovery ends early once the restored node has its full share of answers back
(and, where a failback ramp is judged, once the ramp had time to run), so a fast recovery does not
sit idle and a slow one is cut at the plan's ``recovery_max_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from litellm_failover.drill.load import Outcome, client_for, run_scenario_load
from litellm_failover.drill.options import DrillOptions
from litellm_failover.drill.progress import Progress
from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.drill.scenarios import Scenario, ScenarioContext
from litellm_failover.drill.shares import Phases, first_answer_by, share_in
from litellm_failover.drill.timing import PhasePlan

# Recovery ends early once the restored node has its full share back over this window.
RECOVERED_WINDOW_S = 1.0
RECOVERED_FRACTION = 0.9
WARM_ANSWERS_PER_WORKER = 2
WARM_MAX_S = 20.0
DRAIN_TIMEOUT_S = 40.0
POLL_S = 0.1
PROXY_WATCH_S = 0.2
MIN_FLAP_INTERVAL_S = 0.5


@dataclass
class ScenarioRun:
    """One scenario's nodes, its load's outcomes and phases, or why it was skipped or failed."""

    scenario: Scenario
    nodes: dict[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    phases: Phases | None = None
    t0_wall: float = 0.0
    started_wall: datetime | None = None
    error: str | None = None


async def run_scenario(
    run: ScenarioRun,
    proxy: ProxyProcess,
    options: DrillOptions,
    progress: Progress,
    number: int,
    plan: PhasePlan,
) -> None:
    scenario, scale = run.scenario, options.duration_scale
    ctx = ScenarioContext(run.nodes, flap_interval_s=max(MIN_FLAP_INTERVAL_S, 1.0 * scale))
    client = client_for(proxy.url, proxy.master_key)
    stop = asyncio.Event()
    t0 = time.monotonic()
    run.t0_wall = time.time()
    run.started_wall = datetime.now(UTC)

    def elapsed() -> float:
        return time.monotonic() - t0

    def on_outcome(outcome: Outcome) -> None:
        run.outcomes.append(outcome)
        progress.record(outcome)

    budget = WARM_MAX_S + plan.fault_s + plan.recovery_max_s + DRAIN_TIMEOUT_S
    load = asyncio.create_task(
        run_scenario_load(
            client, scenario.name, t0=t0, concurrency=options.concurrency, stop=stop, deadline_s=budget,
            on_outcome=on_outcome, index_base=number * 1_000_000,
        )
    )  # fmt: skip
    died: list[int] = []

    async def watch_proxy() -> None:
        """A crashed proxy fails every request at once: stop the load and say so, don't spin."""
        while not stop.is_set():
            code = proxy.wait_exit(0)
            if code is not None:
                died.append(code)
                stop.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROXY_WATCH_S)

    watcher = asyncio.create_task(watch_proxy())
    restored = scenario.faulted[0]
    fault_at: float | None = None
    restored_at: float | None = None
    try:
        progress.phase("warm")
        warm_until = plan.warm_s
        wanted = WARM_ANSWERS_PER_WORKER * options.concurrency
        while elapsed() < WARM_MAX_S and not load.done():
            if elapsed() >= warm_until and sum(o.ok for o in run.outcomes) >= wanted:
                break
            await asyncio.sleep(POLL_S)
        progress.phase("fault")
        fault_at = elapsed()
        await scenario.fault(ctx)
        fault_end = fault_at + plan.fault_s
        await asyncio.wait({load}, timeout=max(0.0, fault_end - elapsed()))  # the phase's length
        progress.phase("recovery")
        await scenario.restore(ctx)
        restored_at = elapsed()
        ramp_judged = scenario.check_ramp and options.profile == "plugin"
        full_share = 1.0 / len(scenario.primary_nodes()) if restored in scenario.primary_nodes() else 1.0
        recovery_min = restored_at + plan.recovery_min_s
        recovery_max = restored_at + plan.recovery_max_s
        # With a ramp to judge, a full share is not enough to stop: a short window at 50 % can
        # look like 100 % by chance. The ramp cannot end before its steps have run from the
        # node's first answer back, so recovery waits at least that long.
        ramp_span = plan.ramp_span_s if ramp_judged else 0.0
        while elapsed() < recovery_max and not load.done():
            now = elapsed()
            if now >= recovery_min:
                if not scenario.failback:
                    break
                back = first_answer_by(run.outcomes, restored, restored_at, sent_after=True)
                if back is None or now < restored_at + back + ramp_span:
                    await asyncio.sleep(POLL_S)
                    continue
                share, n = share_in(run.outcomes, restored, now - RECOVERED_WINDOW_S, now)
                if share is not None and n >= 3 and share >= RECOVERED_FRACTION * full_share:
                    break
            await asyncio.sleep(POLL_S)
        stop_at = elapsed()
    except Exception as exc:
        run.error = f"drill error in {scenario.name}: {type(exc).__name__}: {exc}"
        stop_at = elapsed()
        fault_at = stop_at if fault_at is None else fault_at
        restored_at = stop_at if restored_at is None else restored_at
    finally:
        stop.set()
        await watcher
        with contextlib.suppress(Exception):
            await ctx.cancel_tasks()
        try:
            await asyncio.wait_for(load, DRAIN_TIMEOUT_S + 5)
        finally:
            await client.close()
    if died:
        run.error = (
            f"the LiteLLM proxy exited with code {died[0]} during the scenario (see {proxy.log_path}); "
            "the load was stopped"
        )
    end_at = max([stop_at] + [o.end for o in run.outcomes])
    run.phases = Phases(fault_at=fault_at, restored_at=restored_at, end_at=end_at)

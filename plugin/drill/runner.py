"""Run the drill battery for one profile: nodes, one proxy, scenarios in turn, events, verdicts.

One proxy per profile serves one model group per scenario, each group with its own fake vLLM
nodes, so a scenario's ejections, cooldowns and ramps cannot leak into the next one while the
battery pays for a single proxy start (~6 s). Scenarios run one after another under the same
concurrent load, so their figures are comparable and the machine is never asked to carry two
faults at once.

The plugin's events are read back from its SQLite file after the proxy stopped (a SIGTERM
flushes the writer), which is also what an operator would do.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from litellm_failover.drill.load import client_for
from litellm_failover.drill.nodes import node_groups, start_nodes, stop_nodes
from litellm_failover.drill.options import DrillOptions
from litellm_failover.drill.profiles import (
    build_config,
    database_url,
    deployment_id,
    failover_settings,
    public_config,
)
from litellm_failover.drill.progress import Progress
from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.drill.report_schema import SCHEMA
from litellm_failover.drill.scenario_run import POLL_S, ScenarioRun, run_scenario
from litellm_failover.drill.scenarios import Scenario
from litellm_failover.drill.timeline import analyse, event_row
from litellm_failover.drill.timing import phase_plan, plan_summary

READY_TIMEOUT_S = 45.0
EVENTS_AFTER_END_S = 1.0


class DrillSetupError(RuntimeError):
    """The drill could not set up its nodes or proxy."""


async def _wait_ready(proxy: ProxyProcess, profile: str, runs: list[ScenarioRun], db_url: str) -> None:
    """Bounded wait until every group is servable: the plugin sees every node healthy (plugin),
    or one request per group is answered (plain: LiteLLM has no notion of ready nodes)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    live = [run for run in runs if run.skip_reason is None]
    if profile == "plugin":
        from litellm_failover.store.queries import list_deployment_states

        wanted = {deployment_id(run.scenario.name, spec.id) for run in live for spec in run.scenario.nodes}
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                rows = await list_deployment_states(db_url)
                states = {row["deployment_id"]: row["state"] for row in rows}
            except Exception:
                states = {}  # the table appears with the plugin's first flush
            if all(states.get(d) == "healthy" for d in wanted):
                return
            await asyncio.sleep(POLL_S)
        missing = sorted(d for d in wanted if states.get(d) != "healthy")
        raise DrillSetupError(f"deployments not healthy within {READY_TIMEOUT_S}s: {', '.join(missing)}")
    client = client_for(proxy.url, proxy.master_key)
    try:
        for run in live:
            while True:
                try:
                    await client.chat.completions.create(
                        model=run.scenario.name, messages=[{"role": "user", "content": "ready?"}]
                    )
                    break
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise DrillSetupError(f"group {run.scenario.name} never answered: {exc}") from exc
                    await asyncio.sleep(POLL_S)
    finally:
        await client.close()


async def _events_for(db_url: str, run: ScenarioRun) -> list[dict[str, Any]]:
    from litellm_failover.store.queries import list_events

    if run.started_wall is None:
        return []
    since = run.started_wall - timedelta(seconds=1)
    rows = await list_events(db_url, since=since, model_group=run.scenario.name, limit=20_000)
    events = [event_row(row, run.scenario.name, run.t0_wall) for row in rows]
    # What the group did after its load stopped (the next scenario was running) is not its story.
    end = run.phases.end_at + EVENTS_AFTER_END_S if run.phases else math.inf
    return [event for event in events if event["t"] <= end]


async def _start_proxy(proxy: ProxyProcess) -> None:
    try:
        await asyncio.to_thread(proxy.start)
    except RuntimeError as exc:
        raise DrillSetupError(str(exc)) from exc


def _prepare_workdir(options: DrillOptions) -> Path:
    workdir = Path(options.workdir or Path(options.out) / f"work-{options.profile}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "failover.db").unlink(missing_ok=True)  # a previous run's events would mix in
    return workdir


def _skipped(scenario: Scenario, reason: str) -> dict[str, Any]:
    return {
        "name": scenario.name,
        "title": scenario.title,
        "description": scenario.description,
        "status": "skipped",
        "skip_reason": reason,
        "failures": [],
        "deployments": scenario.deployments(),
        "requests": 0,
        "streams": 0,
        "client_errors": 0,
        "broken_streams": 0,
        "resumed_streams": 0,
        "error_samples": [],
        "latency_ms": {"p50": None, "p99": None},
        "fault_at_s": None,
        "restored_at_s": None,
        "time_to_first_standby_s": None,
        "time_to_failback_s": None,
        "failback_shares": [],
        "ramp_ok": None,
        "markers": [],
        "timeline": {"bucket_s": 0.5, "t": [], "served": {}, "errors": [], "broken": []},
        "events": [],
    }


async def run_drill(options: DrillOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run the selected scenarios for ``options.profile`` and return the result dict (schema /1).

    Raises ``DrillInputError`` for bad options and ``DrillSetupError`` when nodes or the proxy
    can't be brought up; a scenario's own trouble is reported in its entry instead.
    """
    scenarios = options.selected()
    scale = options.duration_scale
    progress = progress or Progress()
    started_at = datetime.now(UTC)
    started = time.monotonic()
    workdir = await asyncio.to_thread(_prepare_workdir, options)
    db_url = database_url(workdir)
    runs = [ScenarioRun(scenario) for scenario in scenarios]
    progress.begin(options.profile, [s.name for s in scenarios])
    # The phases follow from the settings in use: the same block the plugin profile's proxy gets.
    used = None
    if options.profile == "plugin":
        used = failover_settings(options.settings, workdir=workdir, scale=scale)
    plan = phase_plan(options.profile, used, scale)
    config: dict[str, Any] = {}
    proxy: ProxyProcess | None = None
    try:
        await asyncio.to_thread(start_nodes, runs, progress)
        live = [run for run in runs if run.skip_reason is None]
        if live:
            config = build_config(
                options.profile, node_groups(runs), workdir=workdir, scale=scale, settings=options.settings
            )
            proxy = ProxyProcess(config, workdir)
            progress.note(f"starting the LiteLLM proxy ({options.profile} profile)")
            await _start_proxy(proxy)
            await _wait_ready(proxy, options.profile, runs, db_url)
            for number, run in enumerate(runs, 1):
                progress.scenario(number, len(runs), run.scenario.name)
                if run.skip_reason is None and proxy.wait_exit(0) is not None:
                    progress.note(f"the proxy exited with code {proxy.wait_exit(0)}: starting a new one")
                    proxy = ProxyProcess(config, workdir)
                    await _start_proxy(proxy)
                    await _wait_ready(proxy, options.profile, runs, db_url)
                if run.skip_reason is None:
                    await run_scenario(run, proxy, options, progress, number, plan)
                else:
                    progress.phase(f"skipped: {run.skip_reason}")
                progress.scenario_ran()
            flushing = " (flushing the plugin's events)" if options.profile == "plugin" else ""
            progress.note(f"stopping the proxy{flushing}")
            await asyncio.to_thread(proxy.stop)
    finally:
        if proxy is not None:
            await asyncio.to_thread(proxy.stop)
        await asyncio.to_thread(stop_nodes, runs)
    entries = []
    for run in runs:
        if run.skip_reason is not None or run.phases is None:
            entry = _skipped(run.scenario, run.skip_reason or "not run")
        else:
            events = await _events_for(db_url, run) if options.profile == "plugin" else []
            entry = analyse(run.scenario, options.profile, run.outcomes, run.phases, events, plan.ramp_steps)
            if run.error:
                entry["failures"].append(run.error)
                entry["status"] = "failed"
        entries.append(entry)
        progress.scenario_done(entry)
    result = {
        "schema": SCHEMA,
        "profile": options.profile,
        "started_at": started_at.isoformat(),
        "duration_s": round(time.monotonic() - started, 2),
        "passed": all(entry["status"] != "failed" for entry in entries),
        "config": public_config(config),
        "options": {
            "scenarios": [s.name for s in scenarios],
            "duration_scale": options.duration_scale,
            "concurrency": options.concurrency,
            # Which failover_settings the plugin profile ran with (the plain profile has none), and
            # the phase lengths they gave: a published figure must say which settings made it.
            "settings": options.settings if options.profile == "plugin" else None,
            "phases": plan_summary(plan),
        },
        "totals": {
            key: sum(entry[key] for entry in entries)
            for key in ("requests", "streams", "client_errors", "broken_streams", "resumed_streams")
        },
        "scenarios": entries,
    }
    progress.end(result)
    return result


__all__ = ["DrillSetupError", "run_drill"]

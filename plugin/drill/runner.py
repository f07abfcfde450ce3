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
import contextlib
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from litellm_failover.drill.load import TOKENS_PER_S, WORDS, Outcome, client_for, run_scenario_load
from litellm_failover.drill.profiles import (
    PROFILES,
    RAMP_STEPS,
    STEP_INTERVAL_S,
    build_config,
    database_url,
    deployment_id,
    public_config,
    short_id,
)
from litellm_failover.drill.progress import Progress
from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.drill.report_schema import SCHEMA
from litellm_failover.drill.scenarios import SCENARIO_NAMES, SCENARIOS, Scenario, ScenarioContext
from litellm_failover.drill.timeline import Phases, analyse, event_row, first_answer_by, share_in
from litellm_failover.providers.fake.process import FakeVLLMProcess

# Phase lengths at --duration-scale 1 (seconds).
WARM_S = 3.0
FAULT_S = 6.0
RECOVERY_MIN_S = 3.0
RECOVERY_MAX_S = 20.0
# Recovery ends early once the restored node has its full share back over this window.
RECOVERED_WINDOW_S = 1.0
RECOVERED_FRACTION = 0.9
WARM_ANSWERS_PER_WORKER = 2
WARM_MAX_S = 20.0
READY_TIMEOUT_S = 45.0
DRAIN_TIMEOUT_S = 40.0
POLL_S = 0.1
PROXY_WATCH_S = 0.2
EVENTS_AFTER_END_S = 1.0
MIN_FLAP_INTERVAL_S = 0.5


class DrillInputError(ValueError):
    """Bad drill options: the message names the option and the value (CLI exit 2)."""


class DrillSetupError(RuntimeError):
    """The drill could not set up its nodes or proxy."""


@dataclass
class DrillOptions:
    scenarios: Sequence[str] | None = None
    profile: str = "plugin"
    out: Path = Path("./drill-report")
    duration_scale: float = 1.0
    concurrency: int = 8
    workdir: Path | None = None  # default: <out>/work-<profile>

    def selected(self) -> list[Scenario]:
        """Validate the options; the scenarios to run, in the battery's order."""
        if self.profile not in PROFILES:
            raise DrillInputError(f"--profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        scale = self.duration_scale
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0.05 <= scale <= 20:
            raise DrillInputError(f"--duration-scale must be a number from 0.05 to 20, got {scale!r}")
        concurrency = self.concurrency
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
            raise DrillInputError(f"--concurrency must be an integer from 1 to 256, got {concurrency!r}")
        names = list(self.scenarios) if self.scenarios else list(SCENARIO_NAMES)
        unknown = [name for name in names if name not in SCENARIOS]
        if unknown or not names:
            raise DrillInputError(
                f"--scenarios: unknown scenario(s) {', '.join(repr(n) for n in unknown) or '(none given)'}; "
                f"known: {', '.join(SCENARIO_NAMES)}"
            )
        return [SCENARIOS[name] for name in SCENARIO_NAMES if name in names]


@dataclass
class _Run:
    scenario: Scenario
    nodes: dict[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    phases: Phases | None = None
    t0_wall: float = 0.0
    started_wall: datetime | None = None
    error: str | None = None


def blackhole_support() -> tuple[Any, str | None]:
    """The netns helper's ``BlackholeNode`` class, or None and the reason it can't be used."""
    try:
        from litellm_failover.drill import namespaces, netns
    except ImportError as exc:
        return None, f"the network namespace helper is not available ({exc})"
    reason = namespaces.netns_support()
    if reason is not None:
        return None, reason
    return netns.BlackholeNode, None


def _make_node(run: _Run, spec_id: str, blackhole: bool, blackhole_cls: Any) -> Any:
    name = deployment_id(run.scenario.name, spec_id)
    if blackhole:
        return blackhole_cls(name, words=WORDS, tokens_per_s=TOKENS_PER_S)
    return FakeVLLMProcess(name, words=WORDS, tokens_per_s=TOKENS_PER_S)


def _start_nodes(runs: list[_Run], progress: Progress) -> None:
    """Start every node in parallel threads (each is a subprocess taking ~1 s of CPU to import)."""
    blackhole_cls, reason = blackhole_support()
    jobs: list[tuple[_Run, str, Any]] = []
    for run in runs:
        if run.scenario.needs_netns and blackhole_cls is None:
            run.skip_reason = reason
            continue
        for spec in run.scenario.nodes:
            node = _make_node(run, spec.id, spec.blackhole, blackhole_cls)
            run.nodes[spec.id] = node
            jobs.append((run, spec.id, node))
    progress.note(f"starting {len(jobs)} fake vLLM node(s)")

    def start(job: tuple[_Run, str, Any]) -> str | None:
        _, spec_id, node = job
        try:
            node.start()
        except Exception as exc:  # a node that can't start: its scenario is skipped, with why
            return f"{spec_id} did not start: {exc}"
        return None

    with ThreadPoolExecutor(max_workers=6) as pool:
        failures = list(pool.map(start, jobs))
    for (run, _, _), failure in zip(jobs, failures, strict=True):
        if failure is not None and run.skip_reason is None:
            run.skip_reason = failure
    for run in runs:
        if run.skip_reason is not None:
            _stop_nodes([run])


def _stop_nodes(runs: list[_Run]) -> None:
    for run in runs:
        for node in run.nodes.values():
            with contextlib.suppress(Exception):
                (node.close if hasattr(node, "close") else node.stop)()
        run.nodes.clear()


def _groups(runs: list[_Run]) -> dict[str, list[tuple[str, int, str, str]]]:
    groups = {}
    for run in runs:
        if run.skip_reason is None:
            groups[run.scenario.name] = [
                (spec.id, spec.tier, run.nodes[spec.id].api_base, run.nodes[spec.id].url)
                for spec in run.scenario.nodes
            ]
    return groups


async def _wait_ready(proxy: ProxyProcess, profile: str, runs: list[_Run], db_url: str) -> None:
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


async def _run_scenario(
    run: _Run, proxy: ProxyProcess, options: DrillOptions, progress: Progress, number: int
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

    budget = WARM_MAX_S + (FAULT_S + RECOVERY_MAX_S) * scale + DRAIN_TIMEOUT_S
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
        warm_until = WARM_S * scale
        wanted = WARM_ANSWERS_PER_WORKER * options.concurrency
        while elapsed() < WARM_MAX_S and not load.done():
            if elapsed() >= warm_until and sum(o.ok for o in run.outcomes) >= wanted:
                break
            await asyncio.sleep(POLL_S)
        progress.phase("fault")
        fault_at = elapsed()
        await scenario.fault(ctx)
        fault_end = fault_at + FAULT_S * scale
        await asyncio.wait({load}, timeout=max(0.0, fault_end - elapsed()))  # the phase's length
        progress.phase("recovery")
        await scenario.restore(ctx)
        restored_at = elapsed()
        ramp_judged = scenario.check_ramp and options.profile == "plugin"
        full_share = 1.0 / len(scenario.primary_nodes()) if restored in scenario.primary_nodes() else 1.0
        recovery_min = restored_at + RECOVERY_MIN_S * scale
        recovery_max = restored_at + RECOVERY_MAX_S * scale
        # With a ramp to judge, a full share is not enough to stop: a short window at 50 % can
        # look like 100 % by chance. The ramp cannot end before its steps have run from the
        # node's first answer back, so recovery waits at least that long.
        ramp_span = (len(RAMP_STEPS) - 1) * STEP_INTERVAL_S * scale if ramp_judged else 0.0
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


async def _events_for(db_url: str, run: _Run) -> list[dict[str, Any]]:
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
    progress = progress or Progress()
    started_at = datetime.now(UTC)
    started = time.monotonic()
    workdir = await asyncio.to_thread(_prepare_workdir, options)
    db_url = database_url(workdir)
    runs = [_Run(scenario) for scenario in scenarios]
    progress.begin(options.profile, [s.name for s in scenarios])
    config: dict[str, Any] = {}
    proxy: ProxyProcess | None = None
    try:
        await asyncio.to_thread(_start_nodes, runs, progress)
        live = [run for run in runs if run.skip_reason is None]
        if live:
            config = build_config(
                options.profile, _groups(runs), workdir=workdir, scale=options.duration_scale
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
                    await _run_scenario(run, proxy, options, progress, number)
                else:
                    progress.phase(f"skipped: {run.skip_reason}")
                progress.scenario_ran()
            flushing = " (flushing the plugin's events)" if options.profile == "plugin" else ""
            progress.note(f"stopping the proxy{flushing}")
            await asyncio.to_thread(proxy.stop)
    finally:
        if proxy is not None:
            await asyncio.to_thread(proxy.stop)
        await asyncio.to_thread(_stop_nodes, runs)
    entries = []
    for run in runs:
        if run.skip_reason is not None or run.phases is None:
            entry = _skipped(run.scenario, run.skip_reason or "not run")
        else:
            events = await _events_for(db_url, run) if options.profile == "plugin" else []
            entry = analyse(run.scenario, options.profile, run.outcomes, run.phases, events, RAMP_STEPS)
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
        },
        "totals": {
            key: sum(entry[key] for entry in entries)
            for key in ("requests", "streams", "client_errors", "broken_streams", "resumed_streams")
        },
        "scenarios": entries,
    }
    progress.end(result)
    return result


__all__ = ["DrillInputError", "DrillOptions", "DrillSetupError", "run_drill", "short_id"]

"""The demo: the main job on embedded defaults, no network, under two minutes on 2 cores.

Three fake vLLM servers run as real processes: a two-node primary tier (p1, p2) and a standby
(s1). A LiteLLM Router with the plugin on a SQLite file carries a mixed streaming and
non-streaming load while the demo SIGKILLs p1, shows the failover, restarts p1, shows the
recovery, and ends with a summary: requests, client-visible errors, events written, time to
failover.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from litellm_failover.drill.loadgen import RequestResult, router_sender, run_load
from litellm_failover.providers.fake.process import FakeVLLMProcess

NODES = (("p1", 1), ("p2", 1), ("s1", 2))
RECENT = 60  # the requests the share column counts
SHARE_LABEL = f"share of the last {RECENT} requests"


@dataclass
class DemoRun:
    started_at: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    results: list[RequestResult] = field(default_factory=list)
    recent: deque[RequestResult] = field(default_factory=lambda: deque(maxlen=RECENT))
    killed_at: float | None = None
    ejected_at: float | None = None
    first_served_elsewhere_at: float | None = None
    restarted_at: float | None = None
    recovered_at: float | None = None
    events: list[str] = field(default_factory=list)

    def take(self, result: RequestResult) -> None:
        self.results.append(result)
        self.recent.append(result)
        if (
            self.killed_at is not None
            and self.first_served_elsewhere_at is None
            and result.ok
            and result.started_at >= self.killed_at
            and result.served_by != "p1"
        ):
            self.first_served_elsewhere_at = result.ended_at

    @property
    def client_errors(self) -> list[RequestResult]:
        """Errors a client would see: everything failed except streams already cut mid-answer."""
        return [r for r in self.results if not r.ok and not r.broken_stream]

    @property
    def broken_streams(self) -> list[RequestResult]:
        return [r for r in self.results if r.broken_stream]


def model_list(nodes: dict[str, FakeVLLMProcess]) -> list[dict[str, Any]]:
    return [
        {
            "model_name": "demo-chat",
            "litellm_params": {
                "model": "hosted_vllm/fake-model",
                "api_base": nodes[name].api_base,
                "order": order,
                "timeout": 10,
                "stream_timeout": 10,
            },
            "model_info": {"id": name, "failover": {"gpu_url": nodes[name].url}},
        }
        for name, order in NODES
    ]


def render(run: DemoRun, plugin: Any) -> Group:
    elapsed = time.monotonic() - run.started_at
    head = Table.grid(padding=(0, 2))
    head.add_row(
        f"[bold]phase[/]: {run.phase}",
        f"[bold]t[/]={elapsed:5.1f}s",
        f"[bold]requests[/]: {len(run.results)}",
        f"[bold]client errors[/]: {len(run.client_errors)}",
    )
    nodes = Table(title="deployments", expand=False)
    for column in ("id", "tier", "state", "weight", SHARE_LABEL, "reason"):
        # Ids and figures stay whole; the long header and the reason may wrap on a narrow terminal.
        nodes.add_column(column, no_wrap=column not in (SHARE_LABEL, "reason"))
    shares = Counter(r.served_by for r in run.recent if r.ok)
    total = max(1, sum(shares.values()))
    for deployment in plugin.status()["groups"]["demo-chat"]["deployments"]:
        state = deployment["state"]
        colour = {"healthy": "green", "degraded": "yellow", "recovering": "cyan"}.get(state, "red")
        nodes.add_row(
            deployment["deployment_id"],
            str(deployment["tier"]),
            f"[{colour}]{state}[/]",
            f"{deployment['effective_weight']:.2f}",
            f"{100 * shares[deployment['deployment_id']] / total:5.1f}%",
            deployment["reason"][:60],
        )
    events = Table(title="latest events", expand=False, show_header=False)
    events.add_column("event")
    for line in run.events[-6:]:
        events.add_row(line)
    return Group(head, nodes, events)


class Screen:
    """The demo's view. On a terminal, a live view redrawn in place; into a pipe or a file a
    redrawn view means nothing (only its last frame would land, glued to what follows), so one
    plain line per phase as it starts, then the last frame, each on lines of their own."""

    def __init__(self, console: Console, run: DemoRun, plugin: Any) -> None:
        self.console, self.run, self.plugin = console, run, plugin
        self._live: Live | None = None
        self._phase: str | None = None

    def __enter__(self) -> Screen:
        if self.console.is_terminal:
            self._live = Live(self._frame(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
        elif exc[0] is None:
            self.console.print(self._frame())
            self.console.print()

    def _frame(self) -> Group:
        return render(self.run, self.plugin)

    def update(self) -> None:
        if self._live is not None:
            self._live.update(self._frame())
        elif self.run.phase != self._phase:
            self._phase = self.run.phase
            elapsed = time.monotonic() - self.run.started_at
            self.console.print(
                f"{elapsed:5.1f}s phase: {self.run.phase} (requests: {len(self.run.results)}, "
                f"client errors: {len(self.run.client_errors)})",
                soft_wrap=True,
                highlight=False,
            )


async def run_demo(duration_s: float, output_dir: Path, console: Console) -> dict[str, Any]:
    import litellm

    from litellm_failover import attach

    database = fresh_database(output_dir)
    nodes = {name: FakeVLLMProcess(name, tokens_per_s=300) for name, _ in NODES}
    for node in nodes.values():
        node.start()
    run = DemoRun()
    router = litellm.Router(model_list=model_list(nodes), num_retries=2, retry_after=0)
    plugin = attach(
        router,
        {
            "database_url": f"sqlite+aiosqlite:///{database}",
            "health": {"interval_s": 0.5, "failure_interval_s": 0.1},
        },
    )

    def on_event(event: Any) -> None:
        stamp = time.monotonic() - run.started_at
        target = event.deployment_id or event.to_deployment or ""
        run.events.append(f"{stamp:5.1f}s {event.event_type} {target} {event.reason[:70]}")
        state = event.details.get("to_state")
        if event.deployment_id == "p1" and state == "unhealthy" and run.ejected_at is None:
            run.ejected_at = time.monotonic()
        if event.deployment_id == "p1" and state == "healthy" and run.restarted_at is not None:
            run.recovered_at = run.recovered_at or time.monotonic()

    plugin.core.listeners.append(on_event)
    stop = asyncio.Event()
    phase_s = max(3.0, duration_s / 4)
    try:
        async with plugin:
            load = asyncio.create_task(
                run_load(
                    router_sender(router, "demo-chat"),
                    total=1_000_000,
                    concurrency=6,
                    deadline_s=duration_s + 60,
                    on_result=run.take,
                    stop=stop,
                )
            )
            with Screen(console, run, plugin) as screen:

                async def phase(name: str, seconds: float) -> None:
                    run.phase = name
                    deadline = time.monotonic() + seconds
                    while time.monotonic() < deadline:
                        screen.update()
                        await asyncio.sleep(0.25)

                await phase("steady: traffic on the primary tier (p1, p2)", phase_s)
                nodes["p1"].kill()
                run.killed_at = time.monotonic()
                run.events.append(f"{run.killed_at - run.started_at:5.1f}s SIGKILL p1")
                await phase("p1 killed: traffic moves to p2", phase_s)
                nodes["p1"].restart()
                run.restarted_at = time.monotonic()
                run.events.append(f"{run.restarted_at - run.started_at:5.1f}s p1 restarted")
                recovery_deadline = time.monotonic() + 30
                run.phase = "p1 restarted: probes must pass before it gets traffic"
                while run.recovered_at is None and time.monotonic() < recovery_deadline:
                    screen.update()
                    await asyncio.sleep(0.25)
                await phase("p1 recovered: traffic shared again", phase_s)
                stop.set()
                await load
                screen.update()
            await plugin.writer.flush(timeout=10)
            writer = plugin.writer.stats()
    finally:
        stop.set()
        plugin.detach()
        for node in nodes.values():
            node.stop()
    summary = summarise(run, writer, database)
    write_summary(output_dir, summary)
    console.print(summary_table(summary))
    return summary


def fresh_database(output_dir: Path) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    database = output_dir / "failover-demo.db"
    database.unlink(missing_ok=True)
    return database


def write_summary(output_dir: Path, summary: dict[str, Any]) -> None:
    (output_dir / "demo-summary.json").write_text(json.dumps(summary, indent=2))


def summarise(run: DemoRun, writer: dict[str, Any], database: Path) -> dict[str, Any]:
    def since_kill(moment: float | None) -> float | None:
        return None if moment is None or run.killed_at is None else round(moment - run.killed_at, 3)

    served = Counter(r.served_by for r in run.results if r.ok)
    return {
        "requests": len(run.results),
        "streamed": sum(1 for r in run.results if r.stream),
        "client_visible_errors": len(run.client_errors),
        "streams_cut_in_flight_on_killed_node": len(run.broken_streams),
        "served_by": dict(sorted(served.items())),
        "events_written": writer["written"],
        "events_dropped": writer["dropped"],
        "time_to_eject_s": since_kill(run.ejected_at),
        "time_to_first_request_elsewhere_s": since_kill(run.first_served_elsewhere_at),
        "time_to_recover_after_restart_s": (
            None
            if run.recovered_at is None or run.restarted_at is None
            else round(run.recovered_at - run.restarted_at, 3)
        ),
        "database": str(database),
    }


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="litellm-failover demo: summary")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key.replace("_", " "), json.dumps(value) if isinstance(value, dict) else str(value))
    return table

"""The drill's scenarios: one small definition each (topology, fault, restore, what success means).

A scenario runs in three phases under a steady mixed load: warm (everything healthy), fault
(``fault`` applied at ``fault_at_s``), recovery (``restore`` applied, then load until the
restored node serves its share again or the phase's time is up). Each scenario gets its own
model group and its own nodes, so one scenario's ejections and cooldowns cannot leak into the
next; the runner starts all of them behind one proxy per profile.

Node actions block (process signals, HTTP control calls), so they run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class DrillNode(Protocol):
    """What a scenario may do to a node: a ``FakeVLLMProcess`` or the netns helper's node."""

    @property
    def api_base(self) -> str: ...

    @property
    def url(self) -> str: ...


@dataclass(frozen=True, slots=True)
class NodeSpec:
    id: str
    tier: int
    blackhole: bool = False  # started inside its own network namespace (network_blackhole)


@dataclass
class ScenarioContext:
    """The running nodes of one scenario (by short id) and the background work its fault started."""

    nodes: dict[str, Any]
    flap_interval_s: float = 1.0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    halt: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(self, node: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.nodes[node], method), *args, **kwargs)

    async def cancel_tasks(self) -> None:
        """Ask background actions to stop and wait for them: cancelling one instead could leave
        its control call running in a thread, landing after the restore's own call."""
        self.halt.set()
        for task in self.tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, HALT_TIMEOUT_S)
        self.tasks.clear()
        self.halt = asyncio.Event()


HALT_TIMEOUT_S = 10.0
Action = Callable[[ScenarioContext], Awaitable[None]]

P1_S1 = (NodeSpec("p1", 1), NodeSpec("s1", 2))


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    description: str
    fault: Action
    restore: Action
    nodes: tuple[NodeSpec, ...] = P1_S1
    faulted: tuple[str, ...] = ("p1",)
    # The node whose first answer after the fault is "the standby took over" (None: no failover).
    standby: str | None = "s1"
    # The restored node is expected to serve again after the restore (time_to_failback_s).
    failback: bool = True
    # The failback must follow the configured ramp (plugin profile): checked from events and shares.
    check_ramp: bool = False
    # With check_ramp: a ramp the check could not see ("not measured") fails the scenario, rather
    # than being reported as not measured only.
    ramp_required: bool = False
    # Plugin goal: the first standby answer within this many seconds of the fault.
    max_standby_s: float | None = None
    # Plugin profile: the faulted node's share must drop (degrade before eject) without failures.
    expect_share_drop: bool = False
    # Plugin profile: a panic_mode event must show the group failed open.
    expect_panic: bool = False
    needs_netns: bool = False

    def deployments(self) -> list[dict[str, Any]]:
        return [{"id": node.id, "tier": node.tier} for node in self.nodes]

    def primary_nodes(self) -> list[str]:
        return [node.id for node in self.nodes if node.tier == 1]


# --- actions -------------------------------------------------------------------------------


def _set_fault(mode: str, *nodes: str, **params: Any) -> Action:
    async def act(ctx: ScenarioContext) -> None:
        await asyncio.gather(*(ctx.call(node, "set_fault", mode, **params) for node in nodes))

    return act


def _clear(*nodes: str) -> Action:
    async def act(ctx: ScenarioContext) -> None:
        await ctx.cancel_tasks()
        await asyncio.gather(*(ctx.call(node, "clear_fault") for node in nodes))

    return act


async def _kill_p1(ctx: ScenarioContext) -> None:
    await ctx.call("p1", "kill")


async def _restart_p1(ctx: ScenarioContext) -> None:
    await ctx.call("p1", "restart")


async def _flap_p1(ctx: ScenarioContext) -> None:
    """Toggle http_500 on p1 every ``flap_interval_s`` until the restore halts it."""
    halt = ctx.halt

    async def flap() -> None:
        on = True
        while not halt.is_set():  # bounded by the restore, which sets halt
            if on:
                await ctx.call("p1", "set_fault", "http_500")
            else:
                await ctx.call("p1", "clear_fault")
            on = not on
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(halt.wait(), ctx.flap_interval_s)

    ctx.tasks.append(asyncio.create_task(flap()))


async def _cut_p1(ctx: ScenarioContext) -> None:
    await ctx.call("p1", "cut")


async def _uncut_p1(ctx: ScenarioContext) -> None:
    await ctx.call("p1", "restore")


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "sigkill_primary",
            "SIGKILL of the primary",
            "p1 is SIGKILLed under load (refused connections, streams cut by the kernel) and "
            "restarted later: failover to s1 at once, failback in the configured ramp.",
            _kill_p1,
            _restart_p1,
            check_ramp=True,
            ramp_required=True,
            max_standby_s=1.0,
        ),
        Scenario(
            "hang",
            "Primary hangs",
            "p1 accepts connections but never answers: probes time out, held requests time out "
            "and retry on s1; cleared later.",
            _set_fault("hang", "p1"),
            _clear("p1"),
            check_ramp=True,
        ),
        Scenario(
            "http_500",
            "Primary answers 500",
            "p1 answers every request and /health with HTTP 500; cleared later.",
            _set_fault("http_500", "p1"),
            _clear("p1"),
            check_ramp=True,
        ),
        Scenario(
            "health_lie",
            "Primary lies on /health",
            "p1's /health says 200 while every generation fails with 500: only real traffic "
            "(outlier detection) can see it; cleared later.",
            _set_fault("health_lie", "p1"),
            _clear("p1"),
            check_ramp=True,
        ),
        Scenario(
            "gpu_pressure",
            "GPU pressure on one primary",
            "p1 reports GPU memory 97 %, KV cache 99 % and 64 queued requests: degrade before "
            "eject, p1's share drops while p2 takes the rest, nothing fails.",
            _set_fault("gpu_pressure", "p1"),
            _clear("p1"),
            nodes=(NodeSpec("p1", 1), NodeSpec("p2", 1), NodeSpec("s1", 2)),
            standby=None,
            expect_share_drop=True,
        ),
        Scenario(
            "midstream_drop",
            "Streams dropped mid-answer",
            "p1 aborts every stream's TCP connection after 5 chunks: each broken stream must "
            "continue elsewhere without the client noticing; cleared later.",
            _set_fault("drop_midstream", "p1", after_chunks=5),
            _clear("p1"),
        ),
        Scenario(
            "flapping",
            "Flapping primary",
            "p1 toggles between HTTP 500 and healthy about every second: flap damping keeps it "
            "out, no request may fail; steady again later.",
            _flap_p1,
            _clear("p1"),
        ),
        Scenario(
            "all_down_panic",
            "Every node fails its probes",
            "p1 and s1 both fail /health and the GPU check while still able to serve: with every "
            "node ejected the group fails open (panic mode) and keeps serving.",
            _set_fault("health_fail", "p1", "s1"),
            _clear("p1", "s1"),
            faulted=("p1", "s1"),
            standby=None,
            failback=False,
            expect_panic=True,
        ),
        Scenario(
            "network_blackhole",
            "Network black hole",
            "p1 runs in its own network namespace whose link is cut (packets dropped, no RST): "
            "requests and probes time out instead of failing fast; the link is restored later.",
            _cut_p1,
            _uncut_p1,
            nodes=(NodeSpec("p1", 1, blackhole=True), NodeSpec("s1", 2)),
            check_ramp=True,
            needs_netns=True,
        ),
    )
}

SCENARIO_NAMES: tuple[str, ...] = tuple(SCENARIOS)

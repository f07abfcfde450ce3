"""The drill's fake vLLM nodes: one process per node (or a network black hole), started together.

A node that cannot start skips its scenario, with the reason, instead of failing the battery.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from litellm_failover.drill.load import TOKENS_PER_S, WORDS
from litellm_failover.drill.profiles import deployment_id
from litellm_failover.drill.progress import Progress
from litellm_failover.drill.scenario_run import ScenarioRun
from litellm_failover.providers.fake.process import FakeVLLMProcess

# A node imports the fake server (~1 s of CPU) and up to six start at once: on a busy machine
# (2 cores shared with other work, load average 15) that took over 10 s, the fake process's own
# default, and even 30 s; a scenario was skipped for a node that would have served. Waiting
# longer costs nothing when nodes come up fast.
NODE_START_TIMEOUT_S = 60.0


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


def _make_node(run: ScenarioRun, spec_id: str, blackhole: bool, blackhole_cls: Any) -> Any:
    name = deployment_id(run.scenario.name, spec_id)
    if blackhole:
        return blackhole_cls(name, words=WORDS, tokens_per_s=TOKENS_PER_S, start_timeout=NODE_START_TIMEOUT_S)
    return FakeVLLMProcess(name, words=WORDS, tokens_per_s=TOKENS_PER_S)


def start_nodes(runs: list[ScenarioRun], progress: Progress) -> None:
    """Start every node in parallel threads (each is a subprocess taking ~1 s of CPU to import)."""
    blackhole_cls, reason = blackhole_support()
    jobs: list[tuple[ScenarioRun, str, Any]] = []
    for run in runs:
        if run.scenario.needs_netns and blackhole_cls is None:
            run.skip_reason = reason
            continue
        for spec in run.scenario.nodes:
            node = _make_node(run, spec.id, spec.blackhole, blackhole_cls)
            run.nodes[spec.id] = node
            jobs.append((run, spec.id, node))
    progress.note(f"starting {len(jobs)} fake vLLM node(s)")

    def start(job: tuple[ScenarioRun, str, Any]) -> str | None:
        _, spec_id, node = job
        try:
            if isinstance(node, FakeVLLMProcess):
                node.start(timeout=NODE_START_TIMEOUT_S)
            else:
                node.start()  # the black hole node took its start timeout when it was made
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
            stop_nodes([run])


def stop_nodes(runs: list[ScenarioRun]) -> None:
    for run in runs:
        for node in run.nodes.values():
            with contextlib.suppress(Exception):
                (node.close if hasattr(node, "close") else node.stop)()
        run.nodes.clear()


def node_groups(runs: list[ScenarioRun]) -> dict[str, list[tuple[str, int, str, str]]]:
    groups = {}
    for run in runs:
        if run.skip_reason is None:
            groups[run.scenario.name] = [
                (spec.id, spec.tier, run.nodes[spec.id].api_base, run.nodes[spec.id].url)
                for spec in run.scenario.nodes
            ]
    return groups

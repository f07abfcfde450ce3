"""Background active probing: one schedule per probe target, with jitter, never on the request path.

Each schedule starts a probe round every interval and hands each report to the core. After a
failed round it re-probes sooner (``failure_interval_s``) so a failure is confirmed quickly, and a
round still waiting on a hung node does not delay the next one, so a hang is ejected within about
one interval plus one probe timeout. A schedule survives anything a probe does: the probe function
itself turns every answer into checks, and the round logs and carries on if even that breaks.

Schedules are event-loop timers, not a coroutine per target: each round costs one task and one
timer, which matters at 50 rounds a second (100 deployments every 2 s) in the Router's own loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Sequence

from litellm_failover.core import FailoverCore
from litellm_failover.probes import ProbeFn, SharedProbe
from litellm_failover.providers.base import CheckResult, ProbeReport
from litellm_failover.providers.probe_client import ProbeClient
from litellm_failover.settings import HealthSettings

logger = logging.getLogger("litellm_failover")


class _Schedule:
    """One probe target's timer and the rounds it has in flight."""

    __slots__ = ("deployment_ids", "health", "probe", "rounds", "timer")

    def __init__(self, deployment_ids: tuple[str, ...], probe: ProbeFn, health: HealthSettings) -> None:
        self.deployment_ids = deployment_ids
        self.probe = probe
        self.health = health
        self.timer: asyncio.TimerHandle | None = None
        self.rounds: set[asyncio.Task[ProbeReport]] = set()


class Prober:
    def __init__(self, core: FailoverCore, probes: Sequence[SharedProbe]) -> None:
        self._core = core
        self._probes = list(probes)
        self._session: ProbeClient | None = None
        self._schedules: list[_Schedule] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.rounds = 0
        # Told every report as it arrives, with the deployments it was for (the metrics'
        # probe latency histogram); like the core's listeners, one that raises is logged.
        self.report_listeners: list[Callable[[tuple[str, ...], ProbeReport], None]] = []

    @property
    def deployment_ids(self) -> list[str]:
        return [i for shared in self._probes for i in shared.deployment_ids]

    async def start(self) -> None:
        if self._schedules:
            return
        self._loop = asyncio.get_running_loop()
        # One keep-alive client for every probe; per-probe timeouts are the probe function's job.
        self._session = ProbeClient()
        for shared in self._probes:
            # Spread the first rounds over one interval so N targets don't probe in lockstep.
            self._schedule(shared, spread=True)

    def _schedule(self, shared: SharedProbe, *, spread: bool) -> None:
        assert self._loop is not None
        # Shared: the same settings for every deployment behind the probe.
        health = self._core.snapshot.deployments[shared.deployment_ids[0]].spec.health
        schedule = _Schedule(shared.deployment_ids, shared.probe, health)
        self._schedules.append(schedule)
        delay = random.uniform(0, health.interval_s) if spread else 0.0
        schedule.timer = self._loop.call_later(delay, self._start_round, schedule)

    def add(self, probes: Sequence[SharedProbe]) -> None:
        """Probe deployments added at run time, first round at once (before the core adopts
        them, so it knows they are probed)."""
        self._probes.extend(probes)
        if self._loop is not None and self._session is not None:
            for shared in probes:
                self._schedule(shared, spread=False)

    def remove(self, deployment_ids: Iterable[str]) -> None:
        """Stop probing deployments deleted at run time; a shared probe goes on for the rest."""
        gone = set(deployment_ids)
        self._probes = [
            SharedProbe(kept, shared.probe)
            for shared in self._probes
            if (kept := tuple(i for i in shared.deployment_ids if i not in gone))
        ]
        for schedule in list(self._schedules):
            schedule.deployment_ids = tuple(i for i in schedule.deployment_ids if i not in gone)
            if not schedule.deployment_ids:
                if schedule.timer is not None:
                    schedule.timer.cancel()
                    schedule.timer = None
                for task in schedule.rounds:
                    task.cancel()
                self._schedules.remove(schedule)

    async def stop(self) -> None:
        rounds = []
        for schedule in self._schedules:
            if schedule.timer is not None:
                schedule.timer.cancel()
            rounds.extend(schedule.rounds)
        for task in rounds:
            task.cancel()
        await asyncio.gather(*rounds, return_exceptions=True)
        self._schedules.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _start_round(self, schedule: _Schedule) -> None:
        loop = self._loop
        if loop is None or self._session is None:
            return  # stopped
        started = loop.time()
        task = loop.create_task(self._round(schedule.deployment_ids, schedule.probe))
        schedule.rounds.add(task)
        health = schedule.health
        # Fixed cadence: the next round is due one interval on whether or not this one answered
        # (a round stuck on a hung node is bounded by its own timeout), so the failures that eject
        # a hung node overlap instead of queueing: about one interval plus one timeout.
        interval = health.interval_s * (1.0 - health.jitter * random.random())
        schedule.timer = loop.call_at(started + interval, self._start_round, schedule)

        def finished(done: asyncio.Task[ProbeReport]) -> None:
            schedule.rounds.discard(done)
            if done.cancelled() or done.exception() is not None or not done.result().failed:
                return
            if schedule.timer is None or health.failure_interval_s >= interval:
                return
            # A failed round: confirm it sooner than the cadence would.
            schedule.timer.cancel()
            due = max(loop.time(), started + health.failure_interval_s)
            schedule.timer = loop.call_at(due, self._start_round, schedule)

        task.add_done_callback(finished)

    async def _round(self, deployment_ids: tuple[str, ...], probe: ProbeFn) -> ProbeReport:
        report = await self._run(deployment_ids, probe)
        self.rounds += 1
        for deployment_id in deployment_ids:
            try:
                self._core.apply_probe(deployment_id, report)
            except Exception:
                logger.exception("applying the probe report of %s failed", deployment_id)
        for listener in self.report_listeners:
            try:
                listener(deployment_ids, report)
            except Exception:
                logger.exception("probe report listener failed")
        return report

    async def _run(self, deployment_ids: tuple[str, ...], probe: ProbeFn) -> ProbeReport:
        assert self._session is not None
        try:
            return await probe(self._session)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the probe function should not raise; if it does, say so
            logger.warning("probe of %s raised %s", ",".join(deployment_ids), type(exc).__name__)
            return ProbeReport(
                checks=(CheckResult.failed("http_health", f"probe error: {type(exc).__name__}"),),
                latency_s=0.0,
            )

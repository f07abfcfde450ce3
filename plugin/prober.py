"""Background active probing: one loop per deployment, with jitter, never on the request path.

Each loop starts a probe round every interval and hands each report to the core. After a failed
round it re-probes sooner (``failure_interval_s``) so a failure is confirmed quickly, and a round
still waiting on a hung node does not delay the next one, so a hang is ejected within about one
interval plus one probe timeout. A loop survives anything a probe
does: the probe function itself turns every answer into checks, and this loop logs and carries
on if even that breaks.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from litellm_failover.core import FailoverCore
from litellm_failover.providers.base import CheckResult, ProbeReport
from litellm_failover.providers.probe_client import ProbeClient

logger = logging.getLogger("litellm_failover")

if TYPE_CHECKING:
    from litellm_failover.probes import SharedProbe

ProbeFn = Callable[[ProbeClient], Awaitable[ProbeReport]]


class Prober:
    def __init__(self, core: FailoverCore, probes: Sequence[SharedProbe]) -> None:
        self._core = core
        self._probes = list(probes)
        self._session: ProbeClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.rounds = 0

    @property
    def deployment_ids(self) -> list[str]:
        return [i for shared in self._probes for i in shared.deployment_ids]

    async def start(self) -> None:
        if self._tasks:
            return
        # One keep-alive client for every probe; per-probe timeouts are the probe function's job.
        self._session = ProbeClient()
        for shared in self._probes:
            name = "probe:" + ",".join(shared.deployment_ids)
            self._tasks.append(
                asyncio.create_task(self._loop(shared.deployment_ids, shared.probe), name=name)
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _loop(self, deployment_ids: tuple[str, ...], probe: ProbeFn) -> None:
        health = self._core.health[deployment_ids[0]].spec.health  # shared probes share settings
        loop = asyncio.get_running_loop()
        # Spread the first rounds over one interval so N deployments don't probe in lockstep.
        await asyncio.sleep(random.uniform(0, health.interval_s))
        pending: set[asyncio.Task[ProbeReport]] = set()
        try:
            while True:
                started = loop.time()
                round_task = asyncio.create_task(self._round(deployment_ids, probe))
                pending.add(round_task)
                round_task.add_done_callback(pending.discard)
                interval = health.interval_s * (1.0 - health.jitter * random.random())
                done, _ = await asyncio.wait({round_task}, timeout=interval)
                if not done:
                    # Fixed cadence: a round stuck on a hung node does not hold back the next
                    # one (each is bounded by its own timeout), so the failures that eject it
                    # overlap instead of queueing: about one interval plus one timeout.
                    continue
                delay = health.failure_interval_s if round_task.result().failed else interval
                await asyncio.sleep(max(0.0, delay - (loop.time() - started)))
        finally:
            for task in pending:
                task.cancel()

    async def _round(self, deployment_ids: tuple[str, ...], probe: ProbeFn) -> ProbeReport:
        report = await self._run(deployment_ids, probe)
        self.rounds += 1
        for deployment_id in deployment_ids:
            try:
                self._core.apply_probe(deployment_id, report)
            except Exception:
                logger.exception("applying the probe report of %s failed", deployment_id)
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

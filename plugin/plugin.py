"""``FailoverPlugin``: wires a LiteLLM Router to the core, the prober and the store writer.

``attach(router, settings)`` validates everything first (a bad setting or ``model_info.failover``
refuses to start with its key path), registers the LiteLLM handler, and returns the plugin; its
background work (probes, weight refresh, the writer) runs inside ``async with plugin:``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import litellm

from litellm_failover.attempts import AttemptLedger
from litellm_failover.core import FailoverCore
from litellm_failover.deployments import DeploymentSpec, read_model_list
from litellm_failover.handler import FailoverHandler
from litellm_failover.outlier import Outcome
from litellm_failover.prober import Prober
from litellm_failover.probes import build_probes
from litellm_failover.redact import Redactor
from litellm_failover.settings import FailoverSettings, parse_settings
from litellm_failover.store.writer import StoreWriter

logger = logging.getLogger("litellm_failover")


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class FailoverPlugin:
    def __init__(
        self,
        router: litellm.Router,
        settings: FailoverSettings,
        *,
        handler: FailoverHandler | None = None,
    ) -> None:
        self.router = router
        self.settings = settings
        self.instance_id = settings.instance_id or default_instance_id()
        model_list = list(router.model_list or [])
        specs = read_model_list(model_list, settings.health)
        probes = build_probes(specs)
        probed = {i for shared in probes for i in shared.deployment_ids}
        self.redact = Redactor(_secrets(specs))
        self.writer = StoreWriter(settings.database_url, settings.writer)
        self.core = FailoverCore(
            settings,
            specs,
            instance_id=self.instance_id,
            probed=lambda spec: spec.deployment_id in probed,
            sink=self.writer,
        )
        self.prober = Prober(self.core, probes)
        self.ledger = AttemptLedger()
        self._deployments: dict[str, dict] = {str(d["model_info"]["id"]): d for d in model_list}
        self._group_size = {group: len(ids) for group, ids in self.core.groups.items()}
        self._refresh_task: asyncio.Task[None] | None = None
        self.handler = handler or FailoverHandler()
        self.handler.plugin = self
        if self.handler not in litellm.callbacks:
            litellm.logging_callback_manager.add_litellm_callback(self.handler)
        if not settings.keep_litellm_cooldowns:
            # The plugin decides health; LiteLLM's timer cooldown would hide deployments from it
            # and bring them back all at once, which is exactly what the plugin replaces.
            router.disable_cooldowns = True

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.writer.start()
        await self.prober.start()
        if self._refresh_task is None:
            self._refresh_task = asyncio.create_task(self._refresh_loop(), name="failover:refresh")

    async def stop(self) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task
            self._refresh_task = None
        await self.prober.stop()
        await self.writer.stop()

    async def __aenter__(self) -> FailoverPlugin:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def detach(self) -> None:
        """Remove the handler from LiteLLM's callbacks (tests and embedded reuse)."""
        self.handler.plugin = None
        litellm.logging_callback_manager.remove_callback_from_all_lists(self.handler)

    async def _refresh_loop(self) -> None:
        interval = self.settings.weights.refresh_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                self.core.tick()
            except Exception:
                logger.exception("refreshing routing tables failed")

    # -- hot path -------------------------------------------------------------------------

    def route(self, group: str, healthy: list[dict], request_kwargs: Mapping[str, Any]) -> list[dict]:
        table = self.core.tables.get(group)
        first = healthy[0]
        if table is None or self._deployments.get(str(first["model_info"]["id"])) is not first:
            # Not this plugin's Router (LiteLLM hands every Router's picks to every callback), or
            # a deployment added at run time that the plugin has not read: LiteLLM decides.
            return healthy
        trace = request_kwargs.get("litellm_trace_id")
        request_id = str(trace) if trace else None
        exclude = self.ledger.excluded(request_id)
        if len(healthy) == self._group_size[group]:
            # LiteLLM filtered nothing out: pick straight from the table, no scan of the list.
            chosen = table.pick(exclude)
            deployment = self._deployments.get(chosen) if chosen else None
        else:
            available = {str(d["model_info"]["id"]): d for d in healthy}
            unavailable = frozenset(self.core.groups[group]).difference(available)
            chosen = table.pick(exclude | unavailable)
            deployment = available.get(chosen) if chosen else None
        if deployment is None or chosen is None:
            return []
        self.ledger.record_pick(request_id, chosen)
        return [deployment]

    # -- outcomes -------------------------------------------------------------------------

    def attempt_failed(
        self, deployment_id: str, outcome: Outcome, request_id: str | None, error: str
    ) -> None:
        if self.ledger.record_failure(request_id, deployment_id):
            self.core.record_failure(deployment_id, outcome, request_id=request_id, error=self.redact(error))

    def request_succeeded(self, deployment_id: str, latency_s: float | None, request_id: str | None) -> None:
        self.core.record_success(deployment_id, latency_s)
        attempts = self.ledger.finish(request_id)
        if attempts and attempts.first_pick and attempts.first_pick != deployment_id:
            record = self.core.health.get(deployment_id)
            group = record.spec.group if record else ""
            self.core.request_served_elsewhere(group, attempts.first_pick, deployment_id, request_id)

    # -- inspection -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        status = self.core.status()
        status["writer"] = self.writer.stats()
        status["probing"] = sorted(self.prober.deployment_ids)
        return status


def _secrets(specs: list[DeploymentSpec]) -> list[str]:
    found = []
    for spec in specs:
        for key in ("api_key", "aws_secret_access_key", "vertex_credentials"):
            value = spec.litellm_params.get(key)
            if isinstance(value, str):
                found.append(value)
    return found


def attach(
    router: litellm.Router, settings: FailoverSettings | Mapping[str, Any] | None = None
) -> FailoverPlugin:
    """Put the plugin in front of ``router``'s picks. Start it with ``async with plugin:``."""
    return FailoverPlugin(router, parse_settings(settings))

"""``FailoverPlugin``: wires a LiteLLM Router to the core, the prober and the store writer.

``attach(router, settings)`` validates everything first (a bad setting or ``model_info.failover``
refuses to start with its key path), registers the LiteLLM handler, and returns the plugin; its
background work (probes, weight refresh, the writer, the fleet link, alerts, the retention purge,
the metrics port) runs inside ``async with plugin:``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import litellm

from litellm_failover.alerts import Alerter
from litellm_failover.attempts import AttemptLedger, request_key
from litellm_failover.chaos import ChaosInjector
from litellm_failover.control import ControlPlane
from litellm_failover.core import FailoverCore
from litellm_failover.deployments import DeploymentSpec, read_model_list
from litellm_failover.fleet import Fleet, fleet_for
from litellm_failover.handler import FailoverHandler
from litellm_failover.metrics import PluginMetrics
from litellm_failover.outlier import Outcome
from litellm_failover.prober import Prober
from litellm_failover.probes import build_probes
from litellm_failover.redact import Redactor
from litellm_failover.sessions import SessionManager, self_hosted_deployments
from litellm_failover.settings import FailoverSettings, parse_settings
from litellm_failover.store.retention import RetentionPurger
from litellm_failover.store.writer import StoreWriter
from litellm_failover.streams import StreamResumer
from litellm_failover.switching import InFlight, Switching, SwitchingController

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
        # Fleets: share ejections, recoveries and pins with the other replicas through Redis.
        self.fleet: Fleet | None = fleet_for(self.core, settings) if settings.redis_url else None
        self.ledger = AttemptLedger()
        # Traffic switching: drains, planned failover, failback ramps, slow start, canary shifts.
        # The controller decides; the core applies its effects and builds each table from its
        # plan; a drain counts the attempts in flight, whose ends the controller hears of.
        self.in_flight = InFlight(ttl_s=settings.drain.in_flight_ttl_s, clock=self.core.clock)
        controller = SwitchingController(self.core, settings, self.in_flight)
        self.core.attach_planner(controller)
        self.switching = Switching(controller, self.core.apply)
        self.in_flight.listener = self.switching.attempt_ended
        self._deployments: dict[str, dict] = {str(d["model_info"]["id"]): d for d in model_list}
        self._group_size = {group: len(ids) for group, ids in self.core.snapshot.groups.items()}
        # Sessions: pins (``self.pins.apply_remote`` / ``add_listener`` for fleets), recording,
        # Responses API continuity. See litellm_failover.sessions.manager for the rules.
        self.sessions = SessionManager(
            settings.sessions,
            self.core,
            self.writer,
            self._deployments,
            self_hosted=self_hosted_deployments(specs) if settings.sessions.warmup else frozenset(),
            redact=self.redact,
        )
        self.pins = self.sessions.pins
        if self.fleet is not None:
            # Pins learned from other replicas apply silently (never re-published); local changes
            # go out to them.
            self.fleet.applier.pin_listener = self.pins.apply_remote
            self.pins.add_listener(self.fleet.publish_pin)
        # Alerts listen to the core's events; delivery is queued, never on the request path.
        # Operator commands (drain, failover, shift ...) from the CLI, through Redis or the database.
        self.control = ControlPlane(self, settings, self.writer, self.fleet)
        self.alerter = Alerter(settings.alerts, instance_id=self.instance_id, emit=self.core.emit)
        self.core.listeners.append(self.alerter.on_event)
        self.purger = RetentionPurger(self.writer, settings.sessions)
        self.metrics = PluginMetrics(self, settings.metrics)
        self.metrics.install()
        # Mid-stream failover: broken streams continue elsewhere (see litellm_failover.streams).
        self.streams = StreamResumer(self)
        # Fault injection for drills (chaos inject/clear); off unless chaos.enabled.
        groups = {dep_id: view.group for dep_id, view in self.core.snapshot.deployments.items()}
        self.chaos = ChaosInjector(settings.chaos, groups, self.core.emit, self.instance_id)
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
        await self.metrics.start()  # first: a metrics port in use fails before anything runs
        await self.writer.start()
        await self.alerter.start()
        if self.fleet is not None:
            await self.fleet.start()  # read the fleet's state before the first probe and request
        await self.prober.start()
        await self.switching.start()
        # After switching, which a restored drain needs running; a drain or failover sent while
        # this replica was starting is taken over from the standing state (control.restore_on_start).
        await self.control.start()
        if self._refresh_task is None:
            self._refresh_task = asyncio.create_task(self._refresh_loop(), name="failover:refresh")
        if self.settings.sessions.enabled:
            await self.purger.start()

    async def stop(self) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task
            self._refresh_task = None
        await self.prober.stop()
        await self.switching.stop()
        await self.control.stop()
        self.chaos.stop()
        if self.fleet is not None:
            await self.fleet.stop()
        await self.sessions.stop()
        await self.purger.stop()
        await self.alerter.stop()  # after the last events: its flush may send their alerts
        await self.writer.stop()
        await self.metrics.stop()

    async def __aenter__(self) -> FailoverPlugin:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def detach(self) -> None:
        """Remove the handler from LiteLLM's callbacks (tests and embedded reuse)."""
        self.handler.plugin = None
        litellm.logging_callback_manager.remove_callback_from_all_lists(self.handler)
        self.metrics.uninstall()
        self.streams.uninstall()

    async def _refresh_loop(self) -> None:
        interval = self.settings.weights.refresh_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                self.in_flight.expire()  # lost end signals; may complete drains (attempt_ended)
                self.core.tick()
            except Exception:
                logger.exception("refreshing routing tables failed")

    # -- hot path -------------------------------------------------------------------------

    def _owns(self, group: str, healthy: list[dict]) -> bool:
        """Whether this pick is the plugin's: its Router, and deployments it has read."""
        first = healthy[0]
        return (
            group in self.core.snapshot.tables
            and self._deployments.get(str(first["model_info"]["id"])) is first
        )

    def route(
        self,
        group: str,
        healthy: list[dict],
        request_kwargs: Mapping[str, Any],
        messages: Any = None,
    ) -> list[dict]:
        """Pick this attempt's deployment; raises ``SessionIdError`` for a bad session id."""
        snapshot = self.core.snapshot  # one immutable view for the whole pick
        table = snapshot.tables.get(group)
        first = healthy[0]
        if table is None or self._deployments.get(str(first["model_info"]["id"])) is not first:
            # Not this plugin's Router (LiteLLM hands every Router's picks to every callback), or
            # a deployment added at run time that the plugin has not read: LiteLLM decides.
            return healthy
        request_id = request_key(request_kwargs)
        exclude = self.ledger.excluded(request_id)
        # None: LiteLLM filtered nothing out, so pick straight from the table, no scan of the list.
        available = None
        if len(healthy) != self._group_size[group]:
            available = {str(d["model_info"]["id"]): d for d in healthy}
        chosen = None
        session = self.sessions.track(group, request_kwargs, messages)
        if session is not None:
            if session.rebuilt_from is not None:
                # Rebuilt for another node: never its dead creator, even if LiteLLM's own
                # previous_response_id check narrowed the offer down to it.
                exclude = exclude | {session.rebuilt_from}
                if available is not None and set(available) <= {session.rebuilt_from}:
                    available = None
            chosen = self.sessions.preferred(session, table, exclude, available)
        if chosen is None:
            if available is not None:
                exclude = exclude | frozenset(snapshot.groups[group]).difference(available)
            chosen = table.pick(exclude)
        if chosen is None:
            return []
        deployment = self._deployments.get(chosen) if available is None else available.get(chosen)
        if deployment is None:
            return []
        self.ledger.record_pick(request_id, chosen)
        self.in_flight.start(request_id, chosen)
        if session is not None:
            self.sessions.picked(session, chosen)
        return [deployment]

    async def prepare_stateful(
        self, group: str, healthy: list[dict], request_kwargs: dict[str, Any], messages: Any = None
    ) -> None:
        """Before ``route`` for a request with ``previous_response_id``: if the deployment that
        holds the conversation is down, rebuild it from the store into the request (bounded)."""
        if not self._owns(group, healthy):
            return
        table = self.core.snapshot.tables[group]
        request_id = request_key(request_kwargs)
        available = None
        if len(healthy) != self._group_size[group]:
            available = {str(d["model_info"]["id"]): d for d in healthy}
        await self.sessions.prepare_stateful(
            group, request_kwargs, messages, table, self.ledger.excluded(request_id), available
        )

    # -- outcomes -------------------------------------------------------------------------

    def attempt_failed(
        self, deployment_id: str, outcome: Outcome, request_keys: tuple[str, ...], error: str
    ) -> None:
        self.in_flight.end(request_keys, deployment_id)  # only ever ends this plugin's own picks
        if not self.ledger.knows_any(request_keys):
            return  # another Router's request (see AttemptLedger.knows_any)
        request_id = self.ledger.resolve(request_keys)
        if self.ledger.record_failure(request_id, deployment_id):
            self.core.record_failure(deployment_id, outcome, request_id=request_id, error=self.redact(error))
            self.switching.on_failure(deployment_id, outcome)  # errors during a ramp step abort it

    def request_succeeded(
        self, deployment_id: str, latency_s: float | None, request_keys: tuple[str, ...]
    ) -> None:
        self.in_flight.end(request_keys, deployment_id)  # for a stream: sent once it has ended
        if not self.ledger.knows_any(request_keys):
            return  # another Router's request
        self.core.record_success(deployment_id, latency_s)
        request_id = self.ledger.resolve(request_keys)
        attempts = self.ledger.finish(request_id)
        if attempts and attempts.first_pick and attempts.first_pick != deployment_id:
            group = self.core.snapshot.group_of(deployment_id) or ""
            self.core.request_served_elsewhere(group, attempts.first_pick, deployment_id, request_id)

    async def session_answered(self, deployment_id: str, kwargs: Mapping[str, Any], response: Any) -> None:
        """A request's final answer (a stream's, once complete): re-pin, events, conversation rows."""
        await self.sessions.answered(deployment_id, kwargs, response)

    # -- traffic switching (operator operations; see litellm_failover.switching) ----------

    def drain(self, deployment_id: str, *, timeout_s: float | None = None, source: str = "api") -> dict:
        """No new requests to ``deployment_id``; in-flight ones finish (``OperatorError`` on bad input)."""
        return self.switching.drain(deployment_id, timeout_s=timeout_s, source=source)

    def undrain(self, deployment_id: str, *, source: str = "api") -> dict:
        return self.switching.undrain(deployment_id, source=source)

    def failover(self, group: str, *, source: str = "api") -> dict:
        """Planned failover: drain ``group``'s primary tier; the standby serves until failback."""
        return self.switching.failover(group, source=source)

    def failback(self, group: str, *, source: str = "api") -> dict:
        return self.switching.failback(group, source=source)

    def shift(
        self, group: str, to: str, steps: Sequence[float], interval_s: float, *, source: str = "api"
    ) -> dict:
        """Canary: move ``steps`` percent of ``group``'s traffic to ``to``, a step per interval."""
        return self.switching.shift(group, to, steps, interval_s, source=source)

    def switching_status(self) -> dict[str, Any]:
        return self.switching.status()

    def in_flight_counts(self) -> dict[str, int]:
        return self.switching.in_flight_counts()

    def ramp_factors(self) -> dict[str, float]:
        return self.switching.ramp_factors()

    def draining(self) -> frozenset[str]:
        return self.switching.draining()

    # -- fault injection (drills; see litellm_failover.chaos) ------------------------------

    def chaos_inject(
        self,
        deployment_id: str,
        kind: str,
        probability: float,
        *,
        duration_s: float | str | None = None,
        until: Any = None,
        status: int | None = None,
        delay_s: float | str | None = None,
        after_chunks: int | None = None,
        source: str = "api",
        issued_by: str = "",
    ) -> dict:
        """Inject ``kind`` (error, latency, stream_cut) into ``probability`` of the attempts on
        ``deployment_id`` until ``until`` or for ``duration_s``. ``OperatorError``, nothing
        injected, when chaos is disabled, the deployment unknown or the input bad."""
        return self.chaos.inject(
            deployment_id,
            kind,
            probability,
            duration_s=duration_s,
            until=until,
            status=status,
            delay_s=delay_s,
            after_chunks=after_chunks,
            source=source,
            issued_by=issued_by,
        )

    def chaos_clear(
        self, deployment_id: str | None = None, *, source: str = "api", issued_by: str = ""
    ) -> dict:
        """End the faults on ``deployment_id`` (None: on every deployment)."""
        return self.chaos.clear(deployment_id, source=source, issued_by=issued_by)

    # -- inspection -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        status = self.core.status()
        self.switching.decorate(status)
        status["switching"] = self.switching.status()
        status["writer"] = self.writer.stats()
        status["probing"] = sorted(self.prober.deployment_ids)
        if self.fleet is not None:
            status["fleet"] = self.fleet.status()
        status["sessions"] = self.sessions.stats()
        status["retention"] = self.purger.stats()
        status["alerts"] = self.alerter.stats()
        status["control"] = self.control.status()
        status["metrics"] = self.metrics.stats()
        status["chaos"] = self.chaos.status()
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
    plugin = FailoverPlugin(router, parse_settings(settings))
    plugin.streams.install()  # the SDK path; in the proxy the handler's stream hook does this
    return plugin

"""``FailoverPlugin``: wires a LiteLLM Router to the core, the request path, the prober and the
store writer.

``attach(router, settings)`` validates everything first (a bad setting or ``model_info.failover``
refuses to start with its key path), registers the LiteLLM handler, and returns the plugin; its
background work (probes, weight refresh, the writer, the fleet link, alerts, the retention purge,
the metrics port) runs inside ``async with plugin:``.

The constructor is the one place the parts are wired: each part gets what it uses (a few
callables, a narrow Protocol) and no part registers itself on another. What happens to a request
is ``litellm_failover.requests``; the plugin exposes its entry points (``route``,
``prepare_stateful``, ``attempt_failed``, ``request_succeeded``, ``session_answered``) for the
LiteLLM handler and the stream resumer, and the operator verbs below for the CLI and the control
plane.
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

from litellm_failover.alerts import Alerter
from litellm_failover.attachments import claim, refuse_second, release
from litellm_failover.chaos import ChaosInjector
from litellm_failover.control import ControlPlane
from litellm_failover.core import FailoverCore
from litellm_failover.deployments import read_model_list
from litellm_failover.deployments_watch import DeploymentWatch, LiveParts, secrets_of
from litellm_failover.fleet import Fleet, fleet_for, require_redis_client
from litellm_failover.handler import FailoverHandler
from litellm_failover.litellm_compat import (
    check_fires,
    check_hooks,
    check_router,
    current_deployments,
    disable_cooldowns,
)
from litellm_failover.litellm_compat.interplay import CONTINUATION, reconcile
from litellm_failover.litellm_compat.router_access import router_setting, set_setting
from litellm_failover.litellm_compat.warmup import warm_first_request_imports
from litellm_failover.metrics import PluginMetrics
from litellm_failover.operations import OperatorOperations
from litellm_failover.privacy import content_storage
from litellm_failover.prober import Prober
from litellm_failover.probes import build_probes
from litellm_failover.redact import LITELLM_LOGGERS, Redactor, guard_loggers
from litellm_failover.requests import RequestBook, RequestPath
from litellm_failover.rescue import Rescuer
from litellm_failover.sessions import SessionManager
from litellm_failover.settings import FailoverSettings, parse_settings
from litellm_failover.store.retention import RetentionPurger
from litellm_failover.store.writer import StoreWriter
from litellm_failover.streams import StreamResumer
from litellm_failover.streams.ejection import StreamEjections
from litellm_failover.streams.first_token import FirstTokenClock
from litellm_failover.switching import Switching, SwitchingController

logger = logging.getLogger("litellm_failover")


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class FailoverPlugin(OperatorOperations):
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
        # One plugin per Router (litellm_failover.attachments): a second is refused before
        # anything is built, so the one attached keeps LiteLLM's state as it set it.
        refuse_second(router)
        # Before anything is built or registered: a LiteLLM without a piece the plugin needs
        # refuses here, naming its version and the piece (never a half-attached plugin).
        check_hooks(type(handler) if handler is not None else FailoverHandler)
        check_router(router)
        if settings.redis_url:
            require_redis_client()
        model_list = current_deployments(router)
        specs = read_model_list(model_list, settings.health)
        probes = build_probes(specs)
        probed = {i for shared in probes for i in shared.deployment_ids}
        self.redact = Redactor(secrets_of(specs))
        guard_loggers(LITELLM_LOGGERS, secrets_of(specs))  # LiteLLM logs providers' errors verbatim
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
        # One record per client request: its picks, failures, attempts in flight and session,
        # forgotten after ``drain.in_flight_ttl_s`` untouched (also swept by ``_refresh_loop``).
        self.book = RequestBook(ttl_s=settings.drain.in_flight_ttl_s, clock=self.core.clock)
        # Traffic switching: drains, planned failover, failback ramps, slow start, canary shifts.
        # The controller decides; the core applies its effects and builds each table from its
        # plan; a drain counts the book's attempts in flight, whose ends the controller hears of.
        controller = SwitchingController(self.core, settings, self.book)
        self.core.attach_planner(controller)
        self.switching = Switching(controller, self.core.apply)
        self.book.listener = self.switching.attempt_ended
        deployments: dict[str, dict] = {str(d["model_info"]["id"]): d for d in model_list}
        group_of = {spec.deployment_id: spec.group for spec in specs}
        # Sessions: pins (``self.pins.apply_remote`` / ``add_listener`` for fleets), recording,
        # Responses API continuity. See litellm_failover.sessions.manager for the rules.
        self.sessions = SessionManager(
            settings.sessions,
            self.core,
            self.writer,
            deployments,
            book=self.book,
            redact=self.redact,
        )
        if self.sessions.warmer is not None:
            self.core.listeners.append(self.sessions.warmer.on_event)  # moves sessions after a failover
        self.pins = self.sessions.pins
        # Rescue: attempts waiting on a node that stopped answering, or on a late first token,
        # are failed so LiteLLM retries them elsewhere at once (see litellm_failover.rescue).
        self.rescuer = Rescuer(
            settings.rescue,
            FirstTokenClock(settings.streams.first_token_timeout_s, settings.rescue),
            emit=self.core.emit,
            instance_id=self.instance_id,
            clock=self.core.clock,
            tables=lambda group: self.core.snapshot.tables.get(group),
            excluded=self.book.excluded,
            max_attempts=self.book.max_requests,
        )
        self.core.listeners.append(self.rescuer.on_event)
        # The request path, and its entry points for the LiteLLM handler and the stream resumer.
        self.requests = RequestPath(
            self.book,
            self.core,
            deployments,
            group_of,
            self.sessions,
            on_failure=self.switching.on_failure,
            redact=self.redact,
            tracker=self.rescuer,
        )
        self.apply_rebuild = self.requests.apply_rebuild
        self.attempt_failed = self.requests.attempt_failed
        self.request_succeeded = self.requests.request_succeeded
        self.session_answered = self.requests.session_answered
        self.answer_arrived = self.requests.answer_arrived
        self.answer_streamed = self.requests.answer_streamed
        self.answer_wanted = self.requests.answer_wanted
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
        self.purger = RetentionPurger(self.writer, settings.sessions, settings.retention)
        self.metrics = PluginMetrics(self, settings.metrics)
        # Fault injection for drills (chaos inject/clear); off unless chaos.enabled.
        self.chaos = ChaosInjector(settings.chaos, group_of, self.core.emit, self.instance_id)
        # Mid-stream failover: broken streams continue elsewhere (see litellm_failover.streams).
        # Their outcomes go through this plugin's request path entry points.
        self.streams = StreamResumer(
            settings.streams,
            router,
            specs={spec.deployment_id: spec for spec in specs},
            routed=self.requests.routed,
            book=self.book,
            outcomes=self,
            chaos=self.chaos,
            emit=self.core.emit,
            instance_id=self.instance_id,
            redact=self.redact,
        )
        # Streams mid-answer on a node ejected for not answering move on at once, not after the
        # inter-token timeout (litellm_failover.streams.ejection): the resumer registers their parts.
        self.stream_ejections = StreamEjections(
            settings.streams, self.core.health, default_probe_limit_s=settings.health.max_probe_latency_s
        )
        self.streams.live = self.stream_ejections.live  # type: ignore[attr-defined]
        self.core.listeners.append(self.stream_ejections.on_event)
        # Deployments LiteLLM adds, changes and deletes while it runs (litellm_failover.deployments_watch):
        # every per-deployment view above follows, and each pick is screened first.
        self.live = DeploymentWatch(
            router,
            settings,
            self.core,
            LiveParts(self.prober, self.pins, self.book, self.streams, self.redact, self.requests.offers),
            deployments=deployments,
            group_of=group_of,
            instance_id=self.instance_id,
            clock=self.core.clock,
        )
        if self.sessions.warmer is not None:
            self.sessions.warmer.sync = self.live.catch_up  # a warm-up never targets a deleted deployment
        self.route = self.live.guard_route(self.requests.route)
        self.prepare_stateful = self.live.guard_prepare(self.requests.prepare_stateful)
        self._refresh_task: asyncio.Task[None] | None = None
        self.handler = handler or FailoverHandler()
        # What LiteLLM had before the plugin changed it, for ``detach`` to put back. LiteLLM's own:
        # no other plugin can be attached to this Router (``refuse_second`` above).
        self._litellm_cooldowns = router_setting(router, "disable_cooldowns", False)
        self._litellm_continuation = router_setting(router, CONTINUATION, None)  # None: before 1.109
        self._attached = False
        # Last, and all or nothing: the constructor changes LiteLLM's state only here, so a
        # failure above leaves LiteLLM as it was, and one in here is rolled back.
        try:
            self._hook_into_litellm()
        except BaseException:
            self.detach()
            raise

    def _hook_into_litellm(self) -> None:
        claim(self.router, self)
        self._attached = True
        self.metrics.install()
        self.handler.plugin = self
        if self.handler not in litellm.callbacks:
            litellm.logging_callback_manager.add_litellm_callback(self.handler)
        if not self.settings.keep_litellm_cooldowns:
            # The plugin decides health; LiteLLM's timer cooldown would hide deployments from it
            # and bring them back all at once, which is exactly what the plugin replaces.
            disable_cooldowns(self.router)
        self.litellm_notes = reconcile(
            self.router,
            resume_streams=self.settings.streams.resume,
            keep_litellm_cooldowns=self.settings.keep_litellm_cooldowns,
        )

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background work, all or nothing: on a failure the parts already running
        stop, the plugin detaches, and the error is raised. Never half-attached."""
        try:
            await self._start_parts()
        except BaseException:
            try:
                await self.stop()
            except Exception:
                logger.exception("stopping the parts started before a failed start failed")
            finally:
                self.detach()
            raise

    async def _start_parts(self) -> None:
        if not self._attached:
            raise RuntimeError("this plugin was detached from its Router; attach a new one")
        await check_fires(self.router)  # LiteLLM really calls the routing hook on a pick
        await self.metrics.start()  # first: a metrics port in use fails before anything runs
        # Next, so that the rows of requests served while the rest starts have a running writer to
        # flush them if the start is cut short (a SIGTERM: ``proxy.ProxyFailoverHandler._stop``).
        await self.writer.start()
        # Else LiteLLM imports ~1.5 s of modules during the first request, stalling the loop.
        await warm_first_request_imports()
        await self.alerter.start()
        if self.fleet is not None:
            await self.fleet.start()  # read the fleet's state before the first probe and request
        await self.prober.start()
        await self.live.start()
        await self.switching.start()
        # After switching, which a restored drain needs running; a drain or failover sent while
        # this replica was starting is taken over from the standing state (control.restore_on_start).
        await self.control.start()
        if self._refresh_task is None:
            self._refresh_task = asyncio.create_task(self._refresh_loop(), name="failover:refresh")
        await self.purger.start()  # sessions off or not: events, commands and old rows still expire

    async def stop(self) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task
            self._refresh_task = None
        await self.live.stop()
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
        """Give LiteLLM back its own behaviour (callbacks, ``disable_cooldowns``, streams, the
        metrics collector as before ``attach``); idempotent; ``start`` calls it when it fails.
        Exactly what LiteLLM had: it was this Router's only plugin (``attachments``). Afterwards
        the Router takes a new plugin."""
        if not self._attached:
            return
        self._attached = False
        try:
            if self.handler.plugin is self:
                self.handler.plugin = None
            self.requests.offers.release()
            litellm.logging_callback_manager.remove_callback_from_all_lists(self.handler)
            if router_setting(self.router, "disable_cooldowns", False) != self._litellm_cooldowns:
                set_setting(self.router, "disable_cooldowns", self._litellm_cooldowns)
            if self._litellm_continuation and not router_setting(self.router, CONTINUATION, False):
                set_setting(self.router, CONTINUATION, True)  # ``reconcile`` turned LiteLLM's off
            self.metrics.uninstall()
            self.streams.uninstall()
        finally:
            release(self.router, self)  # the Router may take a new plugin now

    async def _refresh_loop(self) -> None:
        interval = self.settings.weights.refresh_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                self.core.tick()
            except Exception:
                logger.exception("refreshing routing tables failed")
            try:
                self.book.expire()  # requests whose end signals were lost; may complete drains
            except Exception:
                logger.exception("expiring requests failed")
            try:
                self.rescuer.prune()  # attempts past their first byte, or ended without a signal
            except Exception:
                logger.exception("pruning rescuable attempts failed")

    # -- inspection -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        status = self.core.status()
        self.switching.decorate(status)
        status["switching"] = self.switching.status()
        status["writer"] = self.writer.stats()
        status["probing"] = sorted(self.prober.deployment_ids)
        status["unmanaged"] = self.live.unmanaged()  # what LiteLLM routes that the plugin does not manage
        status["deployments_watch"] = self.live.status()
        if self.fleet is not None:
            status["fleet"] = self.fleet.status()
        status["sessions"] = self.sessions.stats()
        status["sessions"]["message_text"] = content_storage(self.settings.sessions)
        status["retention"] = self.purger.stats()
        status["alerts"] = self.alerter.stats()
        status["control"] = self.control.status()
        status["metrics"] = self.metrics.stats()
        status["chaos"] = self.chaos.status()
        status["rescue"] = self.rescuer.stats()
        status["stream_ejection"] = self.stream_ejections.stats()
        return status


def attach(
    router: litellm.Router, settings: FailoverSettings | Mapping[str, Any] | None = None
) -> FailoverPlugin:
    """Put the plugin in front of ``router``'s picks. Start it with ``async with plugin:``."""
    plugin = FailoverPlugin(router, parse_settings(settings))
    plugin.streams.install()  # the SDK path; in the proxy the handler's stream hook does this
    return plugin

"""``PluginMetrics``: one plugin's metrics, where they are registered, and where they are served.

- Always (when ``metrics.enabled``): the plugin's collector joins the bridge on prometheus_client's
  default registry. In the proxy, LiteLLM's /metrics serves that registry once
  ``litellm_settings.callbacks`` has ``prometheus`` (checked on 1.108.7: mounted only then, behind
  the LiteLLM key unless ``require_auth_for_metrics_endpoint: false``, and rendered from the
  default registry unless ``PROMETHEUS_MULTIPROC_DIR`` is set, i.e. several workers or
  ``--prometheus_metrics_port``, where custom collectors can't be shown). From Python, an app
  exposes the default registry as it already does (``prometheus_client.make_asgi_app()``).
- With ``metrics.port`` set: also on a port of the plugin's own, serving ``self.registry``, which
  holds this plugin's collector only (two plugins in one process need two ports). Under a proxy
  with several workers (``--num_workers``) the first worker binds it and the others log once and
  serve none (``stats()["port_note"]`` says so); in one process a port in use refuses to start.
- In the proxy with neither: ``start`` logs a warning that says which setting to add.

The event counters (failovers, state changes, streams, drains) come from the core's events and
``probe_latency_seconds`` from the prober's reports (both wired by ``install``); everything else
is read at scrape time, so ``plugin.route`` does no metrics work.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from litellm_failover.metrics.bridge import bridge_for
from litellm_failover.metrics.collector import MetricsSource, PluginCollector
from litellm_failover.metrics.counters import EventCounters
from litellm_failover.metrics.probe_latency import ProbeLatency
from litellm_failover.metrics.server import PATH, MetricsPortError, MetricsServer
from litellm_failover.settings import MetricsSettings

logger = logging.getLogger("litellm_failover")


def litellm_metrics_route() -> tuple[bool, str]:
    """Whether this process's LiteLLM proxy serves the default registry on /metrics, and why not.

    Read from the proxy app's routes (LiteLLM mounts /metrics while loading the config, before it
    builds the Router, so by the time the plugin starts it is there or it never will be)."""
    proxy_server = sys.modules.get("litellm.proxy.proxy_server")
    app = getattr(proxy_server, "app", None)
    if app is None:
        return False, "no LiteLLM proxy in this process"
    if not any(getattr(route, "path", None) == PATH for route in getattr(app, "routes", ())):
        return False, 'LiteLLM serves no /metrics: "prometheus" is not in litellm_settings.callbacks'
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return False, (
            "LiteLLM's /metrics runs in multiprocess mode (PROMETHEUS_MULTIPROC_DIR: several workers "
            "or --prometheus_metrics_port), which can't show the plugin's collector"
        )
    return True, "LiteLLM's /metrics (default registry)"


def proxy_workers() -> int:
    """How many worker processes this LiteLLM proxy runs (``--num_workers``; LiteLLM's CLI puts it
    in ``NUM_WORKERS`` for uvicorn, gunicorn and the others alike); 1 when unknown."""
    try:
        return max(1, int(os.environ.get("NUM_WORKERS", "1")))
    except ValueError:
        return 1


class PluginMetrics:
    def __init__(
        self,
        source: MetricsSource,
        settings: MetricsSettings | None = None,
        *,
        default_registry: CollectorRegistry = REGISTRY,
    ) -> None:
        if settings is None:
            settings = getattr(getattr(source, "settings", None), "metrics", None) or MetricsSettings()
        self.settings = settings
        self.source = source
        self.counters = EventCounters()
        self.probe_latency = ProbeLatency()
        self.collector = PluginCollector(source, self.counters, self.probe_latency)
        self.registry = CollectorRegistry(auto_describe=False)  # this plugin's alone
        self.registry.register(self.collector)
        self._default_registry = default_registry
        self._server: MetricsServer | None = None
        self._installed = False
        self.port_note: str | None = None  # why this worker serves no own port, if it serves none

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @property
    def port(self) -> int | None:
        """The bound own port (``metrics.port: 0`` picks one), None when there is none."""
        return self._server.port if self._server is not None else None

    @property
    def url(self) -> str | None:
        return self._server.url if self._server is not None else None

    def install(self) -> None:
        """Count the core's events, observe the prober's reports and join the default registry.
        Idempotent; off when disabled."""
        if self._installed or not self.enabled:
            return
        listeners = self.source.core.listeners
        if self.counters not in listeners:
            listeners.append(self.counters)
        reports = self._report_listeners()
        if reports is not None and self.probe_latency.observe not in reports:
            reports.append(self.probe_latency.observe)
        bridge_for(self._default_registry).join(self.collector)
        self._installed = True

    def uninstall(self) -> None:
        if not self._installed:
            return
        listeners = self.source.core.listeners
        if self.counters in listeners:
            listeners.remove(self.counters)
        reports = self._report_listeners()
        if reports is not None and self.probe_latency.observe in reports:
            reports.remove(self.probe_latency.observe)
        bridge_for(self._default_registry).leave(self.collector)
        self._installed = False

    async def start(self) -> None:
        """``install``, then the own port if ``metrics.port`` is set. Raises ``MetricsPortError``
        (a ``FailoverConfigError`` naming ``failover_settings.metrics.port``) if it can't listen."""
        if not self.enabled:
            return
        self.install()
        if self.settings.port is not None and self._server is None:
            server = MetricsServer(self.registry, self.settings.host, self.settings.port)
            try:
                await server.start()
            except MetricsPortError:
                if self.settings.port == 0 or not self._in_proxy() or proxy_workers() < 2:
                    raise  # one process: the port is taken by something else; refuse to start
                # Several workers of one proxy read one config: the first binds the fixed port,
                # the others run on without it (a bind with SO_REUSEPORT would answer each scrape
                # from a random worker, and prometheus_client's multiprocess mode can't carry the
                # plugin's collector, which reads live state at scrape time).
                self.port_note = (
                    f"metrics.port {self.settings.port} is served by another worker of this proxy "
                    f"(--num_workers {proxy_workers()}); this worker's metrics are not on it"
                )
                logger.warning("litellm-failover: %s", self.port_note)
                return
            self._server = server
            logger.info("litellm-failover metrics on %s", server.url)
        elif self.settings.port is None and self._in_proxy():
            served, why = litellm_metrics_route()
            if not served:
                logger.warning(
                    'litellm-failover metrics are not served: %s. Add "prometheus" to '
                    "litellm_settings.callbacks, or set failover_settings.metrics.port",
                    why,
                )

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None
        self.uninstall()

    def stats(self) -> dict[str, Any]:
        """For ``plugin.status()``: where the metrics can be scraped (no secrets in it)."""
        served, why = litellm_metrics_route()
        return {
            "enabled": self.enabled,
            "registered": self._installed,
            "port": self.port,
            "url": self.url,
            "port_note": self.port_note,
            "litellm_metrics": served,
            "litellm_metrics_note": why,
        }

    def _report_listeners(self) -> list[Any] | None:
        """The prober's report listeners (``probe_latency_seconds``); None for a source without
        a prober (a Router whose deployments are all unprobed still has one, with no targets)."""
        return getattr(getattr(self.source, "prober", None), "report_listeners", None)

    def _in_proxy(self) -> bool:
        """Whether this plugin routes for the LiteLLM proxy of this process (not a Python Router)."""
        proxy_server = sys.modules.get("litellm.proxy.proxy_server")
        router = getattr(self.source, "router", None)
        return router is not None and getattr(proxy_server, "llm_router", None) is router

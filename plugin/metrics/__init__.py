"""Prometheus metrics of the plugin (issue 4): read at scrape time, never on the request path.

``PluginMetrics(plugin)`` is what the plugin wires: ``install()`` (listen to the core's events and
the prober's reports, join the default registry), ``await start()`` / ``await stop()`` (the own
port, if ``failover_settings.metrics.port`` is set) and ``stats()`` for ``status``. ``PluginCollector``
is the collector itself, for any object shaped like ``MetricsSource``. ``catalog.CATALOG`` lists
every metric exported (name, kind, help, labels); the collector builds its families from it.
"""

from __future__ import annotations

from litellm_failover.metrics.collector import MetricsSource, PluginCollector
from litellm_failover.metrics.exporter import PluginMetrics, litellm_metrics_route
from litellm_failover.metrics.server import MetricsPortError

__all__ = ["MetricsPortError", "MetricsSource", "PluginCollector", "PluginMetrics", "litellm_metrics_route"]

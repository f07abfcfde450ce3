"""The one collector on prometheus_client's default registry, shared by every plugin in a process.

LiteLLM's proxy serves ``prometheus_client.REGISTRY`` on /metrics, and a Python service usually
exposes the same registry. Registering each plugin's collector there directly would fail for the
second plugin in a process (two Routers): the families share names, and prometheus_client
refuses a duplicate name, or, left unchecked, the page would carry each family twice, which
Prometheus rejects. So the default registry holds one ``DefaultRegistryBridge`` and plugins join
and leave it; a scrape merges their families by name (``families.merge_families``): amounts such
as queued rows add up, and a series two plugins both report (the same group and deployment in
two Routers) is shown once, from the plugin that joined first, with a warning. Each plugin's own
registry (``PluginMetrics.registry``, served on its own port) always shows exactly that plugin.

Members are held by weak reference: a plugin dropped without ``stop()`` leaves the page by
itself once it is garbage-collected.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import Metric

from litellm_failover.metrics.collector import PluginCollector
from litellm_failover.metrics.families import merge_families

logger = logging.getLogger("litellm_failover")


class DefaultRegistryBridge:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: list[weakref.ref[PluginCollector]] = []
        self._warned: set[str] = set()

    def join(self, collector: PluginCollector) -> None:
        with self._lock:
            if collector not in self._live():
                self._members.append(weakref.ref(collector))

    def leave(self, collector: PluginCollector) -> None:
        with self._lock:
            self._members = [ref for ref in self._members if ref() not in (None, collector)]

    def members(self) -> list[PluginCollector]:
        with self._lock:
            return self._live()

    def _live(self) -> list[PluginCollector]:
        return [c for c in (ref() for ref in self._members) if c is not None]

    # -- prometheus_client's collector protocol -------------------------------------------

    def describe(self) -> list[Metric]:
        return []  # the families depend on which plugins have joined

    def collect(self) -> Iterator[Metric]:
        families, clashes = merge_families([member.families() for member in self.members()])
        for clash in clashes:
            if clash not in self._warned:
                self._warned.add(clash)
                logger.warning(
                    "metrics: two litellm-failover plugins in this process report %s; the default "
                    "registry shows the first one's (each plugin's own registry shows its own)",
                    clash,
                )
        for family in families:
            if family.samples:
                yield family.to_prometheus()


_bridges: weakref.WeakKeyDictionary[CollectorRegistry, DefaultRegistryBridge] = weakref.WeakKeyDictionary()
_bridges_lock = threading.Lock()


def bridge_for(registry: CollectorRegistry = REGISTRY) -> DefaultRegistryBridge:
    """The bridge registered on ``registry`` (the default one unless a test passes its own),
    registered on first use and never twice."""
    with _bridges_lock:
        bridge = _bridges.get(registry)
        if bridge is None:
            bridge = DefaultRegistryBridge()
            registry.register(bridge)
            _bridges[registry] = bridge
        return bridge

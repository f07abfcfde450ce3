"""The GPU agent: a small sidecar that serves NVML readings over HTTP.

Run it on each GPU host (``litellm-failover gpu-agent --host 0.0.0.0 --port 9400``) and point
a deployment's ``model_info.failover.gpu_url`` at it. It serves:

- ``/health``: the agent itself is up (always 200; GPU health is in ``/gpu-status``);
- ``/gpu-status``: ``{"healthy", "reason", "read_at", "gpus": [...]}``, read by
  ``providers.gpu.AgentGpuReader``;
- ``/gpu-memory``: ``{"used_ratio": <max over GPUs>, "read_at"}``;
- ``/metrics``: the same figures as Prometheus text (``litellm_failover_gpu_*``).

NVML is read on a dedicated daemon thread every ``interval_s`` (1 s), never on the event loop:
NVML calls can block for seconds on a failing GPU, and a hung call must not take the HTTP
server down with it. A hang instead shows as an ageing ``read_at``, which the reader treats as
stale telemetry, i.e. unhealthy. Without NVML (no driver) the agent still serves, with
``healthy: false`` and the NVML error as the reason, and keeps retrying initialisation.

``xid_errors`` counts critical XID events the agent has seen since it started (``null`` where
the GPU does not support XID events); ``ecc_errors`` is the driver's volatile count of
uncorrected ECC errors (``null`` without ECC). The reader acts on increases, not on totals.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

with warnings.catch_warnings():
    # The deprecated ``pynvml`` wrapper package warns on import; the module it finds is
    # nvidia-ml-py's, which is the dependency this project declares.
    warnings.simplefilter("ignore", FutureWarning)
    import pynvml

logger = logging.getLogger("litellm_failover.gpu_agent")

_MAX_EVENTS_PER_READ = 1000


@dataclass(slots=True)
class GpuSample:
    index: int
    name: str
    memory_used_bytes: int
    memory_total_bytes: int
    used_ratio: float
    utilization_pct: float | None
    temperature_c: float | None
    xid_errors: int | None
    last_xid: int | None
    ecc_errors: int | None


@dataclass(slots=True)
class AgentStatus:
    healthy: bool
    reason: str
    read_at: float
    gpus: list[GpuSample] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "reason": self.reason,
            "read_at": self.read_at,
            "gpus": [asdict(g) for g in self.gpus],
        }

    @property
    def max_used_ratio(self) -> float | None:
        return max((g.used_ratio for g in self.gpus), default=None)


def _nvml_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class NvmlReader:
    """Synchronous NVML access. Call it from one thread only (the sampler's)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._ready = False
        self._handles: list[Any] = []
        self._names: list[str] = []
        self._event_sets: list[Any | None] = []
        self._xid_counts: list[int] = []
        self._last_xids: list[int | None] = []

    def _init(self) -> None:
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            names = [_decode(pynvml.nvmlDeviceGetName(h)) for h in handles]
        except pynvml.NVMLError:
            pynvml.nvmlShutdown()
            raise
        self._handles, self._names = handles, names
        self._event_sets = [self._xid_event_set(h) for h in handles]
        self._xid_counts = [0] * count
        self._last_xids = [None] * count
        self._ready = True

    @staticmethod
    def _xid_event_set(handle: Any) -> Any | None:
        """One event set per GPU, so an event needs no handle-to-index mapping; ``None`` where
        XID events are unsupported (some virtualised or consumer GPUs)."""
        try:
            event_set = pynvml.nvmlEventSetCreate()
        except pynvml.NVMLError:
            return None
        try:
            pynvml.nvmlDeviceRegisterEvents(handle, pynvml.nvmlEventTypeXidCriticalError, event_set)
        except pynvml.NVMLError:
            pynvml.nvmlEventSetFree(event_set)
            return None
        return event_set

    def _drain_xids(self, i: int) -> str | None:
        event_set = self._event_sets[i]
        if event_set is None:
            return None
        for _ in range(_MAX_EVENTS_PER_READ):
            try:
                data = pynvml.nvmlEventSetWait(event_set, 0)
            except pynvml.NVMLError_Timeout:
                return None
            except pynvml.NVMLError as exc:
                return f"gpu {i}: XID events unreadable: {_nvml_text(exc)}"
            if data.eventType & pynvml.nvmlEventTypeXidCriticalError:
                self._xid_counts[i] += 1
                self._last_xids[i] = int(data.eventData)
        return None

    def read(self) -> AgentStatus:
        """One reading of every GPU. Never raises: a failure is ``healthy: false`` with a reason."""
        if not self._ready:
            try:
                self._init()
            except pynvml.NVMLError as exc:
                return AgentStatus(False, f"NVML unavailable: {_nvml_text(exc)}", self._clock())
        if not self._handles:
            return AgentStatus(False, "no GPUs visible to NVML", self._clock())
        gpus: list[GpuSample] = []
        problems: list[str] = []
        for i, handle in enumerate(self._handles):
            xid_problem = self._drain_xids(i)  # first, so this reading includes new events
            if xid_problem:
                problems.append(xid_problem)
            try:
                gpus.append(self._sample(i, handle))
            except pynvml.NVMLError as exc:
                problems.append(f"gpu {i}: {_nvml_text(exc)}")
        read_at = self._clock()
        if problems:
            return AgentStatus(False, "; ".join(problems), read_at, gpus)
        return AgentStatus(True, f"{len(gpus)} GPU(s) read", read_at, gpus)

    def _sample(self, i: int, handle: Any) -> GpuSample:
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        total = int(memory.total)
        used = int(memory.used)
        utilization = _optional(lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        temperature = _optional(lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))
        ecc = _optional(
            lambda: pynvml.nvmlDeviceGetTotalEccErrors(
                handle, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC
            )
        )
        supported = self._event_sets[i] is not None
        return GpuSample(
            index=i,
            name=self._names[i],
            memory_used_bytes=used,
            memory_total_bytes=total,
            used_ratio=(used / total) if total > 0 else 0.0,
            utilization_pct=None if utilization is None else float(utilization),
            temperature_c=None if temperature is None else float(temperature),
            xid_errors=self._xid_counts[i] if supported else None,
            last_xid=self._last_xids[i],
            ecc_errors=None if ecc is None else int(ecc),
        )

    def close(self) -> None:
        if not self._ready:
            return
        for event_set in self._event_sets:
            if event_set is not None:
                try:
                    pynvml.nvmlEventSetFree(event_set)
                except pynvml.NVMLError:
                    pass
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
        self._ready = False


def _decode(name: Any) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def _optional(read: Callable[[], Any]) -> Any | None:
    """A reading the GPU may not offer (MIG slices have no utilisation, GeForce no ECC)."""
    try:
        return read()
    except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_NoPermission):
        return None


class Sampler:
    """Reads NVML every ``interval_s`` on a daemon thread; ``latest`` is the newest reading."""

    def __init__(self, reader: NvmlReader | None = None, interval_s: float = 1.0) -> None:
        self.reader = reader or NvmlReader()
        self.interval_s = interval_s
        self.started_at = time.time()
        self.latest: AgentStatus | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gpu-agent-nvml", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.latest = self.reader.read()
            except Exception as exc:  # read() should not raise; keep sampling if it does
                logger.exception("NVML read failed")
                self.latest = AgentStatus(False, f"NVML read failed: {type(exc).__name__}", time.time())
            if self._stop.wait(self.interval_s):
                break
        self.reader.close()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop sampling; a thread stuck inside NVML is abandoned (it is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def status(self) -> AgentStatus:
        latest = self.latest
        if latest is None:  # read_at = start time, so a reading that never comes turns stale
            return AgentStatus(False, "no GPU reading yet", self.started_at)
        return latest


class _GpuCollector(Collector):
    """Prometheus view of the newest reading, rendered at scrape time."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler

    def collect(self) -> Iterator[Any]:
        status = self._sampler.status()
        yield GaugeMetricFamily(
            "litellm_failover_gpu_healthy",
            "1 when NVML could be read for every GPU.",
            value=int(status.healthy),
        )
        yield GaugeMetricFamily(
            "litellm_failover_gpu_read_timestamp_seconds", "Unix time of the reading.", value=status.read_at
        )
        labels = ["gpu", "name"]
        gauges = {
            "memory_used_bytes": GaugeMetricFamily(
                "litellm_failover_gpu_memory_used_bytes", "GPU memory in use.", labels=labels
            ),
            "memory_total_bytes": GaugeMetricFamily(
                "litellm_failover_gpu_memory_total_bytes", "GPU memory in total.", labels=labels
            ),
            "used_ratio": GaugeMetricFamily(
                "litellm_failover_gpu_memory_used_ratio", "GPU memory used / total.", labels=labels
            ),
            "utilization_pct": GaugeMetricFamily(
                "litellm_failover_gpu_utilization_percent", "GPU utilisation.", labels=labels
            ),
            "temperature_c": GaugeMetricFamily(
                "litellm_failover_gpu_temperature_celsius", "GPU temperature.", labels=labels
            ),
        }
        counters = {
            "xid_errors": CounterMetricFamily(
                "litellm_failover_gpu_xid_errors",
                "Critical XID events since the agent started.",
                labels=labels,
            ),
            "ecc_errors": CounterMetricFamily(
                "litellm_failover_gpu_ecc_errors", "Uncorrected ECC errors (volatile).", labels=labels
            ),
        }
        for gpu in status.gpus:
            values = [str(gpu.index), gpu.name]
            for key, family in {**gauges, **counters}.items():
                value = getattr(gpu, key)
                if value is not None:
                    family.add_metric(values, value)
        yield from gauges.values()
        yield from counters.values()


def create_app(sampler: Sampler) -> web.Application:
    """The agent's HTTP app; starting it starts the sampler, cleaning it up stops it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_GpuCollector(sampler))

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def gpu_status(_: web.Request) -> web.Response:
        return web.json_response(sampler.status().to_json())

    async def gpu_memory(_: web.Request) -> web.Response:
        status = sampler.status()
        return web.json_response({"used_ratio": status.max_used_ratio, "read_at": status.read_at})

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def on_startup(_: web.Application) -> None:
        sampler.start()

    async def on_cleanup(_: web.Application) -> None:
        await asyncio.to_thread(sampler.stop)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/gpu-status", gpu_status)
    app.router.add_get("/gpu-memory", gpu_memory)
    app.router.add_get("/metrics", metrics)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def run_agent(
    host: str,
    port: int,
    *,
    interval_s: float = 1.0,
    stop: asyncio.Event | None = None,
    sampler: Sampler | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve until ``stop`` is set (forever without one); ``on_ready`` runs once bound."""
    sampler = sampler or Sampler(interval_s=interval_s)
    runner = web.AppRunner(create_app(sampler), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        logger.info("gpu-agent listening on http://%s:%s", host, port)
        if on_ready is not None:
            on_ready()
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()

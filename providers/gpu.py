"""GPU telemetry for self-hosted deployments: the checks ``gpu_health`` and ``gpu_memory``.

Two sources, picked by ``model_info.failover.gpu_source`` when ``gpu_url`` is set:

- ``agent``: this project's sidecar (``litellm-failover gpu-agent``), ``GET {gpu_url}/gpu-status``.
  It says whether NVML could be read, when it last read it, and per GPU the memory used and the
  XID/ECC error counts since it started.
- ``dcgm``: NVIDIA's dcgm-exporter, ``GET {gpu_url}`` (its ``/metrics``). Memory comes from
  ``DCGM_FI_DEV_FB_USED``/``FB_FREE``; ``DCGM_FI_DEV_XID_ERRORS`` holds the *last* XID code seen
  and never resets, so only a change of its value is an event.

Both are read on the deployment's own route (``ProbeTarget.egress``): directly, never through an
environment proxy (the exporters sit on the inside network, like the engine's pages), trusting
``model_info.failover.ca_file`` for an ``https://`` exporter with a private CA's certificate, so a
GPU check never fails on TLS where the deployment's other probes pass.

Without ``gpu_url`` there are no GPU checks at all: the engine's own KV-cache usage (the
``kv_cache`` check) stands in for memory pressure, since vLLM and SGLang pre-allocate GPU memory
and the KV cache is what actually fills up.

Errors are events, not states: both sources report counts or codes that only grow or change, so
a reader remembers the previous read (per deployment: each prober owns its reader) and treats
the first read as the baseline. An event keeps ``gpu_health`` failing for ``error_hold_s``, so it
survives the probe hysteresis (N failed rounds to eject) instead of failing a single round.
Unreadable or stale telemetry fails ``gpu_health`` too: a GPU nobody can see is not trusted.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from litellm_failover.providers import http
from litellm_failover.providers.base import CheckName, CheckResult, ProbeTarget, Severity
from litellm_failover.providers.egress import DIRECT, Egress
from litellm_failover.providers.errors import MalformedAnswer
from litellm_failover.providers.probe_client import ProbeClient
from litellm_failover.providers.prometheus import Samples, parse_metrics
from litellm_failover.providers.thresholds import ProbeThresholds

ERROR_HOLD_S = 60.0
"""How long an XID/ECC event keeps ``gpu_health`` failing: longer than any sane
``unhealthy_threshold * interval_s``, short enough that a transient fault heals on its own."""


@dataclass(frozen=True, slots=True)
class GpuOutcome:
    """What one GPU read adds to a probe round."""

    checks: tuple[CheckResult, ...]
    memory_ratio: float | None = None


class GpuReader(Protocol):
    """A source of GPU telemetry for one deployment, with memory between reads."""

    url: str

    async def read(
        self, session: ProbeClient, thresholds: ProbeThresholds, tracker: http.ReadTracker
    ) -> GpuOutcome: ...


def gpu_reader_for(
    target: ProbeTarget,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> GpuReader | None:
    """The reader a target's ``gpu_url``/``gpu_source`` ask for, or ``None`` without a GPU URL."""
    if not target.gpu_url:
        return None
    # The deployment's trust (ca_file), but always direct: GPU telemetry is on the inside network.
    egress = dataclasses.replace(target.egress, env_proxy=False)
    if target.gpu_source == "dcgm":
        return DcgmGpuReader(target.gpu_url, egress=egress, clock=clock)
    return AgentGpuReader(target.gpu_url, egress=egress, clock=clock, wall_clock=wall_clock)


class _ErrorEvents:
    """Turns ever-growing counters (or last-seen codes) into events that last ``hold_s``."""

    def __init__(self, clock: Callable[[], float], hold_s: float) -> None:
        self._clock = clock
        self._hold_s = hold_s
        self._last: dict[tuple[str, str], float] = {}
        self._events: dict[tuple[str, str], tuple[float, str]] = {}

    def counter(self, gpu: str, kind: str, value: float | None, label: str) -> None:
        """An event when a count grew since the previous read; a drop (source restarted) rebases."""
        if value is None:
            return
        key = (gpu, kind)
        previous = self._last.get(key)
        self._last[key] = value
        if previous is not None and value > previous:
            self._events[key] = (self._clock(), f"gpu {gpu}: {value - previous:g} new {label}")

    def code(self, gpu: str, kind: str, value: float, describe: Callable[[float, float], str]) -> None:
        """An event when a last-seen code changed since the previous read."""
        key = (gpu, kind)
        previous = self._last.get(key)
        self._last[key] = value
        if previous is not None and value != previous:
            self._events[key] = (self._clock(), describe(previous, value))

    def active(self) -> list[str]:
        now = self._clock()
        reasons = []
        for key, (when, reason) in list(self._events.items()):
            age = now - when
            if age > self._hold_s:
                del self._events[key]
            else:
                reasons.append(f"{reason} ({age:.0f} s ago)")
        return reasons


def _memory_check(ratio: float, thresholds: ProbeThresholds, detail: str) -> CheckResult:
    limit = thresholds.max_gpu_memory_ratio
    text = f"{detail}{ratio:.0%} used (limit {limit:.0%})"
    if ratio > limit:
        return CheckResult.failed(CheckName.GPU_MEMORY, text, ratio, severity=Severity.DEGRADE)
    return CheckResult.passed(CheckName.GPU_MEMORY, text, ratio, severity=Severity.DEGRADE)


def _unreadable(source: str, exc: BaseException) -> GpuOutcome:
    return GpuOutcome((CheckResult.failed(CheckName.GPU_HEALTH, f"{source}: {http.describe_error(exc)}"),))


# -- the sidecar agent ------------------------------------------------------------------------


def _number(obj: dict, key: str, where: str, *, optional: bool = False) -> float | None:
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise MalformedAnswer(f"{where}.{key} missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedAnswer(f"{where}.{key} is not a number")
    if math.isnan(value) or math.isinf(value):
        raise MalformedAnswer(f"{where}.{key} is {value}")
    return float(value)


@dataclass(frozen=True, slots=True)
class _AgentGpu:
    index: str
    used_ratio: float
    xid_errors: float | None
    ecc_errors: float | None
    last_xid: float | None


@dataclass(frozen=True, slots=True)
class _AgentStatus:
    healthy: bool
    reason: str
    read_at: float
    gpus: tuple[_AgentGpu, ...]


def parse_agent_status(doc: Any) -> _AgentStatus:
    """Validate ``/gpu-status``; every defect is a ``MalformedAnswer`` naming the field."""
    if not isinstance(doc, dict):
        raise MalformedAnswer("gpu-status is not a JSON object")
    healthy = doc.get("healthy")
    if not isinstance(healthy, bool):
        raise MalformedAnswer("gpu-status.healthy missing or not a boolean")
    reason = doc.get("reason") or ""
    if not isinstance(reason, str):
        raise MalformedAnswer("gpu-status.reason is not a string")
    read_at = _number(doc, "read_at", "gpu-status")
    raw_gpus = doc.get("gpus")
    if not isinstance(raw_gpus, list):
        raise MalformedAnswer("gpu-status.gpus missing or not a list")
    gpus = []
    for i, raw in enumerate(raw_gpus):
        where = f"gpu-status.gpus[{i}]"
        if not isinstance(raw, dict):
            raise MalformedAnswer(f"{where} is not an object")
        ratio = _number(raw, "used_ratio", where)
        assert ratio is not None
        if not 0.0 <= ratio <= 1.0:
            raise MalformedAnswer(f"{where}.used_ratio is {ratio:g}, outside [0, 1]")
        index = raw.get("index", i)
        gpus.append(
            _AgentGpu(
                index=str(index),
                used_ratio=ratio,
                xid_errors=_number(raw, "xid_errors", where, optional=True),
                ecc_errors=_number(raw, "ecc_errors", where, optional=True),
                last_xid=_number(raw, "last_xid", where, optional=True),
            )
        )
    assert read_at is not None
    return _AgentStatus(healthy=healthy, reason=reason, read_at=read_at, gpus=tuple(gpus))


def agent_status_url(gpu_url: str) -> str:
    base = gpu_url.rstrip("/")
    return base if base.endswith("/gpu-status") else f"{base}/gpu-status"


class AgentGpuReader:
    """Reads the sidecar's ``/gpu-status``.

    ``read_at`` comes from the agent's clock and is compared with this host's: keep clocks in
    sync (NTP) or raise ``stale_after_s``. A stale ``read_at`` usually means NVML itself hangs,
    which a dying GPU does, so it fails ``gpu_health`` like an unhealthy answer.
    """

    source = "GPU agent"

    def __init__(
        self,
        gpu_url: str,
        *,
        egress: Egress = DIRECT,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        error_hold_s: float = ERROR_HOLD_S,
    ) -> None:
        self.url = agent_status_url(gpu_url)
        self._egress = egress
        self._wall_clock = wall_clock
        self._events = _ErrorEvents(clock, error_hold_s)

    async def read(
        self, session: ProbeClient, thresholds: ProbeThresholds, tracker: http.ReadTracker
    ) -> GpuOutcome:
        try:
            answer = await http.get_ok(
                session,
                self.url,
                "GPU agent",
                tracker,
                max_body_bytes=thresholds.max_body_bytes,
                egress=self._egress,
            )
            status = parse_agent_status(http.decode_json(answer, "gpu-status"))
        except Exception as exc:
            return _unreadable(self.source, exc)

        problems: list[str] = []
        if not status.healthy:
            problems.append(f"GPU agent reports unhealthy: {http.short(status.reason or 'no reason given')}")
        age = max(0.0, self._wall_clock() - status.read_at)
        stale = age > thresholds.stale_after_s
        if stale:
            limit = http.format_seconds(thresholds.stale_after_s)
            problems.append(f"GPU telemetry stale: read {age:.1f} s ago (limit {limit})")
        for gpu in status.gpus:
            self._events.counter(gpu.index, "xid", gpu.xid_errors, _xid_label(gpu.last_xid))
            self._events.counter(gpu.index, "ecc", gpu.ecc_errors, "uncorrected ECC error(s)")
        problems.extend(self._events.active())

        if problems:
            health = CheckResult.failed(CheckName.GPU_HEALTH, "; ".join(problems))
        else:
            health = CheckResult.passed(
                CheckName.GPU_HEALTH, f"{len(status.gpus)} GPU(s) healthy (read {age:.1f} s ago)"
            )
        if stale or not status.gpus:
            return GpuOutcome((health,))
        ratio = max(g.used_ratio for g in status.gpus)
        return GpuOutcome((health, _memory_check(ratio, thresholds, "max GPU memory ")), ratio)


def _xid_label(last_xid: float | None) -> str:
    return "XID error(s)" if last_xid is None else f"XID error(s) (last XID {last_xid:g})"


# -- NVIDIA dcgm-exporter ---------------------------------------------------------------------

FB_USED = "DCGM_FI_DEV_FB_USED"
FB_FREE = "DCGM_FI_DEV_FB_FREE"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
GPU_TEMP = "DCGM_FI_DEV_GPU_TEMP"
XID_ERRORS = "DCGM_FI_DEV_XID_ERRORS"


def dcgm_metrics_url(gpu_url: str) -> str:
    """The exporter's metrics URL: ``http://node:9400`` means ``http://node:9400/metrics``."""
    parts = urlsplit(gpu_url)
    if parts.path in ("", "/"):
        return urlunsplit((parts.scheme, parts.netloc, "/metrics", parts.query, ""))
    return gpu_url


def _gpu_key(labels: dict[str, str]) -> str:
    return labels.get("gpu") or labels.get("UUID") or labels.get("device") or "?"


def _per_gpu(samples: Samples, name: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for labels, value in samples.series(name):
        if math.isnan(value) or math.isinf(value):
            raise MalformedAnswer(f"{name}{{gpu={_gpu_key(labels)!r}}} is {value}")
        values[_gpu_key(labels)] = value
    return values


class DcgmGpuReader:
    """Reads dcgm-exporter's Prometheus text. Memory is used / (used + free), both in MiB.

    The exporter's numbers carry no read time, so there is no staleness check here beyond the
    exporter answering at all. ``DCGM_FI_DEV_XID_ERRORS`` shows only the last XID code: two
    faults with the same code in a row look like one (the newer ``DCGM_EXP_XID_ERRORS_COUNT``
    would count them, but it is off by default).
    """

    source = "DCGM exporter"

    def __init__(
        self,
        gpu_url: str,
        *,
        egress: Egress = DIRECT,
        clock: Callable[[], float] = time.monotonic,
        error_hold_s: float = ERROR_HOLD_S,
    ) -> None:
        self.url = dcgm_metrics_url(gpu_url)
        self._egress = egress
        self._events = _ErrorEvents(clock, error_hold_s)

    async def read(
        self, session: ProbeClient, thresholds: ProbeThresholds, tracker: http.ReadTracker
    ) -> GpuOutcome:
        try:
            answer = await http.get_ok(
                session,
                self.url,
                "DCGM exporter",
                tracker,
                max_body_bytes=thresholds.max_body_bytes,
                egress=self._egress,
            )
            samples = parse_metrics(answer.body)
            used = _per_gpu(samples, FB_USED)
            free = _per_gpu(samples, FB_FREE)
            if not used or not free:
                raise MalformedAnswer(
                    " and ".join(n for n, v in ((FB_USED, used), (FB_FREE, free)) if not v) + " missing"
                )
            ratios: dict[str, float] = {}
            for gpu, used_mib in used.items():
                if gpu not in free:
                    raise MalformedAnswer(f"{FB_FREE} missing for gpu {gpu}")
                total = used_mib + free[gpu]
                if used_mib < 0 or free[gpu] < 0 or total <= 0:
                    raise MalformedAnswer(
                        f"gpu {gpu}: memory figures used={used_mib:g} free={free[gpu]:g} MiB"
                    )
                ratios[gpu] = used_mib / total
            xids = _per_gpu(samples, XID_ERRORS)
            utils = _per_gpu(samples, GPU_UTIL)
            temps = _per_gpu(samples, GPU_TEMP)
        except Exception as exc:
            return _unreadable(self.source, exc)

        for gpu, code in xids.items():
            self._events.code(gpu, "xid", code, _xid_change(gpu))
        problems = self._events.active()
        if problems:
            health = CheckResult.failed(CheckName.GPU_HEALTH, "; ".join(problems))
        else:
            detail = [f"{len(ratios)} GPU(s) readable"]
            if utils:
                detail.append(f"max {max(utils.values()):.0f}% util")
            if temps:
                detail.append(f"max {max(temps.values()):.0f} C")
            if not xids:
                detail.append(f"no {XID_ERRORS} exported")
            health = CheckResult.passed(CheckName.GPU_HEALTH, ", ".join(detail))
        ratio = max(ratios.values())
        return GpuOutcome((health, _memory_check(ratio, thresholds, "max GPU memory ")), ratio)


def _xid_change(gpu: str) -> Callable[[float, float], str]:
    def describe(previous: float, value: float) -> str:
        return f"gpu {gpu}: XID {value:g} ({XID_ERRORS} changed from {previous:g})"

    return describe

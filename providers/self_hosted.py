"""What every self-hosted inference engine (vLLM, SGLang, TGI) is probed with.

The engines differ only in metric names, so an engine module is a few lines: an
``EngineMetrics`` naming its series, handed to ``SelfHostedAdapter``. One round reads, in
parallel, ``/health`` (``http_health``, ``probe_latency``), ``/metrics`` (``metrics``,
``kv_cache``, ``queue_depth``) and, when the deployment has a ``gpu_url``, GPU telemetry
(``gpu_health``, ``gpu_memory``; see ``providers.gpu``). Reading in parallel keeps one slow
endpoint from eating the others' share of the round's timeout.

Checks that need a value the round could not read are left out rather than failed twice: when
``/metrics`` is unreadable, ``metrics`` fails with the reason and there is no ``kv_cache``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from litellm_failover.providers import http, litellm_param
from litellm_failover.providers.base import (
    CheckName,
    CheckResult,
    LoadSignals,
    ProbeReport,
    ProbeTarget,
    Severity,
)
from litellm_failover.providers.continuation import ContinuationRule, ContinuingAdapter
from litellm_failover.providers.gpu import GpuOutcome, GpuReader, gpu_reader_for
from litellm_failover.providers.probe_client import ProbeClient
from litellm_failover.providers.prometheus import Series, parse_metrics, read_all, sample_names
from litellm_failover.providers.runner import latency_check
from litellm_failover.providers.thresholds import ProbeThresholds

if TYPE_CHECKING:
    from litellm_failover.settings import DeploymentFailoverConfig


@dataclass(frozen=True, slots=True)
class EngineMetrics:
    """The series an engine's ``/metrics`` exposes for load; ``None`` where it has none."""

    running: Series | None = None
    waiting: Series | None = None
    kv_usage: Series | None = None

    def wanted(self) -> list[Series]:
        return [s for s in (self.running, self.waiting, self.kv_usage) if s is not None]


def server_root(api_base: str) -> str:
    """``http://host:8000/v1`` -> ``http://host:8000``: where engines serve /health and /metrics.

    Only a trailing ``/v1`` is dropped, so a server mounted under a path prefix behind a proxy
    (``http://gw/vllm-a/v1``) keeps its prefix (``http://gw/vllm-a/health``).
    """
    parts = urlsplit(api_base)
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def check_url(value: str | None, where: str) -> str | None:
    """Reject a URL the probe client could not use, at start-up, naming the key."""
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok:
        from litellm_failover.settings import FailoverConfigError

        raise FailoverConfigError(
            f"invalid configuration: {where}: must be an http(s) URL (got {http.safe_url(value)!r})"
        )
    return value


class SelfHostedAdapter(ContinuingAdapter):
    """An inference engine that serves ``/health`` and Prometheus ``/metrics`` at its root."""

    self_hosted = True

    def __init__(self, kind: str, metrics: EngineMetrics, *, continuation: ContinuationRule) -> None:
        self.kind = kind
        self.metrics = metrics
        self.continuation_rule = continuation

    def default_target(
        self,
        deployment_id: str,
        litellm_params: dict,
        config: DeploymentFailoverConfig,
        thresholds: ProbeThresholds,
        *,
        where: str,
    ) -> ProbeTarget:
        api_base = litellm_param(litellm_params, "api_base", where=where, required=True)
        api_base = check_url(api_base, f"{where}.litellm_params.api_base")
        failover = f"{where}.model_info.failover"
        root = server_root(api_base) if api_base else None
        health_url = check_url(config.health_url, f"{failover}.health_url") or (root and f"{root}/health")
        if not health_url:
            from litellm_failover.settings import FailoverConfigError

            raise FailoverConfigError(
                f"invalid configuration: {where}.litellm_params.api_base: required to probe a deployment "
                f"of kind {self.kind!r} (or set {failover}.health_url)"
            )
        metrics_url = check_url(config.metrics_url, f"{failover}.metrics_url") or (root and f"{root}/metrics")
        return ProbeTarget(
            deployment_id=deployment_id,
            api_base=api_base,
            health_url=health_url,
            metrics_url=metrics_url or None,
            gpu_url=check_url(config.gpu_url, f"{failover}.gpu_url"),
            gpu_source=config.gpu_source if config.gpu_url else None,
            api_key=litellm_param(litellm_params, "api_key", where=where),
            thresholds=thresholds,
        )

    def new_prober(self, target: ProbeTarget) -> SelfHostedProber:
        return SelfHostedProber(self.kind, self.metrics, target, gpu_reader_for(target))


class SelfHostedProber:
    """One engine deployment's probe; owns its GPU reader (and so its XID memory)."""

    def __init__(
        self, kind: str, metrics: EngineMetrics, target: ProbeTarget, gpu_reader: GpuReader | None
    ) -> None:
        self.kind = kind
        self.target = target
        self._metrics = metrics
        # Fixed per engine kind: worked out once, not every round.
        self._wanted = metrics.wanted()
        self._sample_names = sample_names(self._wanted)
        self._gpu = gpu_reader
        self._tracker = http.ReadTracker()
        self._last_gpu: GpuOutcome | None = None
        self._last_gpu_at = 0.0

    def __repr__(self) -> str:
        return f"SelfHostedProber(kind={self.kind!r}, deployment_id={self.target.deployment_id!r})"

    @property
    def pending(self) -> tuple[str, ...]:
        """Reads in flight, or cut off by the runner's timeout in the last round."""
        return self._tracker.pending

    def _headers(self, url: str) -> dict[str, str] | None:
        """The API key goes only to the API server's own origin, never to a separate exporter."""
        key = self.target.api_key
        if key and http.origin(url) == http.origin(self.target.api_base):
            return {"Authorization": f"Bearer {key}"}
        return None

    async def probe(self, session: ProbeClient) -> ProbeReport:
        self._tracker.clear()
        thresholds = self.target.thresholds
        # /metrics and the GPU read run as tasks beside /health, which this coroutine reads
        # itself: one task fewer per round than gathering all three (probing 100 deployments
        # every 2 s is 50 rounds a second in the Router's own loop). A GPU read that is not due
        # costs nothing at all.
        gpu = self._reusable_gpu(thresholds)
        side: list[asyncio.Future[Any]] = []
        if self.target.metrics_url:
            side.append(asyncio.ensure_future(self._read_metrics(session)))
        if self._gpu is not None and gpu is None:
            side.append(asyncio.ensure_future(self._read_gpu(session, thresholds)))
        try:
            health_checks, latency = await self._health(session)
            extras = [await task for task in side]
        finally:
            for task in side:  # the runner's deadline cancelled us: take the reads down too
                task.cancel()
        if gpu is not None:
            extras.append(gpu)

        checks: list[CheckResult] = list(health_checks)
        load: dict[str, float | None] = {}
        for extra in extras:
            if isinstance(extra, GpuOutcome):
                checks.extend(extra.checks)
                load["gpu_memory_ratio"] = extra.memory_ratio
            else:
                metric_checks, metric_load = extra
                checks.extend(metric_checks)
                load.update(metric_load)
        return ProbeReport(checks=tuple(checks), latency_s=latency, load=LoadSignals(**load))

    def _reusable_gpu(self, thresholds: ProbeThresholds) -> GpuOutcome | None:
        """The last GPU read, while it may stand in for a new one.

        GPU memory and error counters move slowly next to the engine's queue and KV cache (a DCGM
        exporter refreshes every 30 s by default), and an XID event is held for a minute by the
        reader anyway, so a passing read is reused for ``gpu_read_interval_s`` (never longer than
        ``stale_after_s``): at a 2 s probe interval that saves one GET in three. A failing read
        is never reused: failures are re-read every round so the hysteresis confirms them, and a
        recovery is seen, at the probe's own pace.
        """
        last = self._last_gpu
        if last is None or not all(c.ok for c in last.checks):
            return None
        reuse_for = min(thresholds.gpu_read_interval_s, thresholds.stale_after_s)
        return last if time.monotonic() - self._last_gpu_at < reuse_for else None

    async def _read_gpu(self, session: ProbeClient, thresholds: ProbeThresholds) -> GpuOutcome:
        assert self._gpu is not None
        started = time.monotonic()
        outcome = await self._gpu.read(session, thresholds, self._tracker)
        self._last_gpu, self._last_gpu_at = outcome, started
        return outcome

    async def _health(self, session: ProbeClient) -> tuple[list[CheckResult], float]:
        url = self.target.health_url
        assert url is not None
        thresholds = self.target.thresholds
        start = time.monotonic()
        try:
            with self._tracker.reading(http.read_label("health", url)):
                answer = await http.get(
                    session, url, max_body_bytes=thresholds.max_body_bytes, headers=self._headers(url)
                )
        except Exception as exc:
            latency = time.monotonic() - start
            health = CheckResult.failed(CheckName.HTTP_HEALTH, http.describe_error(exc))
        else:
            latency = answer.latency_s
            if answer.status == 200:
                health = CheckResult.passed(CheckName.HTTP_HEALTH, "200 OK", float(answer.status))
            else:
                health = CheckResult.failed(
                    CheckName.HTTP_HEALTH,
                    f"GET {http.safe_url(url)} answered {answer.status}",
                    float(answer.status),
                )
        return [health, latency_check(latency, thresholds)], latency

    async def _read_metrics(self, session: ProbeClient) -> tuple[list[CheckResult], dict[str, float | None]]:
        url = self.target.metrics_url
        assert url is not None
        thresholds = self.target.thresholds
        try:
            answer = await http.get_ok(
                session,
                url,
                "metrics",
                self._tracker,
                max_body_bytes=thresholds.max_body_bytes,
                headers=self._headers(url),
            )
            samples = parse_metrics(answer.body, self._sample_names)  # only the families read
            values, problems = read_all(samples, self._wanted)
        except Exception as exc:
            return [CheckResult.failed(CheckName.METRICS, http.describe_error(exc))], {}
        if problems:
            return [CheckResult.failed(CheckName.METRICS, "; ".join(problems))], {}

        def value(series: Series | None) -> float | None:
            return None if series is None else values.get(series.name)

        running = value(self._metrics.running)
        waiting = value(self._metrics.waiting)
        usage = value(self._metrics.kv_usage)
        summary = []
        if running is not None:
            summary.append(f"running {running:g}")
        if waiting is not None:
            summary.append(f"waiting {waiting:g}")
        if usage is not None:
            summary.append(f"KV cache {usage:.0%}")
        checks = [CheckResult.passed(CheckName.METRICS, ", ".join(summary) or "readable")]
        if usage is not None:
            limit = thresholds.max_kv_cache_usage
            text = f"KV cache {usage:.0%} used (limit {limit:.0%})"
            checks.append(_degrade_check(CheckName.KV_CACHE, usage > limit, text, usage))
        if waiting is not None:
            limit = thresholds.max_queue_waiting
            text = f"{waiting:g} requests waiting (limit {limit:g})"
            checks.append(_degrade_check(CheckName.QUEUE_DEPTH, waiting > limit, text, waiting))
        load = {"kv_cache_usage": usage, "queue_waiting": waiting, "requests_running": running}
        return checks, load


def _degrade_check(name: str, over: bool, reason: str, value: float) -> CheckResult:
    if over:
        return CheckResult.failed(name, reason, value, severity=Severity.DEGRADE)
    return CheckResult.passed(name, reason, value, severity=Severity.DEGRADE)

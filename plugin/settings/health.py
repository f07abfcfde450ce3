"""How a deployment's health is judged: probes, passive outlier detection, dynamic weights, and
the per-deployment ``model_info.failover`` block that can override the probe thresholds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from litellm_failover.providers.thresholds import ProbeThresholds
from litellm_failover.settings.base import FailoverConfigError, StrictModel, format_error

ProviderKind = Literal["vllm", "sglang", "tgi", "openai-compatible", "openai", "azure", "anthropic"]
GpuSource = Literal["agent", "dcgm"]


class HealthSettings(StrictModel):
    """Active probes: how often, how patient, and what counts as healthy."""

    interval_s: float = Field(1.0, gt=0, description="Seconds between probe rounds of a deployment.")
    failure_interval_s: float = Field(
        0.25, ge=0, description="Seconds before re-probing after a failed round (confirms a failure fast)."
    )
    jitter: float = Field(0.1, ge=0, lt=1, description="Fraction of the interval randomised away.")
    unhealthy_threshold: int = Field(2, ge=1, description="Consecutive failed rounds to eject.")
    healthy_threshold: int = Field(2, ge=1, description="Consecutive good rounds to bring back.")
    max_probe_latency_s: float = Field(2.0, gt=0, description="A probe slower than this fails (timeout).")
    max_gpu_memory_ratio: float = Field(0.95, gt=0, le=1, description="GPU memory used ratio to degrade.")
    max_kv_cache_usage: float = Field(0.90, gt=0, le=1, description="KV-cache usage to degrade.")
    max_queue_waiting: float = Field(16, ge=0, description="Waiting requests to degrade.")
    stale_after_s: float = Field(15.0, gt=0, description="GPU telemetry older than this fails.")
    max_body_bytes: int = Field(1_000_000, gt=0, description="Probe answers larger than this fail.")
    gpu_read_interval_s: float = Field(
        5.0, ge=0, description="A passing GPU read is reused this long; a failing one is re-read each round."
    )

    def thresholds(self) -> ProbeThresholds:
        return ProbeThresholds(
            max_probe_latency_s=self.max_probe_latency_s,
            max_gpu_memory_ratio=self.max_gpu_memory_ratio,
            max_kv_cache_usage=self.max_kv_cache_usage,
            max_queue_waiting=self.max_queue_waiting,
            stale_after_s=self.stale_after_s,
            max_body_bytes=self.max_body_bytes,
            gpu_read_interval_s=self.gpu_read_interval_s,
        )


class OutlierSettings(StrictModel):
    """Passive detection from real traffic (Envoy's outlier detection)."""

    consecutive_errors: int = Field(3, ge=1, description="5xx/timeouts/stream cuts in a row to eject.")
    eject_on_connect_error: bool = Field(True, description="A refused connection ejects at once.")
    base_ejection_s: float = Field(5.0, gt=0, description="First ejection time; doubles per repeat.")
    max_ejection_s: float = Field(300.0, gt=0, description="Cap on the ejection time.")
    ejection_decay_s: float = Field(
        300.0, gt=0, description="Healthy time after which the ejection count resets to zero."
    )
    error_window_s: float = Field(30.0, gt=0, description="Window for the error rate used by weights.")


class WeightSettings(StrictModel):
    """The dynamic score that multiplies a deployment's static weight."""

    latency_scale_s: float = Field(5.0, gt=0, description="latency_score = max(0, 1 - latency / this).")
    error_rate_scale: float = Field(10.0, gt=0, description="error_score = max(0, 1 - error_rate * this).")
    latency_ewma_alpha: float = Field(0.2, gt=0, le=1, description="Smoothing of observed latency.")
    refresh_interval_s: float = Field(0.5, gt=0, description="Seconds between dynamic weight refreshes.")


class HealthOverrides(StrictModel):
    """Per-deployment overrides of ``failover_settings.health`` thresholds."""

    max_probe_latency_s: float | None = Field(None, gt=0)
    max_gpu_memory_ratio: float | None = Field(None, gt=0, le=1)
    max_kv_cache_usage: float | None = Field(None, gt=0, le=1)
    max_queue_waiting: float | None = Field(None, ge=0)
    stale_after_s: float | None = Field(None, gt=0)


class DeploymentFailoverConfig(StrictModel):
    """``model_info.failover`` of one deployment: plugin-only fields."""

    provider: ProviderKind | None = None
    health_url: str | None = None
    metrics_url: str | None = None
    gpu_url: str | None = None
    gpu_source: GpuSource | None = None
    probe: bool = Field(True, description="Set false to rely on passive detection only.")
    health: HealthOverrides = Field(default_factory=HealthOverrides)

    @model_validator(mode="after")
    def _gpu_source_needs_url(self) -> DeploymentFailoverConfig:
        if self.gpu_url is not None and self.gpu_source is None:
            return self.model_copy(update={"gpu_source": "agent"})
        return self


def parse_deployment_config(raw: Any, root: str) -> DeploymentFailoverConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise FailoverConfigError(f"invalid configuration: {root}: must be a mapping (got {raw!r})")
    try:
        return DeploymentFailoverConfig.model_validate(raw)
    except ValidationError as exc:
        raise FailoverConfigError(format_error(root, exc)) from None

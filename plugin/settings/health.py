"""How a deployment's health is judged: probes, passive outlier detection, dynamic weights, and
the per-deployment ``model_info.failover`` block that can override the probe thresholds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from litellm_failover.providers.thresholds import ProbeThresholds
from litellm_failover.settings.base import FailoverConfigError, StrictModel, config_error

ProviderKind = Literal[
    "vllm", "sglang", "llamacpp", "tgi", "openai-compatible", "openai", "azure", "anthropic"
]
GpuSource = Literal["agent", "dcgm"]


class HealthSettings(StrictModel):
    """Active probes: how often, how patient, and what counts as healthy."""

    interval_s: float = Field(
        1.0,
        gt=0,
        description=(
            "Seconds between probe rounds of a deployment (rounds start on this cadence even if one is still"
            " waiting on a hung node)."
        ),
    )
    failure_interval_s: float = Field(
        0.25, ge=0, description="Seconds before re-probing after a failed round, to confirm a failure fast."
    )
    jitter: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Fraction of the interval randomised away, so deployments are not probed in lockstep.",
    )
    unhealthy_threshold: int = Field(2, ge=1, description="Consecutive failed rounds to eject (N).")
    healthy_threshold: int = Field(
        2, ge=1, description="Consecutive good rounds to come back (M), through `recovering`."
    )
    max_probe_latency_s: float = Field(
        2.0,
        gt=0,
        description=(
            "The probe latency check: a probe with no answer within this fails (it is also the probe "
            "timeout)."
        ),
    )
    max_gpu_memory_ratio: float = Field(
        0.95, gt=0, le=1, description="GPU memory used ratio above which a deployment is degraded."
    )
    max_kv_cache_usage: float = Field(
        0.90, gt=0, le=1, description="KV-cache usage above which a deployment is degraded."
    )
    max_queue_waiting: float = Field(
        16, ge=0, description="Waiting requests above which a deployment is degraded."
    )
    stale_after_s: float = Field(15.0, gt=0, description="GPU telemetry older than this counts as a failure.")
    max_body_bytes: int = Field(
        1_000_000, gt=0, description="A probe answer larger than this fails (with the reason)."
    )
    gpu_read_interval_s: float = Field(
        5.0,
        ge=0,
        description=(
            "A passing GPU telemetry read (`gpu_url`) is reused for this long (never longer than "
            "`stale_after_s`) instead of re-read every round: GPU memory and error counters move slowly, and"
            " a DCGM exporter refreshes only every 30 s by default. A failing read is re-read every round. "
            "`0` reads every round."
        ),
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

    consecutive_errors: int = Field(
        3, ge=1, description="5xx, timeouts and cut streams in a row (from real traffic) to eject."
    )
    eject_on_connect_error: bool = Field(True, description="A refused connection ejects at once.")
    base_ejection_s: float = Field(
        5.0, gt=0, description="First ejection time; it doubles with each repeated ejection."
    )
    max_ejection_s: float = Field(300.0, gt=0, description="Cap on the ejection time.")
    ejection_decay_s: float = Field(
        300.0,
        gt=0,
        description="Time after the last ejection when the ejection count starts again from zero.",
    )
    error_window_s: float = Field(
        30.0, gt=0, description="Window of the error rate and latency used for dynamic weights."
    )


class WeightSettings(StrictModel):
    """The dynamic score that multiplies a deployment's static weight."""

    latency_scale_s: float = Field(
        5.0,
        gt=0,
        description=(
            "`latency_score = max(0, 1 - avg_latency_s / latency_scale_s)` (time to first token for streams)."
        ),
    )
    error_rate_scale: float = Field(
        10.0, gt=0, description="`error_score = max(0, 1 - error_rate * error_rate_scale)`."
    )
    latency_ewma_alpha: float = Field(0.2, gt=0, le=1, description="Smoothing of the observed latency.")
    refresh_interval_s: float = Field(
        0.5,
        gt=0,
        description=(
            "Seconds between rebuilds of the routing tables with fresh dynamic weights (state changes "
            "rebuild at once)."
        ),
    )


class HealthOverrides(StrictModel):
    """Per-deployment overrides of ``failover_settings.health`` thresholds."""

    max_probe_latency_s: float | None = Field(
        None,
        gt=0,
        description=(
            "Per-deployment override of `failover_settings.health.max_probe_latency_s`; unset: the group "
            "value."
        ),
    )
    max_gpu_memory_ratio: float | None = Field(
        None,
        gt=0,
        le=1,
        description=(
            "Per-deployment override of `failover_settings.health.max_gpu_memory_ratio`; unset: the group "
            "value."
        ),
    )
    max_kv_cache_usage: float | None = Field(
        None,
        gt=0,
        le=1,
        description=(
            "Per-deployment override of `failover_settings.health.max_kv_cache_usage`; unset: the group "
            "value."
        ),
    )
    max_queue_waiting: float | None = Field(
        None,
        ge=0,
        description=(
            "Per-deployment override of `failover_settings.health.max_queue_waiting`; unset: the group value."
        ),
    )
    stale_after_s: float | None = Field(
        None,
        gt=0,
        description=(
            "Per-deployment override of `failover_settings.health.stale_after_s`; unset: the group value."
        ),
    )


class DeploymentFailoverConfig(StrictModel):
    """``model_info.failover`` of one deployment: plugin-only fields."""

    provider: ProviderKind | None = Field(
        None,
        description=(
            "Endpoint kind when the model prefix does not say: `vllm`, `sglang`, `llamacpp`, `tgi`,"
            " `openai-compatible`,"
            " `openai`, `azure`, `anthropic`. Unset: inferred: `hosted_vllm/` → vllm, `openai/` → openai (or"
            " openai-compatible with a non-OpenAI `api_base`), `azure/` → azure, `anthropic/` → anthropic, "
            "`huggingface/` with an `api_base` → tgi."
        ),
    )
    health_url: str | None = Field(
        None,
        description=(
            "Health endpoint of a self-hosted server. Unset: the server root of `api_base` + `/health`."
        ),
    )
    metrics_url: str | None = Field(
        None,
        description=(
            "Prometheus metrics of a self-hosted server (vLLM, SGLang, TGI names). Unset: the server root of"
            " `api_base` + `/metrics`."
        ),
    )
    gpu_url: str | None = Field(
        None,
        description=(
            "GPU telemetry: the `litellm-failover gpu-agent` base URL, or a DCGM exporter's `/metrics` URL. "
            "Read directly (no proxy); an `https://` one trusts `ca_file`. "
            "Without it, there are no GPU checks and the engine's KV cache stands in."
        ),
    )
    ca_file: str | None = Field(
        None,
        description=(
            "PEM CA bundle that probes trust for this deployment's `https://` endpoints (health, metrics "
            "and `gpu_url`): a self-hosted server or GPU exporter with a certificate from a private CA. "
            "On a hosted kind it overrides LiteLLM's `ssl_verify` for the probe. "
            "Unset: self-hosted probes use the system store; hosted ones "
            "LiteLLM's `ssl_verify` (deployment, `SSL_VERIFY`, `litellm.ssl_verify`)."
        ),
    )
    gpu_source: GpuSource | None = Field(
        None, description="`agent` or `dcgm`. Unset: `agent` when `gpu_url` is set."
    )
    probe: bool = Field(
        True,
        description=(
            "`false`: no active probes; traffic alone decides, and an ejected deployment comes back when its"
            " ejection time is over."
        ),
    )
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
        raise config_error(root, DeploymentFailoverConfig, exc) from None

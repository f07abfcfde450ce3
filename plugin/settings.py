"""``failover_settings`` and ``model_info.failover``: validated once, at start-up.

Every model forbids unknown keys, so a typo is an error naming its key path rather than a
setting silently ignored. ``FailoverConfigError`` carries one message with the path and value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from litellm_failover.providers.thresholds import ProbeThresholds

Strategy = Literal["primary-standby", "round-robin", "weighted"]
InTierStrategy = Literal["weighted", "round-robin"]
ProviderKind = Literal["vllm", "sglang", "tgi", "openai-compatible", "openai", "azure", "anthropic"]
GpuSource = Literal["agent", "dcgm"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./litellm_failover.db"


class FailoverConfigError(ValueError):
    """A configuration error; the message names the key path and the value at fault."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HealthSettings(_Strict):
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


class OutlierSettings(_Strict):
    """Passive detection from real traffic (Envoy's outlier detection)."""

    consecutive_errors: int = Field(3, ge=1, description="5xx/timeouts/stream cuts in a row to eject.")
    eject_on_connect_error: bool = Field(True, description="A refused connection ejects at once.")
    base_ejection_s: float = Field(5.0, gt=0, description="First ejection time; doubles per repeat.")
    max_ejection_s: float = Field(300.0, gt=0, description="Cap on the ejection time.")
    ejection_decay_s: float = Field(
        300.0, gt=0, description="Healthy time after which the ejection count resets to zero."
    )
    error_window_s: float = Field(30.0, gt=0, description="Window for the error rate used by weights.")


class WeightSettings(_Strict):
    """The dynamic score that multiplies a deployment's static weight."""

    latency_scale_s: float = Field(5.0, gt=0, description="latency_score = max(0, 1 - latency / this).")
    error_rate_scale: float = Field(10.0, gt=0, description="error_score = max(0, 1 - error_rate * this).")
    latency_ewma_alpha: float = Field(0.2, gt=0, le=1, description="Smoothing of observed latency.")
    refresh_interval_s: float = Field(0.5, gt=0, description="Seconds between dynamic weight refreshes.")


class WriterSettings(_Strict):
    """The batched, bounded writer that keeps SQL off the hot path."""

    max_buffer: int = Field(10_000, ge=1, description="Rows held while the database is away; more drop.")
    batch_size: int = Field(200, ge=1, description="Rows per INSERT batch.")
    flush_interval_s: float = Field(0.2, gt=0, description="Seconds between flushes.")
    retry_backoff_max_s: float = Field(5.0, gt=0, description="Longest wait between retries when down.")


class SessionSettings(_Strict):
    """Conversation state: which requests form a session, what is stored, for how long."""

    enabled: bool = Field(True, description="Identify sessions, pin them to a deployment and record them.")
    store_messages: bool = Field(
        True, description="Write failover_sessions / failover_messages rows (pins work without it)."
    )
    store_content: bool = Field(True, description="Store message text; off keeps hashes and token counts.")
    use_user_field: bool = Field(False, description="Use the OpenAI `user` field as a session id (opt-in).")
    retention_s: float = Field(
        7 * 24 * 3600.0, gt=0, description="Sessions idle longer than this are purged with their messages."
    )
    purge_interval_s: float = Field(3600.0, gt=0, description="Seconds between retention purges.")
    max_message_chars: int = Field(
        32_000, ge=0, description="Longer messages are stored as hash only (and counted)."
    )
    max_pins: int = Field(100_000, ge=1, description="Session pins kept in memory (least recent dropped).")
    warmup: bool = Field(
        False, description="On a re-pin to a self-hosted deployment, send the prefix with max_tokens 1."
    )


class FleetSettings(_Strict):
    """Sharing what one proxy replica learns with the others through Redis (`redis_url`)."""

    channel: str = Field("litellm_failover", min_length=1, description="Pub/sub channel and key prefix.")
    key_ttl_s: float = Field(
        300.0, gt=0, description="Lifetime of the state keys a replica that starts later reads."
    )
    reconnect_max_s: float = Field(5.0, gt=0, description="Longest wait between Redis reconnect attempts.")
    operation_timeout_s: float = Field(1.0, gt=0, description="Redis calls slower than this count as failed.")


def _secret_error(message: str) -> PydanticCustomError:
    """A validation error whose input is a secret: ``_format_error`` shows the message (which
    names only what is safe: a scheme, a host) and never the value."""
    return PydanticCustomError("failover_secret_value", "{detail}", {"detail": message, "secret": True})


def _check_apprise_url(url: str) -> str:
    from litellm_failover.alerts.urls import apprise_url_problem  # lazy: alerts imports settings

    problem = apprise_url_problem(url)
    if problem is not None:
        raise _secret_error(problem)
    return url.strip()


def _check_webhook_url(url: str) -> str:
    from litellm_failover.alerts.urls import webhook_url_problem

    problem = webhook_url_problem(url)
    if problem is not None:
        raise _secret_error(problem)
    return url.strip()


def _check_header_name(name: str) -> str:
    from litellm_failover.alerts.urls import header_problem

    problem = header_problem(name, "")
    if problem is not None:
        raise PydanticCustomError("failover_header_name", "{detail}", {"detail": problem})
    return name


def _check_header_value(value: str) -> str:
    from litellm_failover.alerts.urls import header_problem

    problem = header_problem("x", value)
    if problem is not None:
        raise _secret_error(problem)
    return value


AppriseUrl = Annotated[str, AfterValidator(_check_apprise_url)]
WebhookUrl = Annotated[str, AfterValidator(_check_webhook_url)]
HeaderName = Annotated[str, AfterValidator(_check_header_name)]
HeaderValue = Annotated[str, AfterValidator(_check_header_value)]

ALERT_EVENT_TYPES = (
    "failover",
    "failback_step",
    "failback_completed",
    "ramp_aborted",
    "drain_started",
    "drain_completed",
    "panic_mode",
)


class AlertSettings(_Strict):
    """Notifications of failovers, failbacks, ramp aborts, drains and panic mode (issue 4).

    The destinations are secrets: they are kept out of ``repr``, and a bad one is refused naming
    its key path and scheme, never its value.
    """

    apprise_urls: list[AppriseUrl] = Field(
        default_factory=list,
        repr=False,
        description="Apprise URLs (Slack, Teams, PagerDuty, email, json://...); secrets.",
    )
    webhook_urls: list[WebhookUrl] = Field(
        default_factory=list, repr=False, description="Plain JSON webhooks (http/https POST); secrets."
    )
    webhook_headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        repr=False,
        description="Headers sent with every webhook (e.g. Authorization); secrets.",
    )
    event_types: list[str] = Field(
        default_factory=lambda: list(ALERT_EVENT_TYPES), description="Event types that send an alert."
    )
    dedup_window_s: float = Field(
        300.0,
        ge=0,
        description="The same alert (group, type, deployment, from/to, reason) within this is sent once.",
    )
    rate_limit_count: int = Field(10, ge=1, description="At most this many alerts per group per window.")
    rate_limit_window_s: float = Field(300.0, gt=0, description="The per-group rate-limit window.")
    timeout_s: float = Field(10.0, gt=0, description="One delivery attempt's time limit.")
    max_attempts: int = Field(
        5, ge=1, description="Delivery attempts per destination before an alert is given up."
    )
    retry_backoff_s: float = Field(1.0, gt=0, description="Wait before the first retry; doubles per attempt.")
    retry_backoff_max_s: float = Field(60.0, gt=0, description="Longest wait between delivery attempts.")
    max_queue: int = Field(
        1000, ge=1, description="Alerts waiting for (or in) delivery; more are dropped, counted."
    )

    @field_validator("event_types")
    @classmethod
    def _no_alert_on_alert_failures(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.strip():
                raise ValueError("an event type must not be empty")
        if "alert_failed" in value:
            raise ValueError(
                "alert_failed cannot send an alert (a failing destination would alert about itself)"
            )
        return list(dict.fromkeys(name.strip() for name in value))


class MetricsSettings(_Strict):
    """The plugin's Prometheus metrics (issue 4).

    They are always registered on prometheus_client's default registry, which the proxy's own
    ``/metrics`` serves when LiteLLM's ``prometheus`` callback is on. ``port`` adds a listener of
    the plugin's own, for a proxy without that callback (or with several workers, where LiteLLM's
    multiprocess ``/metrics`` can't show them) and for Python services with no exporter.
    """

    enabled: bool = Field(True, description="Export the plugin's metrics.")
    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve them on this port of the plugin's own (0: any free port); unset: no own port.",
    )
    host: str = Field("127.0.0.1", min_length=1, description="Address the plugin's own metrics port binds.")


class ControlSettings(_Strict):
    """Operator commands (drain, undrain, failover, failback, shift) sent to running replicas by
    the CLI, through Redis when ``redis_url`` is set and through the database's command table."""

    enabled: bool = Field(True, description="Apply operator commands sent to this replica.")
    poll_interval_s: float = Field(1.0, gt=0, description="Seconds between polls of failover_commands.")
    command_ttl_s: float = Field(
        300.0, gt=0, description="A command older than this when a replica sees it is not applied."
    )
    heartbeat_interval_s: float = Field(
        5.0, gt=0, description="How often a replica tells the CLI it is alive (whose answer to await)."
    )
    restore_on_start: bool = Field(
        True, description="A starting replica takes over standing drains and planned failovers."
    )


FailbackMode = Literal["auto", "manual"]


class FailbackSettings(_Strict):
    """How traffic comes back to a recovered primary tier, and to a node recovering inside a
    tier (slow start, after Envoy's ``slow_start``): held down, then ramped in steps."""

    mode: FailbackMode = Field(
        "auto", description="auto: ramp back after hold_down_s; manual: wait for failback(group)."
    )
    hold_down_s: float = Field(
        30.0, ge=0, description="The primary must be routable without a break this long before it ramps."
    )
    ramp_steps: list[float] = Field(
        default_factory=lambda: [10.0, 50.0, 100.0],
        description="Percent of the group's new requests per step; increasing, ending at 100.",
    )
    step_interval_s: float = Field(30.0, gt=0, description="Seconds per ramp step.")
    abort_errors: int = Field(
        3, ge=1, description="Failed attempts on the ramping deployments within one step that abort it."
    )
    slow_start: bool = Field(
        True, description="Ramp a deployment that recovers inside the serving tier (weight x step)."
    )

    @field_validator("ramp_steps")
    @classmethod
    def _valid_steps(cls, value: list[float]) -> list[float]:
        from litellm_failover.switching.steps import check_steps  # lazy: switching imports settings

        return list(check_steps(value))


class DrainSettings(_Strict):
    """Graceful drain: in-flight work finishes, new work goes elsewhere."""

    timeout_s: float = Field(
        300.0, gt=0, description="In-flight work still running after this is counted as cut."
    )
    in_flight_ttl_s: float = Field(
        900.0,
        gt=0,
        description="An attempt with no end signal after this is forgotten (counted as expired).",
    )


class ShiftSettings(_Strict):
    """Canary shifts (``shift(group, to, steps, interval_s)``)."""

    abort_errors: int = Field(
        3, ge=1, description="Failed attempts on the shift target within one step that roll it back."
    )


InexactContinuation = Literal["best_effort", "error"]


class StreamSettings(_Strict):
    """Mid-stream failover (issue 5): a stream that breaks after its first chunks continues on
    another healthy deployment, and the client sees one unbroken stream."""

    resume: bool = Field(
        True, description="Continue a broken stream elsewhere; off: a break ends the stream with an error."
    )
    max_resumes: int = Field(
        2, ge=0, description="Continuations one stream may start; a later break ends it with an error."
    )
    inter_token_timeout_s: float | None = Field(
        30.0, gt=0, description="No chunk for this long (after the first) is a break; null: no limit."
    )
    inexact_continuation: InexactContinuation = Field(
        "error",
        description="Deployments with no exact continuation (OpenAI, Azure, TGI): best_effort or error.",
    )


class ChaosSettings(_Strict):
    """Fault injection for drills (issue 5): errors, added latency and stream cuts on chosen
    deployments, started with ``litellm-failover chaos inject``. Off unless enabled here, so a
    production config that does not say so refuses every chaos command."""

    enabled: bool = Field(False, description="Accept chaos inject/clear commands on this replica.")
    max_duration_s: float = Field(
        3600.0, gt=0, description="Longest a fault may last; a longer --for or --until is refused."
    )


class GroupSettings(_Strict):
    strategy: Strategy | None = None
    in_tier: InTierStrategy | None = None
    failback: FailbackMode | None = None


class FailoverSettings(_Strict):
    """The top-level ``failover_settings`` block of config.yaml, or the ``settings`` of ``attach``."""

    strategy: Strategy = "primary-standby"
    in_tier: InTierStrategy = "weighted"
    groups: dict[str, GroupSettings] = Field(default_factory=dict)
    database_url: str = DEFAULT_DATABASE_URL
    instance_id: str | None = None
    panic_mode: bool = True
    keep_litellm_cooldowns: bool = False
    health: HealthSettings = Field(default_factory=HealthSettings)
    outlier: OutlierSettings = Field(default_factory=OutlierSettings)
    weights: WeightSettings = Field(default_factory=WeightSettings)
    writer: WriterSettings = Field(default_factory=WriterSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    redis_url: str | None = None
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    failback: FailbackSettings = Field(default_factory=FailbackSettings)
    drain: DrainSettings = Field(default_factory=DrainSettings)
    shift: ShiftSettings = Field(default_factory=ShiftSettings)
    streams: StreamSettings = Field(default_factory=StreamSettings)
    chaos: ChaosSettings = Field(default_factory=ChaosSettings)

    def group_strategy(self, group: str) -> tuple[Strategy, InTierStrategy]:
        override = self.groups.get(group)
        strategy = (override.strategy if override else None) or self.strategy
        in_tier = (override.in_tier if override else None) or self.in_tier
        return strategy, in_tier

    def group_failback(self, group: str) -> FailbackMode:
        override = self.groups.get(group)
        return (override.failback if override else None) or self.failback.mode


class HealthOverrides(_Strict):
    """Per-deployment overrides of ``failover_settings.health`` thresholds."""

    max_probe_latency_s: float | None = Field(None, gt=0)
    max_gpu_memory_ratio: float | None = Field(None, gt=0, le=1)
    max_kv_cache_usage: float | None = Field(None, gt=0, le=1)
    max_queue_waiting: float | None = Field(None, ge=0)
    stale_after_s: float | None = Field(None, gt=0)


class DeploymentFailoverConfig(_Strict):
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


def _format_error(root: str, error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        path = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
        if (item.get("ctx") or {}).get("secret"):
            parts.append(f"{path}: {item['msg']}")  # the value is a secret (see AlertSettings)
            continue
        value = item.get("input")
        shown = "<missing>" if item["type"] == "missing" else repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        parts.append(f"{path}: {item['msg']} (got {shown})")
    return "invalid configuration: " + "; ".join(parts)


def parse_settings(raw: Any, root: str = "failover_settings") -> FailoverSettings:
    """Validate the raw block; ``None`` means all defaults."""
    if raw is None:
        raw = {}
    if isinstance(raw, FailoverSettings):
        return raw
    if not isinstance(raw, dict):
        raise FailoverConfigError(f"invalid configuration: {root}: must be a mapping (got {raw!r})")
    try:
        return FailoverSettings.model_validate(raw)
    except ValidationError as exc:
        raise FailoverConfigError(_format_error(root, exc)) from None


def parse_deployment_config(raw: Any, root: str) -> DeploymentFailoverConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise FailoverConfigError(f"invalid configuration: {root}: must be a mapping (got {raw!r})")
    try:
        return DeploymentFailoverConfig.model_validate(raw)
    except ValidationError as exc:
        raise FailoverConfigError(_format_error(root, exc)) from None

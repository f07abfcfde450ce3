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

from litellm_failover.providers.base import ProbeThresholds

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


class OutlierSettings(_Strict):
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


class WeightSettings(_Strict):
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


class WriterSettings(_Strict):
    """The batched, bounded writer that keeps SQL off the hot path."""

    max_buffer: int = Field(
        10_000,
        ge=1,
        description=(
            "Event rows held while the database is unreachable; beyond it new rows are dropped, counted and "
            "warned about, never blocking."
        ),
    )
    batch_size: int = Field(200, ge=1, description="Rows per INSERT batch.")
    flush_interval_s: float = Field(0.2, gt=0, description="Seconds between flushes.")
    retry_backoff_max_s: float = Field(
        5.0, gt=0, description="Longest wait between reconnection attempts while the database is down."
    )


class SessionSettings(_Strict):
    """Conversation state: which requests form a session, what is stored, for how long."""

    enabled: bool = Field(True, description="Identify sessions, pin each to a deployment and record it.")
    store_messages: bool = Field(
        True, description="Write `failover_sessions` and `failover_messages` rows. Pins work without it."
    )
    store_content: bool = Field(
        True, description="Store message text. Off keeps only a SHA-256 hash, the length and token counts."
    )
    use_user_field: bool = Field(
        False,
        description=(
            "Also take the OpenAI `user` field as a session id (opt-in: many clients set it to an end-user "
            "id)."
        ),
    )
    retention_s: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description=(
            "Sessions idle longer than this (7 days) are purged with their messages by a periodic purge."
        ),
    )
    purge_interval_s: float = Field(3600.0, gt=0, description="Seconds between retention purges.")
    max_message_chars: int = Field(
        32_000, ge=0, description="A longer message is stored as hash and length only, and counted."
    )
    max_pins: int = Field(
        100_000,
        ge=1,
        description=(
            "Session pins kept in memory; the least recently used beyond this are forgotten (a forgotten "
            "session is routed normally and pinned again)."
        ),
    )
    warmup: bool = Field(
        False,
        description=(
            "When a failover takes a deployment out of its group's serving set, move the (up to 32) most "
            "recently used sessions pinned to it to a self-hosted deployment now and send each one's stored "
            "conversation there with `max_tokens: 1`, so its next turn hits a warm prefix cache."
        ),
    )


class FleetSettings(_Strict):
    """Sharing what one proxy replica learns with the others through Redis (`redis_url`)."""

    channel: str = Field(
        "litellm_failover",
        min_length=1,
        description=(
            "Pub/sub channel and key prefix (`<channel>:state:*`) in Redis; replicas of one fleet must share"
            " it."
        ),
    )
    key_ttl_s: float = Field(
        300.0, gt=0, description="Lifetime of the state keys that a replica starting later reads."
    )
    reconnect_max_s: float = Field(5.0, gt=0, description="Longest wait between Redis reconnection attempts.")
    operation_timeout_s: float = Field(
        1.0, gt=0, description="A Redis call slower than this counts as failed; routing never waits for it."
    )


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
    """Notifications of failovers, failbacks, ramp aborts, drains and panic mode.

    The destinations are secrets: they are kept out of ``repr``, and a bad one is refused naming
    its key path and scheme, never its value.
    """

    apprise_urls: list[AppriseUrl] = Field(
        default_factory=list,
        repr=False,
        description=(
            "Apprise URLs to notify (Slack, Teams, PagerDuty, e-mail, `json://`/`jsons://`, ...). Secrets: "
            "never logged; an URL apprise cannot parse refuses start-up, naming its key path and scheme "
            "only."
        ),
    )
    webhook_urls: list[WebhookUrl] = Field(
        default_factory=list,
        repr=False,
        description=(
            "Webhooks that get each alert as a JSON `POST` (http or https). Secrets: named by scheme and "
            "host only."
        ),
    )
    webhook_headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        repr=False,
        description="Headers sent with every webhook request (e.g. `Authorization`). Values are secrets.",
    )
    event_types: list[str] = Field(
        default_factory=lambda: list(ALERT_EVENT_TYPES),
        description="Event types that send an alert. `alert_failed` is refused (no loops).",
    )
    dedup_window_s: float = Field(
        300.0,
        ge=0,
        description=(
            "The same alert (group, event type, deployment, from/to, reason) again within this is suppressed"
            " and counted. `0` turns deduplication off."
        ),
    )
    rate_limit_count: int = Field(
        10,
        ge=1,
        description=(
            "At most this many alerts per model group per `rate_limit_window_s`; more are suppressed, "
            "counted, and the latest is sent as a digest when the window has room."
        ),
    )
    rate_limit_window_s: float = Field(300.0, gt=0, description="The per-group rate-limit window in seconds.")
    timeout_s: float = Field(10.0, gt=0, description="Time limit of one delivery attempt to one destination.")
    max_attempts: int = Field(
        5,
        ge=1,
        description=(
            "Attempts per destination before the alert is given up and an `alert_failed` event is written."
        ),
    )
    retry_backoff_s: float = Field(
        1.0, gt=0, description="Wait before the first retry; it doubles with each attempt (with jitter)."
    )
    retry_backoff_max_s: float = Field(60.0, gt=0, description="Longest wait between two attempts.")
    max_queue: int = Field(
        1000,
        ge=1,
        description=(
            "Alerts waiting for, or in, delivery; beyond it new alerts are dropped, counted and warned "
            "about, never blocking a request."
        ),
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
    """The plugin's Prometheus metrics.

    They are always registered on prometheus_client's default registry, which the proxy's own
    ``/metrics`` serves when LiteLLM's ``prometheus`` callback is on. ``port`` adds a listener of
    the plugin's own, for a proxy without that callback (or with several workers, where LiteLLM's
    multiprocess ``/metrics`` can't show them) and for Python services with no exporter.
    """

    enabled: bool = Field(
        True,
        description=(
            "Export the plugin's metrics (on the default registry, and on `metrics.port` if set). `false`: "
            "no collector, no port."
        ),
    )
    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description=(
            "Serve `GET /metrics` on this port of the plugin's own, for a proxy without the `prometheus` "
            "callback or a Python service with no exporter. `0`: any free port (see `status()`). Unset: no "
            "port of its own. A port in use stops the start with an error naming "
            "`failover_settings.metrics.port`."
        ),
    )
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description=(
            "Address the plugin's own metrics port binds (`0.0.0.0` to be scraped from other hosts)."
        ),
    )


class ControlSettings(_Strict):
    """Operator commands (drain, undrain, failover, failback, shift) sent to running replicas by
    the CLI, through Redis when ``redis_url`` is set and through the database's command table."""

    enabled: bool = Field(
        True,
        description=(
            "Apply operator commands (drain, undrain, failover, failback, shift, status) sent by the CLI to "
            "this replica."
        ),
    )
    poll_interval_s: float = Field(
        1.0,
        gt=0,
        description=(
            "Seconds between polls of `failover_commands`: the most a command sent through the database "
            "waits before this replica applies it."
        ),
    )
    command_ttl_s: float = Field(
        300.0,
        gt=0,
        description=(
            "A command older than this when a replica receives it is not applied (answered `expired`); also "
            "the lifetime of acknowledgement keys in Redis."
        ),
    )
    heartbeat_interval_s: float = Field(
        5.0,
        gt=0,
        description=(
            "How often a replica tells the CLI it is listening; after three missed beats the CLI stops "
            "waiting for its answers."
        ),
    )
    restore_on_start: bool = Field(
        True, description="A starting replica takes over the standing drains and planned failovers."
    )


FailbackMode = Literal["auto", "manual"]


class FailbackSettings(_Strict):
    """How traffic comes back to a recovered primary tier, and to a node recovering inside a
    tier (slow start, after Envoy's ``slow_start``): held down, then ramped in steps."""

    mode: FailbackMode = Field(
        "auto",
        description=(
            "`auto`: a recovered primary tier ramps back after `failback.hold_down_s`; `manual`: the group "
            "stays on the standby until `failback(group)` / `litellm-failover failback GROUP`."
        ),
    )
    hold_down_s: float = Field(
        30.0,
        ge=0,
        description=(
            "The primary must be routable without a break this long before traffic starts coming back (any "
            "ejection or drain restarts the count)."
        ),
    )
    ramp_steps: list[float] = Field(
        default_factory=lambda: [10.0, 50.0, 100.0],
        description=(
            "Percent of the group's new requests the primary tier gets at each failback step, and the weight"
            " factor of a slow start; strictly increasing, each in (0, 100], ending at 100. `[100]` brings "
            "traffic back at once."
        ),
    )
    step_interval_s: float = Field(30.0, gt=0, description="Seconds per ramp step (failback and slow start).")
    abort_errors: int = Field(
        3,
        ge=1,
        description=(
            "Failed attempts (5xx, timeouts, refused connections, cut streams) on the ramping deployments "
            "within one step that abort the ramp and eject them again."
        ),
    )
    slow_start: bool = Field(
        True,
        description=(
            "Slow-start a deployment that recovers inside the serving tier (weight x each ramp step in turn)."
        ),
    )

    @field_validator("ramp_steps")
    @classmethod
    def _valid_steps(cls, value: list[float]) -> list[float]:
        from litellm_failover.switching.steps import check_steps  # lazy: switching imports settings

        return list(check_steps(value))


class DrainSettings(_Strict):
    """Graceful drain: in-flight work finishes, new work goes elsewhere."""

    timeout_s: float = Field(
        300.0,
        gt=0,
        description=(
            "A drain waits this long for in-flight work; what still runs is then counted as cut (the "
            "deployment stays drained)."
        ),
    )
    in_flight_ttl_s: float = Field(
        900.0,
        gt=0,
        description=(
            "An attempt with no end signal after this long is forgotten (counted as `expired`): a lost "
            "signal never holds a drain."
        ),
    )


class ShiftSettings(_Strict):
    """Canary shifts (``shift(group, to, steps, interval_s)``)."""

    abort_errors: int = Field(
        3,
        ge=1,
        description=(
            "Failed attempts on a canary shift's target within one step that stop the shift and roll it back."
        ),
    )


InexactContinuation = Literal["best_effort", "error"]


class StreamSettings(_Strict):
    """Mid-stream failover: a stream that breaks after its first chunks continues on
    another healthy deployment, and the client sees one unbroken stream."""

    resume: bool = Field(
        True,
        description=(
            "Continue a broken stream on another healthy deployment. `false`: a break (including a made-up "
            "finish or a stall) ends the stream with an error."
        ),
    )
    max_resumes: int = Field(
        2,
        ge=0,
        description=(
            "Continuations one stream may start (a continuation that fails to start counts); a break after "
            "the last ends the stream with an error."
        ),
    )
    inter_token_timeout_s: float | None = Field(
        30.0,
        gt=0,
        description=(
            "A stream that sends no chunk for this long (after its first) is broken and continues elsewhere;"
            " `null`: no limit."
        ),
    )
    inexact_continuation: InexactContinuation = Field(
        "error",
        description=(
            "When only deployments with no exact continuation are left (OpenAI, Azure, OpenAI-compatible, "
            "TGI): `error` ends the stream with an error, `best_effort` continues it as well as the API "
            "allows."
        ),
    )


class ChaosSettings(_Strict):
    """Fault injection for drills: errors, added latency and stream cuts on chosen
    deployments, started with ``litellm-failover chaos inject``. Off unless enabled here, so a
    production config that does not say so refuses every chaos command."""

    enabled: bool = Field(
        False,
        description=(
            "Accept `litellm-failover chaos inject` / `chaos clear` (and `plugin.chaos_inject` / "
            '`chaos_clear`) on this replica. Off: every chaos command is refused ("chaos is disabled: set '
            'failover_settings.chaos.enabled: true") and nothing is injected. Enable it on staging, not in '
            "production."
        ),
    )
    max_duration_s: float = Field(
        3600.0,
        gt=0,
        description=(
            "Longest a fault may last; a `--for` or `--until` further away is refused by the replica."
        ),
    )


class GroupSettings(_Strict):
    strategy: Strategy | None = Field(
        None, description="Strategy for one model group; unset: the top-level `strategy`."
    )
    in_tier: InTierStrategy | None = Field(
        None, description="In-tier choice for one model group; unset: the top-level `in_tier`."
    )
    failback: FailbackMode | None = Field(
        None, description="`auto` or `manual` failback for one model group; unset: `failback.mode`."
    )


class FailoverSettings(_Strict):
    """The top-level ``failover_settings`` block of config.yaml, or the ``settings`` of ``attach``."""

    strategy: Strategy = Field(
        "primary-standby",
        description=(
            "Default strategy for every group: `primary-standby` (tiers by `litellm_params.order`; the best "
            "tier with a routable deployment takes all traffic), `round-robin` (in turn, skipping "
            "unhealthy), `weighted` (static weight x dynamic score)."
        ),
    )
    in_tier: InTierStrategy = Field(
        "weighted", description="How `primary-standby` chooses inside a tier: `weighted` or `round-robin`."
    )
    groups: dict[str, GroupSettings] = Field(
        default_factory=dict, description="Per model group overrides, keyed by `model_name`."
    )
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description=(
            "Where events and deployment state go: any SQLAlchemy async URL (`postgresql+asyncpg://...` for "
            "fleets; `postgresql://` is accepted and switched to asyncpg). Created and migrated on first "
            "start. In the proxy, `os.environ/NAME` reads it from the environment."
        ),
    )
    instance_id: str | None = Field(
        None,
        description=(
            "Written into every event, so a fleet's shared events table says which replica decided. Unset: "
            "`<host>-<pid>-<random>`."
        ),
    )
    panic_mode: bool = Field(
        True,
        description=(
            "When every deployment of a group is out, route to all of them (by static weight, tiers kept) "
            "rather than refuse every request."
        ),
    )
    keep_litellm_cooldowns: bool = Field(
        False,
        description=(
            "Keep LiteLLM's own cooldown (`allowed_fails`, `cooldown_time`) as an extra filter: the plugin "
            "then picks only among deployments LiteLLM has not cooled down."
        ),
    )
    health: HealthSettings = Field(default_factory=HealthSettings)
    outlier: OutlierSettings = Field(default_factory=OutlierSettings)
    weights: WeightSettings = Field(default_factory=WeightSettings)
    writer: WriterSettings = Field(default_factory=WriterSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    redis_url: str | None = Field(
        None,
        description=(
            "Redis URL shared by every proxy replica of a fleet (`redis://[:password@]host:6379/0`, "
            "`rediss://` for TLS; `os.environ/NAME` in the proxy). Unset: each replica acts alone."
        ),
    )
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


class DeploymentFailoverConfig(_Strict):
    """``model_info.failover`` of one deployment: plugin-only fields."""

    provider: ProviderKind | None = Field(
        None,
        description=(
            "Endpoint kind when the model prefix does not say: `vllm`, `sglang`, `tgi`, `openai-compatible`,"
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
            "Without it, there are no GPU checks and the engine's KV cache stands in."
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

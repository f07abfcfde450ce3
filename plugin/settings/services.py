"""The plugin's background services: the store writer, sessions, the fleet link, metrics and the
operator control plane."""

from __future__ import annotations

from pydantic import Field

from litellm_failover.settings.base import StrictModel


class WriterSettings(StrictModel):
    """The batched, bounded writer that keeps SQL off the hot path."""

    max_buffer: int = Field(10_000, ge=1, description="Rows held while the database is away; more drop.")
    batch_size: int = Field(200, ge=1, description="Rows per INSERT batch.")
    flush_interval_s: float = Field(0.2, gt=0, description="Seconds between flushes.")
    retry_backoff_max_s: float = Field(5.0, gt=0, description="Longest wait between retries when down.")


class SessionSettings(StrictModel):
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


class FleetSettings(StrictModel):
    """Sharing what one proxy replica learns with the others through Redis (`redis_url`)."""

    channel: str = Field("litellm_failover", min_length=1, description="Pub/sub channel and key prefix.")
    key_ttl_s: float = Field(
        300.0, gt=0, description="Lifetime of the state keys a replica that starts later reads."
    )
    reconnect_max_s: float = Field(5.0, gt=0, description="Longest wait between Redis reconnect attempts.")
    operation_timeout_s: float = Field(1.0, gt=0, description="Redis calls slower than this count as failed.")


class MetricsSettings(StrictModel):
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


class ControlSettings(StrictModel):
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

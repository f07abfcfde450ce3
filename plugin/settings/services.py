"""The plugin's background services: the store writer, sessions, the fleet link, metrics and the
operator control plane."""

from __future__ import annotations

from pydantic import Field

from litellm_failover.settings.base import StrictModel


class WriterSettings(StrictModel):
    """The batched, bounded writer that keeps SQL off the hot path."""

    max_buffer: int = Field(
        10_000,
        ge=1,
        description=(
            "Rows held while the database is unreachable, per kind (events, messages and sessions each "
            "up to this many; message text also has a bound on its characters); beyond it new rows are "
            "dropped, counted and warned about, never blocking."
        ),
    )
    batch_size: int = Field(200, ge=1, description="Rows per INSERT batch.")
    flush_interval_s: float = Field(0.2, gt=0, description="Seconds between flushes.")
    retry_backoff_max_s: float = Field(
        5.0, gt=0, description="Longest wait between reconnection attempts while the database is down."
    )


class SessionSettings(StrictModel):
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


class FleetSettings(StrictModel):
    """Sharing what one proxy replica learns with the others through Redis (`redis_url`)."""

    channel: str = Field(
        "litellm_failover",
        min_length=1,
        description=(
            "Pub/sub channel and key prefix (`<channel>:state:*`) in Redis; replicas of one fleet must share"
            " it. Left out, the proxy reads `$LITELLM_FAILOVER_CHANNEL` (the CLI's name too)."
        ),
    )
    key_ttl_s: float = Field(
        300.0, gt=0, description="Lifetime of the state keys that a replica starting later reads."
    )
    reconnect_max_s: float = Field(5.0, gt=0, description="Longest wait between Redis reconnection attempts.")
    operation_timeout_s: float = Field(
        1.0, gt=0, description="A Redis call slower than this counts as failed; routing never waits for it."
    )


class MetricsSettings(StrictModel):
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


class ControlSettings(StrictModel):
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

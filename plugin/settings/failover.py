"""``failover_settings``: the top-level block, its routing strategy per group, and its parsing.

``parse_settings`` validates the block once, at start-up; an error names the key path and value.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from litellm_failover.settings.alerts import AlertSettings
from litellm_failover.settings.base import FailoverConfigError, StrictModel, config_error
from litellm_failover.settings.health import HealthSettings, OutlierSettings, WeightSettings
from litellm_failover.settings.rescue import RescueSettings
from litellm_failover.settings.secret_url import SecretUrlField
from litellm_failover.settings.services import (
    ControlSettings,
    FleetSettings,
    MetricsSettings,
    RetentionSettings,
    SessionSettings,
    WriterSettings,
)
from litellm_failover.settings.traffic import (
    ChaosSettings,
    DrainSettings,
    FailbackMode,
    FailbackSettings,
    ShiftSettings,
    StreamSettings,
)

Strategy = Literal["primary-standby", "round-robin", "weighted"]
InTierStrategy = Literal["weighted", "round-robin"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./litellm_failover.db"


class GroupSettings(StrictModel):
    strategy: Strategy | None = Field(
        None, description="Strategy for one model group; unset: the top-level `strategy`."
    )
    in_tier: InTierStrategy | None = Field(
        None, description="In-tier choice for one model group; unset: the top-level `in_tier`."
    )
    failback: FailbackMode | None = Field(
        None, description="`auto` or `manual` failback for one model group; unset: `failback.mode`."
    )


class FailoverSettings(StrictModel):
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
    database_url: SecretUrlField = Field(
        DEFAULT_DATABASE_URL,
        repr=False,
        description=(
            "Where events and deployment state go: any SQLAlchemy async URL (`postgresql+asyncpg://...` for "
            "fleets; `postgresql://` is accepted and switched to asyncpg). Created and migrated on first "
            "start. In the proxy, `os.environ/NAME` reads it from the environment; left out, the proxy reads "
            "`$LITELLM_FAILOVER_DATABASE_URL` (the CLI's name too), else uses the default SQLite file."
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
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    redis_url: SecretUrlField | None = Field(
        None,
        repr=False,
        description=(
            "Redis URL shared by every proxy replica of a fleet (`redis://[:password@]host:6379/0`, "
            "`rediss://` for TLS; `os.environ/NAME` in the proxy). Left out, the proxy reads "
            "`$LITELLM_FAILOVER_REDIS_URL` (the CLI's name too); if unset, each replica acts alone."
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
    rescue: RescueSettings = Field(default_factory=RescueSettings)
    chaos: ChaosSettings = Field(default_factory=ChaosSettings)

    def group_strategy(self, group: str) -> tuple[Strategy, InTierStrategy]:
        override = self.groups.get(group)
        strategy = (override.strategy if override else None) or self.strategy
        in_tier = (override.in_tier if override else None) or self.in_tier
        return strategy, in_tier

    def group_failback(self, group: str) -> FailbackMode:
        override = self.groups.get(group)
        return (override.failback if override else None) or self.failback.mode


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
        raise config_error(root, FailoverSettings, exc) from None

"""``failover_settings``: the top-level block, its routing strategy per group, and its parsing.

``parse_settings`` validates the block once, at start-up; an error names the key path and value.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from litellm_failover.settings.alerts import AlertSettings
from litellm_failover.settings.base import FailoverConfigError, StrictModel, format_error
from litellm_failover.settings.health import HealthSettings, OutlierSettings, WeightSettings
from litellm_failover.settings.services import (
    ControlSettings,
    FleetSettings,
    MetricsSettings,
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
    strategy: Strategy | None = None
    in_tier: InTierStrategy | None = None
    failback: FailbackMode | None = None


class FailoverSettings(StrictModel):
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
        raise FailoverConfigError(format_error(root, exc)) from None

"""``failover_settings`` and ``model_info.failover``: validated once, at start-up.

One module per part of the configuration: ``failover`` the top-level block and its parsing,
``health`` probes, outlier detection, weights and the per-deployment block, ``services`` the
background services, ``alerts`` notifications, ``traffic`` failback, drains, shifts, stream
resumes and chaos; ``base`` what they share. Import from here: this is the settings' public API.
"""

from __future__ import annotations

from litellm_failover.settings.alerts import ALERT_EVENT_TYPES, AlertSettings
from litellm_failover.settings.base import FailoverConfigError
from litellm_failover.settings.failover import (
    DEFAULT_DATABASE_URL,
    FailoverSettings,
    GroupSettings,
    InTierStrategy,
    Strategy,
    parse_settings,
)
from litellm_failover.settings.health import (
    DeploymentFailoverConfig,
    GpuSource,
    HealthOverrides,
    HealthSettings,
    OutlierSettings,
    ProviderKind,
    WeightSettings,
    parse_deployment_config,
)
from litellm_failover.settings.rescue import RescueSettings
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
    InexactContinuation,
    ShiftSettings,
    StreamSettings,
)

__all__ = [
    "ALERT_EVENT_TYPES",
    "DEFAULT_DATABASE_URL",
    "AlertSettings",
    "ChaosSettings",
    "ControlSettings",
    "DeploymentFailoverConfig",
    "DrainSettings",
    "FailbackMode",
    "FailbackSettings",
    "FailoverConfigError",
    "FailoverSettings",
    "FleetSettings",
    "GpuSource",
    "GroupSettings",
    "HealthOverrides",
    "HealthSettings",
    "InTierStrategy",
    "InexactContinuation",
    "MetricsSettings",
    "OutlierSettings",
    "ProviderKind",
    "RescueSettings",
    "RetentionSettings",
    "SessionSettings",
    "ShiftSettings",
    "Strategy",
    "StreamSettings",
    "WeightSettings",
    "WriterSettings",
    "parse_deployment_config",
    "parse_settings",
]

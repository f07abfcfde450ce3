"""Read LiteLLM's model list into the plugin's own view of each deployment.

LiteLLM's fields keep their meaning: ``model_info.id`` is the deployment id, ``litellm_params.order``
the tier (1 = primary), ``litellm_params.weight`` the static weight. Plugin-only fields live under
``model_info.failover`` and are validated here, so a bad one stops start-up with its key path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from litellm_failover.settings import (
    DeploymentFailoverConfig,
    FailoverConfigError,
    HealthSettings,
    parse_deployment_config,
)


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """What the plugin needs to know about one deployment; immutable."""

    deployment_id: str
    group: str
    tier: int
    weight: float
    model: str
    litellm_params: Mapping[str, Any] = field(repr=False)
    failover: DeploymentFailoverConfig
    health: HealthSettings
    # How configuration errors name it (``deployment_label``); empty when built by hand.
    where: str = field(default="", repr=False, compare=False)

    @property
    def api_base(self) -> str | None:
        value = self.litellm_params.get("api_base")
        return str(value) if value else None


def _number(value: Any, where: str, *, minimum: float, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FailoverConfigError(f"invalid configuration: {where}: must be a number (got {value!r})")
    if value < minimum:
        raise FailoverConfigError(f"invalid configuration: {where}: must be >= {minimum} (got {value!r})")
    return float(value)


def _merged_health(base: HealthSettings, config: DeploymentFailoverConfig) -> HealthSettings:
    overrides = config.health.model_dump(exclude_none=True)
    return base.model_copy(update=overrides) if overrides else base


def deployment_label(index: int, deployment_id: object) -> str:
    """How an error names a deployment: by the ``model_info.id`` an operator wrote and greps for,
    then its key path (an id LiteLLM generated means little; the position finds it in the file);
    by position alone when there is no id yet. Errors append ``.key`` to it."""
    position = f"model_list[{index}]"
    return f"deployment {str(deployment_id)!r}: {position}" if deployment_id else position


def read_deployment(
    index: int, raw: Mapping[str, Any], health: HealthSettings, *, ids_assigned: bool = True
) -> DeploymentSpec:
    """One deployment. ``ids_assigned=False`` reads a config file before LiteLLM gives each
    deployment without a ``model_info.id`` its id; such a deployment is then named by position."""
    params = raw.get("litellm_params") or {}
    info = raw.get("model_info") or {}
    deployment_id = info.get("id")
    where = deployment_label(index, deployment_id)
    if not deployment_id:
        if ids_assigned:
            raise FailoverConfigError(
                f"invalid configuration: {where}.model_info.id: missing (LiteLLM sets it)"
            )
        deployment_id = where
    config = parse_deployment_config(info.get("failover"), f"{where}.model_info.failover")
    tier = int(_number(params.get("order"), f"{where}.litellm_params.order", minimum=1, default=1))
    weight = _number(params.get("weight"), f"{where}.litellm_params.weight", minimum=0, default=1.0)
    return DeploymentSpec(
        deployment_id=str(deployment_id),
        group=str(raw.get("model_name")),
        tier=tier,
        weight=weight,
        model=str(params.get("model", "")),
        litellm_params=dict(params),
        failover=config,
        health=_merged_health(health, config),
        where=where,
    )


def read_model_list(model_list: Iterable[Mapping[str, Any]], health: HealthSettings) -> list[DeploymentSpec]:
    specs = [read_deployment(i, raw, health) for i, raw in enumerate(model_list)]
    check_unique_ids(specs)
    return specs


def check_unique_ids(specs: Iterable[DeploymentSpec]) -> None:
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if spec.deployment_id in seen:
            raise FailoverConfigError(
                f"invalid configuration: model_list[{i}].model_info.id: duplicate id "
                f"{spec.deployment_id!r} (also model_list[{seen[spec.deployment_id]}])"
            )
        seen[spec.deployment_id] = i

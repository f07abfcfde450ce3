"""The JSON schema editors use to check config.yaml as it is typed (``litellm-failover config schema``).

A schema of ``failover_settings`` alone would flag every other key of config.yaml, since an
editor applies a schema to the whole file. So the published schema describes the file: LiteLLM's
own keys stay open (any value), ``failover_settings`` is ``FailoverSettings`` and each
``model_list[].model_info.failover`` is ``DeploymentFailoverConfig``, both exactly as pydantic's
``model_json_schema`` gives them (under ``$defs``), so they cannot drift from the validation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from litellm_failover.settings.failover import FailoverSettings
from litellm_failover.settings.health import DeploymentFailoverConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow", title="model_info")

    failover: DeploymentFailoverConfig | None = Field(
        None, description="litellm-failover's settings for this deployment."
    )


class DeploymentEntry(BaseModel):
    model_config = ConfigDict(extra="allow", title="Deployment")

    model_info: ModelInfo | None = None


class ProxyConfigFile(BaseModel):
    model_config = ConfigDict(extra="allow", title="LiteLLM proxy config.yaml (litellm-failover's parts)")

    failover_settings: FailoverSettings | None = Field(None, description="litellm-failover's settings.")
    model_list: list[DeploymentEntry] | None = None


def config_schema() -> dict[str, Any]:
    """The schema of a proxy config.yaml as far as the plugin reads it (keys sorted: a stable file)."""
    return {"$schema": SCHEMA_DIALECT, **ProxyConfigFile.model_json_schema()}

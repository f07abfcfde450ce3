"""Build one probe function per deployment from its provider adapter.

The plugin core never names a provider: it asks ``providers`` for the adapter of the deployment's
kind (inferred from the LiteLLM model prefix or set in ``model_info.failover.provider``) and keeps
the prober the adapter makes. Deployments with ``probe: false`` get none and rely on traffic.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from litellm_failover.deployments import DeploymentSpec
from litellm_failover.prober import ProbeFn
from litellm_failover.providers import get_adapter, infer_kind
from litellm_failover.providers.runner import run_probe


def build_probes(specs: Sequence[DeploymentSpec]) -> dict[str, ProbeFn]:
    probes: dict[str, ProbeFn] = {}
    for index, spec in enumerate(specs):
        where = f"model_list[{index}]"
        kind = infer_kind(dict(spec.litellm_params), spec.failover.provider, where=where)
        if not spec.failover.probe:
            continue
        adapter = get_adapter(kind)
        target = adapter.default_target(
            spec.deployment_id,
            dict(spec.litellm_params),
            spec.failover,
            spec.health.thresholds(),
            where=where,
        )
        probes[spec.deployment_id] = functools.partial(run_probe, adapter.new_prober(target))
    return probes

"""Build one probe function per deployment from its provider adapter.

The plugin core never names a provider: ``providers.build_prober`` infers the kind (LiteLLM model
prefix, or ``model_info.failover.provider``) and returns a prober that keeps its own memory between
rounds. Deployments with ``probe: false`` get none and rely on traffic.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from litellm_failover.deployments import DeploymentSpec
from litellm_failover.prober import ProbeFn
from litellm_failover.providers import build_prober, infer_kind
from litellm_failover.providers.runner import run_probe


def build_probes(specs: Sequence[DeploymentSpec]) -> dict[str, ProbeFn]:
    probes: dict[str, ProbeFn] = {}
    for index, spec in enumerate(specs):
        where = f"model_list[{index}]"
        params = dict(spec.litellm_params)
        infer_kind(params, spec.failover.provider, f"{where}.model_info.failover.provider")
        if not spec.failover.probe:
            continue
        prober = build_prober(
            spec.deployment_id, params, spec.failover, spec.health.thresholds(), where=where
        )
        probes[spec.deployment_id] = functools.partial(run_probe, prober)
    return probes

"""Build the probes: one per distinct probe target, shared by every deployment behind it.

The plugin core never names a provider: ``providers.build_target`` infers the kind (LiteLLM model
prefix, or ``model_info.failover.provider``) and the kind's adapter makes a prober that keeps its
own memory between rounds. Several deployments often sit behind the same server (LoRA adapters or
model names served by one vLLM, one GPU host's sidecar): when their targets are identical but for
the deployment id, one probe round is the truth for all of them, so they share it rather than
ask the same server the same questions N times. Deployments with ``probe: false`` get none.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from litellm_failover.deployments import DeploymentSpec
from litellm_failover.providers import build_target, get_adapter, infer_kind
from litellm_failover.providers.base import ProbeReport
from litellm_failover.providers.probe_client import ProbeClient
from litellm_failover.providers.runner import run_probe

# One probe round against one target, on the prober's shared HTTP client; never raises.
ProbeFn = Callable[[ProbeClient], Awaitable[ProbeReport]]


@dataclass(frozen=True, slots=True)
class SharedProbe:
    """One probe target and every deployment its rounds speak for (``Prober`` schedules these)."""

    deployment_ids: tuple[str, ...]
    probe: ProbeFn


def build_probes(specs: Sequence[DeploymentSpec]) -> list[SharedProbe]:
    groups: dict[object, tuple[list[str], ProbeFn]] = {}
    for index, spec in enumerate(specs):
        where = spec.where or f"model_list[{index}]"
        params = dict(spec.litellm_params)
        kind = infer_kind(params, spec.failover.provider, f"{where}.model_info.failover.provider")
        if not spec.failover.probe:
            continue
        target = build_target(
            spec.deployment_id, params, spec.failover, spec.health.thresholds(), where=where
        )
        # Same kind, same URLs, credentials and thresholds, same schedule: the same probe.
        key = (kind, dataclasses.replace(target, deployment_id=""), spec.health)
        if key in groups:
            groups[key][0].append(spec.deployment_id)
        else:
            prober = get_adapter(kind).new_prober(target)
            groups[key] = ([spec.deployment_id], functools.partial(run_probe, prober))
    return [SharedProbe(tuple(ids), probe) for ids, probe in groups.values()]

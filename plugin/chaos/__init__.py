"""Fault injection for drills on real deployments (issue 5, like Envoy's fault filter).

- ``faults``: the ``Fault`` model and the rules its input follows (shared by the CLI and replicas).
- ``injector``: ``ChaosInjector``, the active faults of one replica, the per-attempt draw, expiry,
  the ``chaos_injected`` / ``chaos_cleared`` / ``chaos_expired`` events.
- ``effects``: what a drawn fault does to an attempt (a LiteLLM error, a delay, a cut stream).

Operators start and stop faults with ``litellm-failover chaos inject`` / ``chaos clear`` (the
operator commands' transports, ``litellm_failover.control``), or ``plugin.chaos_inject(...)``.
Off unless ``failover_settings.chaos.enabled`` is true.
"""

from __future__ import annotations

from litellm_failover.chaos.faults import FAULT_KINDS, Fault, FaultInputError, parse_fault_args
from litellm_failover.chaos.injector import ChaosInjector

__all__ = ["FAULT_KINDS", "ChaosInjector", "Fault", "FaultInputError", "parse_fault_args"]

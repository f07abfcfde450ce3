"""Traffic switching: graceful drain, planned failover, failback ramps, slow start, canary shifts.

- ``SwitchingController`` (``controller``): the operator operations and the state behind them,
  fed by the core's health transitions and the attempts' outcomes; each change becomes a
  ``GroupPlan`` (``plan``) that the core builds the next immutable routing table from.
- ``InFlight`` (``inflight``): attempts in flight per deployment, what a drain waits for.
- ``OperatorError`` (``errors``): bad operator input, refused with nothing changed.

The controller is imported lazily: the routing table imports ``plan`` from here, and the
controller imports the core, which imports the routing table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litellm_failover.switching.errors import OperatorError
from litellm_failover.switching.inflight import InFlight

if TYPE_CHECKING:
    from litellm_failover.switching.controller import SwitchingController

__all__ = ["InFlight", "OperatorError", "SwitchingController"]


def __getattr__(name: str) -> Any:
    if name == "SwitchingController":
        from litellm_failover.switching.controller import SwitchingController

        return SwitchingController
    raise AttributeError(f"module 'litellm_failover.switching' has no attribute {name!r}")

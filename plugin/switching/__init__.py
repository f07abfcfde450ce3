"""Traffic switching: graceful drain, planned failover, failback ramps, slow start, canary shifts.

- ``SwitchingController`` (``controller``): decides. One immutable ``GroupState`` per group
  (``state``) on a ``Board`` (``board``); the operator verbs (``verbs``), the moves they share
  with the health transitions (``moves``) and time (``timers``). Every entry point returns
  ``Effects`` (``litellm_failover.actions``); each group's plan (``litellm_failover.plan``) is a
  pure function of its state, and the core builds the next immutable routing table from it.
- ``Switching`` (``wiring``): what the plugin holds: asks the controller, has the core apply.
- ``InFlightView`` (``ports``): the attempts-in-flight counts a drain waits for; the plugin passes
  in its request book (``litellm_failover.requests.RequestBook``).
- ``OperatorError`` (``errors``): bad operator input, refused with nothing changed.
"""

from __future__ import annotations

from litellm_failover.switching.controller import Decision, SwitchingController
from litellm_failover.switching.errors import OperatorError
from litellm_failover.switching.ports import CoreView, InFlightView
from litellm_failover.switching.wiring import Switching

__all__ = [
    "CoreView",
    "Decision",
    "InFlightView",
    "OperatorError",
    "Switching",
    "SwitchingController",
]

"""Rescue (issue 12 §1): no request waits on a node the plugin has given up on.

- ``interrupt``: the one LiteLLM-version-specific reach, how to fail an attempt in flight so
  that LiteLLM retries it;
- ``attempts``: the attempts in flight that have delivered nothing yet;
- ``rescuer``: the triggers (an ejection for not answering, a late first token), the caps, the
  ``request_rescued`` events.
"""

from __future__ import annotations

from litellm_failover.rescue.interrupt import AttemptInterrupted
from litellm_failover.rescue.rescuer import DeploymentEjected, FirstTokenTimeout, Rescuer, stopped_answering

__all__ = ["AttemptInterrupted", "DeploymentEjected", "FirstTokenTimeout", "Rescuer", "stopped_answering"]

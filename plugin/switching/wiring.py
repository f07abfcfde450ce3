"""``Switching``: what the plugin holds: the controller decides, the core applies, a task waits.

The thin wiring between ``SwitchingController`` (which returns ``Effects``) and whatever applies
them (``FailoverCore.apply``), plus the timer ``Driver``. It holds no switching state and makes no
decision: each method asks the controller, applies what came back, and returns the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from litellm_failover.actions import Effects
from litellm_failover.outlier import Outcome
from litellm_failover.switching.controller import Decision, SwitchingController
from litellm_failover.switching.timers import Driver


class Switching:
    def __init__(self, controller: SwitchingController, apply: Callable[[Effects], None]) -> None:
        self.controller = controller
        self._apply = apply
        self._driver = Driver(self.advance, controller.clock, controller.changed)

    async def start(self) -> None:
        await self._driver.start()

    async def stop(self) -> None:
        await self._driver.stop()

    # -- operator verbs (``OperatorError`` on bad input, nothing changed) -----------------

    def drain(self, deployment_id: str, *, timeout_s: float | None = None, source: str = "api") -> dict:
        return self._carry_out(self.controller.drain(deployment_id, timeout_s=timeout_s, source=source))

    def undrain(self, deployment_id: str, *, source: str = "api") -> dict:
        return self._carry_out(self.controller.undrain(deployment_id, source=source))

    def failover(self, group: str, *, source: str = "api") -> dict:
        return self._carry_out(self.controller.failover(group, source=source))

    def failback(self, group: str, *, source: str = "api") -> dict:
        return self._carry_out(self.controller.failback(group, source=source))

    def shift(
        self, group: str, to: str, steps: Sequence[float], interval_s: float, *, source: str = "api"
    ) -> dict:
        return self._carry_out(self.controller.shift(group, to, steps, interval_s, source=source))

    # -- what the request path and time report --------------------------------------------

    def on_failure(self, deployment_id: str, outcome: Outcome) -> None:
        self._apply(self.controller.on_failure(deployment_id, outcome))

    def attempt_ended(self, deployment_id: str) -> None:
        """The in-flight listener: an attempt on ``deployment_id`` ended or expired."""
        self._apply(self.controller.attempt_ended(deployment_id))

    def advance(self) -> float | None:
        deadline, effects = self.controller.advance()
        self._apply(effects)
        return deadline

    # -- inspection -----------------------------------------------------------------------

    def in_flight_counts(self) -> dict[str, int]:
        return self.controller.in_flight_counts()

    def ramp_factors(self) -> dict[str, float]:
        return self.controller.ramp_factors()

    def draining(self) -> frozenset[str]:
        return self.controller.draining()

    def status(self) -> dict[str, Any]:
        return self.controller.status()

    def decorate(self, status: dict[str, Any]) -> None:
        self.controller.decorate(status)

    def _carry_out(self, decision: Decision) -> dict:
        self._apply(decision.effects)
        return decision.result


__all__ = ["Switching"]

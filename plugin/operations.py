"""The plugin's operator API: traffic switching (drain, failover, failback, canary shifts) and
fault injection, as methods of ``FailoverPlugin``. Thin on purpose: each hands its arguments to the
part that owns the operation (``switching``, ``chaos``), which validates them and raises
``OperatorError`` on bad input; the CLI, the control plane and Python callers all come through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litellm_failover.chaos import ChaosInjector
    from litellm_failover.switching import Switching


class OperatorOperations:
    switching: Switching
    chaos: ChaosInjector

    # -- traffic switching (operator operations; see litellm_failover.switching) ----------

    def drain(self, deployment_id: str, *, timeout_s: float | None = None, source: str = "api") -> dict:
        """No new requests to ``deployment_id``; in-flight ones finish (``OperatorError`` on bad input)."""
        return self.switching.drain(deployment_id, timeout_s=timeout_s, source=source)

    def undrain(self, deployment_id: str, *, source: str = "api") -> dict:
        return self.switching.undrain(deployment_id, source=source)

    def failover(self, group: str, *, source: str = "api") -> dict:
        """Planned failover: drain ``group``'s primary tier; the standby serves until failback."""
        return self.switching.failover(group, source=source)

    def failback(self, group: str, *, source: str = "api") -> dict:
        return self.switching.failback(group, source=source)

    def shift(
        self, group: str, to: str, steps: Sequence[float], interval_s: float, *, source: str = "api"
    ) -> dict:
        """Canary: move ``steps`` percent of ``group``'s traffic to ``to``, a step per interval."""
        return self.switching.shift(group, to, steps, interval_s, source=source)

    def switching_status(self) -> dict[str, Any]:
        return self.switching.status()

    def in_flight_counts(self) -> dict[str, int]:
        return self.switching.in_flight_counts()

    def ramp_factors(self) -> dict[str, float]:
        return self.switching.ramp_factors()

    def draining(self) -> frozenset[str]:
        return self.switching.draining()

    # -- fault injection (drills; see litellm_failover.chaos) ------------------------------

    def chaos_inject(
        self,
        deployment_id: str,
        kind: str,
        probability: float,
        *,
        duration_s: float | str | None = None,
        until: Any = None,
        status: int | None = None,
        delay_s: float | str | None = None,
        after_chunks: int | None = None,
        source: str = "api",
        issued_by: str = "",
    ) -> dict:
        """Inject ``kind`` (error, latency, stream_cut) into ``probability`` of the attempts on
        ``deployment_id`` until ``until`` or for ``duration_s``. ``OperatorError``, nothing
        injected, when chaos is disabled, the deployment unknown or the input bad."""
        return self.chaos.inject(
            deployment_id,
            kind,
            probability,
            duration_s=duration_s,
            until=until,
            status=status,
            delay_s=delay_s,
            after_chunks=after_chunks,
            source=source,
            issued_by=issued_by,
        )

    def chaos_clear(
        self, deployment_id: str | None = None, *, source: str = "api", issued_by: str = ""
    ) -> dict:
        """End the faults on ``deployment_id`` (None: on every deployment)."""
        return self.chaos.clear(deployment_id, source=source, issued_by=issued_by)

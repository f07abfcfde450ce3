"""The switching events: one place that words them, and the outbox the core applies.

``Emitter`` does not reach the core: each event, and each ejection or rebuild a decision needs,
becomes an action (``litellm_failover.actions``) queued in order; the controller's entry point
hands them back with ``take()`` as its ``Effects``, and the core (through the plugin's wiring)
applies them once the decision is complete.

Every event carries what an operator (or an alert) needs without reading code: the group, the
deployment where there is one, a sentence, and details with stable keys (``step``, ``percent``,
``in_flight``, ``cut``, ``via`` = who asked: ``api``, ``control``, ``auto``, a health source).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from litellm_failover.actions import Action, Announce, Effects, Eject, Rebuild
from litellm_failover.events import EventType
from litellm_failover.switching.ramp import Stepper, Transfer


class Emitter:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()  # events decided, by type, since start
        self._pending: list[Action] = []

    def __call__(
        self, kind: EventType, group: str, reason: str, *, deployment_id: str | None = None, **details: Any
    ) -> None:
        self.counts[kind.value] += 1
        self._pending.append(Announce(kind.value, group, reason, deployment_id, details))

    def eject(self, deployment_id: str, reason: str, *, source: str, **details: Any) -> None:
        self._pending.append(Eject(deployment_id, reason, source, details))

    def rebuild(self, group: str, *, source: str, reason: str, deployment_id: str | None = None) -> None:
        self._pending.append(Rebuild(group, source, reason, deployment_id))

    def take(self) -> Effects:
        """Everything decided since the last ``take``, in order; the queue is empty after."""
        effects, self._pending = tuple(self._pending), []
        return effects

    def step(self, transfer: Transfer, admitted: Iterable[str], why: str = "") -> None:
        """``failback_step`` / ``shift_step``: the step a group-level ramp has just taken."""
        stepper = transfer.stepper
        failback = transfer.kind == "failback"
        self(
            EventType.FAILBACK_STEP if failback else EventType.SHIFT_STEP,
            transfer.group,
            f"{'failback' if failback else 'shift'} to {transfer.label}: step {stepper.index + 1} of "
            f"{len(stepper.steps)}, {stepper.percent:g}%" + (f" ({why})" if why else ""),
            step=stepper.index + 1,
            steps=list(stepper.steps),
            percent=stepper.percent,
            to=transfer.label,
            deployments=sorted(admitted),
            via=transfer.via,
            source=transfer.kind,
        )

    def completed(self, transfer: Transfer, reason: str, duration_s: float) -> None:
        """``failback_completed`` / ``shift_completed``: the last step (100 %) was taken."""
        self(
            EventType.FAILBACK_COMPLETED if transfer.kind == "failback" else EventType.SHIFT_COMPLETED,
            transfer.group,
            reason,
            to=transfer.label,
            deployments=sorted(transfer.target),
            duration_s=duration_s,
            via=transfer.via,
            source=transfer.kind,
        )

    def slow_step(self, deployment_id: str, group: str, stepper: Stepper) -> None:
        """``ramp_step``: a deployment's slow-start factor has just changed."""
        self(
            EventType.RAMP_STEP,
            group,
            f"slow start of {deployment_id}: step {stepper.index + 1} of {len(stepper.steps)}, "
            f"weight x {stepper.share:g}",
            deployment_id=deployment_id,
            step=stepper.index + 1,
            steps=list(stepper.steps),
            percent=stepper.percent,
            factor=stepper.share,
        )

    def slow_aborted(self, deployment_id: str, group: str, stepper: Stepper, reason: str) -> None:
        """``ramp_aborted`` of a slow start: the deployment is (or is being) ejected again."""
        self(
            EventType.RAMP_ABORTED,
            group,
            reason,
            deployment_id=deployment_id,
            scope="deployment",
            step=stepper.index + 1,
            percent=stepper.percent,
            errors=stepper.errors,
            ejected=[deployment_id],
        )

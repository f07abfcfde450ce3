"""``SwitchingController``: drains, planned failovers, failback ramps, slow start, canary shifts.

It decides and never acts. Its state is one immutable ``GroupState`` per group (``state``) plus
the drains, kept on a ``Board``; each table the core builds asks it for the group's plan
(``plan``, a pure function of that state); and every entry point returns ``Effects`` (events,
ejections, rebuilds, in order) for the core to apply once the decision is complete. What moves it:

- the operator: ``drain``, ``undrain``, ``failover``, ``failback``, ``shift`` (``verbs``; bad
  input raises ``OperatorError`` before anything changes), each a ``Decision``: the answer and
  its effects;
- the core's health transitions (``on_transition``): a primary that comes back is held down
  (auto) or held for ``failback(group)`` (manual); a deployment that comes back inside the
  serving tier slow-starts; a ramping deployment that is ejected aborts its ramp;
- attempt outcomes (``on_failure``): ``abort_errors`` failed attempts within one step abort a
  ramp (and eject the deployments that failed) or roll a shift back;
- attempt ends (``attempt_ended``): the last in-flight attempt of a draining deployment
  completes its drain;
- time (``advance``, see ``timers``): ramp and shift steps, hold-downs, drain timeouts.

Every table rebuild it causes that changes the serving set is a ``failover`` event whose
``details["source"]`` is ``drain``, ``manual`` (planned failover), ``failback``, ``ramp`` (a ramp
aborted) or ``shift``. ``Switching`` (``wiring``) is what the plugin holds: it applies the effects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from litellm_failover.actions import NOTHING, Effects
from litellm_failover.health import Transition
from litellm_failover.outlier import Outcome
from litellm_failover.plan import GroupPlan
from litellm_failover.settings import FailoverSettings
from litellm_failover.switching import timers, verbs
from litellm_failover.switching.board import Board
from litellm_failover.switching.moves import abort_transfer, came_back, rollback_shift, settle, went_out
from litellm_failover.switching.ports import CoreView, InFlightView


class Decision(NamedTuple):
    """An operator verb's answer (what the operator sees) and what the core must do for it."""

    result: dict[str, Any]
    effects: Effects


class SwitchingController:
    def __init__(self, core: CoreView, settings: FailoverSettings, inflight: InFlightView) -> None:
        self.board = Board(core, settings, inflight)

    @property
    def clock(self) -> Callable[[], float]:
        return self.board.clock

    @property
    def changed(self) -> asyncio.Event:
        """Set whenever deadlines may have moved: what the timer driver waits on."""
        return self.board.changed

    # -- the planner (``core.attach_planner``) --------------------------------------------

    def plan(self, group: str) -> GroupPlan:
        return self.board.plan(group)

    def on_transition(self, transition: Transition) -> Effects:
        came = transition.to_state.routable and not transition.from_state.routable
        left = transition.from_state.routable and not transition.to_state.routable
        if not (came or left):
            return NOTHING
        now = self.board.clock()
        if came:
            came_back(self.board, transition.deployment_id, now, via=transition.source, operator=False)
        else:
            went_out(self.board, transition, now)
        self.board.refresh()
        return self.board.emit.take()  # no rebuild: the core rebuilds after every transition

    # -- outcomes, attempt ends, time -----------------------------------------------------

    def on_failure(self, deployment_id: str, outcome: Outcome) -> Effects:
        """A failed attempt (counted once per request): errors during a step stop the ramp."""
        board = self.board
        if not outcome.counts_toward_ejection or deployment_id not in board.core.snapshot.deployments:
            return NOTHING
        now = board.clock()
        failback = board.settings.failback
        group = board.spec(deployment_id).group
        state = board.state(group)
        slow = state.slow.get(deployment_id)
        if slow is not None:
            slow = slow.with_error(deployment_id)
            if slow.errors < failback.abort_errors:
                board.put(group, state.with_slow(deployment_id, slow))
            else:
                board.put(group, state.without_slow({deployment_id}))
                reason = (
                    f"slow start of {deployment_id} aborted: "
                    f"{slow.errors} failed attempts at {slow.percent:g}%"
                )
                board.emit.slow_aborted(deployment_id, group, slow, reason)
                settle(board, group)
                if board.routable(deployment_id):
                    board.emit.eject(deployment_id, reason, source="ramp")
                else:
                    board.emit.rebuild(group, source="ramp", reason=reason, deployment_id=deployment_id)
        transfer = board.state(group).transfer
        if transfer is None or deployment_id not in transfer.target:
            return board.emit.take()
        transfer = transfer.stepped(transfer.stepper.with_error(deployment_id))
        board.put(group, replace(board.state(group), transfer=transfer))
        stepper = transfer.stepper
        limit = failback.abort_errors if transfer.kind == "failback" else board.settings.shift.abort_errors
        if stepper.errors < limit:
            return board.emit.take()
        why = f"{stepper.errors} failed attempts at step {stepper.index + 1} ({stepper.percent:g}%)"
        if transfer.kind == "failback":
            reason = abort_transfer(board, group, transfer, now, why, eject=True)
            board.emit.rebuild(group, source="ramp", reason=reason)
        else:
            reason = rollback_shift(board, group, transfer, now, why)
            board.emit.rebuild(group, source="shift", reason=reason)
        return board.emit.take()

    def attempt_ended(self, deployment_id: str) -> Effects:
        """An attempt on ``deployment_id`` ended (or expired): its drain may be complete."""
        self.board.drains.settle(deployment_id, self.board.clock())
        return self.board.emit.take()

    def advance(self) -> tuple[float | None, Effects]:
        """Everything due by now, and when something is next due (None: nothing pending)."""
        deadline = timers.advance(self.board)
        return deadline, self.board.emit.take()

    # -- operator verbs -------------------------------------------------------------------

    def drain(self, deployment_id: str, *, timeout_s: float | None = None, source: str = "api") -> Decision:
        return self._decide(verbs.drain, deployment_id, timeout_s=timeout_s, source=source)

    def undrain(self, deployment_id: str, *, source: str = "api") -> Decision:
        return self._decide(verbs.undrain, deployment_id, source=source)

    def failover(self, group: str, *, source: str = "api") -> Decision:
        return self._decide(verbs.failover, group, source=source)

    def failback(self, group: str, *, source: str = "api") -> Decision:
        return self._decide(verbs.failback, group, source=source)

    def shift(
        self, group: str, to: str, steps: Sequence[float], interval_s: float, *, source: str = "api"
    ) -> Decision:
        return self._decide(verbs.shift, group, to, steps, interval_s, source=source)

    def _decide(self, verb: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> Decision:
        try:
            result = verb(self.board, *args, **kwargs)
        except BaseException:
            self.board.emit.take()  # a refused verb changed nothing: nothing of it may be applied
            raise
        return Decision(result, self.board.emit.take())

    # -- inspection (a metrics scrape may call these from another thread) -----------------

    def in_flight_counts(self) -> dict[str, int]:
        return self.board.inflight.counts()

    def ramp_factors(self) -> dict[str, float]:
        """Slow-start factors, and a failback ramp's share for its primary tier (1.0: full)."""
        return self.board.ramp_view

    def draining(self) -> frozenset[str]:
        """Read from the routing tables: the plan puts drains there, and only there."""
        tables = self.board.core.snapshot.tables.values()
        return frozenset().union(*(table.draining for table in tables))

    def status(self) -> dict[str, Any]:
        board = self.board
        now = board.clock()
        states = board.states()
        transfers = [s.transfer for _, s in states if s.transfer is not None]
        slow = sorted((i, g, s) for g, st in states for i, s in st.slow.items())
        return {
            "drains": board.drains.describe(now),
            "holds": sorted((h.describe(now) for _, st in states for h in st.holds.values()), key=_by_id),
            "ramps": [{"scope": "group", **t.describe(now)} for t in transfers if t.kind == "failback"]
            + [
                {"scope": "deployment", "deployment_id": i, "group": g, **s.describe(now)} for i, g, s in slow
            ],
            "shifts": [{"state": "running", **t.describe(now)} for t in transfers if t.kind == "shift"]
            + [st.shifted.describe(g, now) for g, st in states if st.shifted is not None],
            "planned_failovers": [st.planned.describe(g, now) for g, st in states if st.planned is not None],
            "in_flight": dict(sorted(board.inflight.counts().items())),
            "in_flight_tracking": board.inflight.stats(),
            "events": dict(board.emit.counts),
            "cut_at_drain_timeout": board.drains.cut,
        }

    def decorate(self, status: dict[str, Any]) -> None:
        """Add each deployment's switching state to the core status's per-deployment rows."""
        board = self.board
        counts = board.inflight.counts()
        tables = board.core.snapshot.tables
        for group, info in status.get("groups", {}).items():
            table = tables.get(group)
            if table is not None and table.split is not None:
                info["split"] = {"to": list(table.split.tier.picker.ids), "share": table.split.share}
            for row in info.get("deployments", []):
                deployment_id = row.get("deployment_id")
                drain = board.drains.get(deployment_id)
                row["draining"] = table is not None and deployment_id in table.draining
                row["drain_state"] = (
                    None if drain is None else ("draining" if drain.completed_at is None else "drained")
                )
                row["held"] = board.held(deployment_id)
                row["ramp"] = board.ramp_view.get(deployment_id, 1.0)
                row["in_flight"] = counts.get(deployment_id, 0)


def _by_id(row: dict[str, Any]) -> str:
    return str(row["deployment_id"])


__all__ = ["Decision", "SwitchingController"]

"""``SwitchingController``: drains, planned failovers, failback ramps, slow start, canary shifts.

It owns the mutable switching state and nothing on the request path: each change becomes a
``GroupPlan`` the core builds the group's next immutable routing table from (``core.planner``),
so a pick still reads one snapshot, takes no lock and does no I/O. What moves it:

- the operator: ``drain``, ``undrain``, ``failover``, ``failback``, ``shift`` (synchronous, on the
  plugin's event loop; bad input raises ``OperatorError`` before anything changes);
- the core's health transitions (``on_transition``): a primary that comes back is held down
  (auto) or held for ``failback(group)`` (manual); a deployment that comes back inside the
  serving tier slow-starts; a ramping deployment that is ejected aborts its ramp;
- attempt outcomes (``on_failure``): ``abort_errors`` failed attempts within one step abort a
  ramp (and eject the deployments that failed) or roll a shift back;
- attempt ends (``InFlight``'s listener): the last in-flight attempt of a draining deployment
  completes its drain;
- time (``advance``, run by one background task that sleeps until the next deadline): ramp and
  shift steps, hold-downs, drain timeouts, the in-flight TTL.

Every table rebuild it causes that changes the serving set is a ``failover`` event whose
``details["source"]`` is ``drain``, ``manual`` (planned failover), ``failback``, ``ramp`` (a ramp
aborted) or ``shift``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from litellm_failover.deployments import DeploymentSpec
from litellm_failover.events import EventType
from litellm_failover.health import HealthState, Transition
from litellm_failover.outlier import Outcome
from litellm_failover.plan import EMPTY_PLAN, GroupPlan, Split
from litellm_failover.routing_table import RoutingTable, build_table
from litellm_failover.settings import FailoverSettings
from litellm_failover.switching.drain import Drain, DrainBook, PlannedFailover
from litellm_failover.switching.errors import OperatorError
from litellm_failover.switching.events import Emitter
from litellm_failover.switching.inflight import InFlight
from litellm_failover.switching.ramp import Hold, Shifted, Stepper, Transfer
from litellm_failover.switching.shift import resolve_target
from litellm_failover.switching.steps import check_interval, check_steps

if TYPE_CHECKING:
    from litellm_failover.core import FailoverCore

logger = logging.getLogger("litellm_failover")

MAX_IDLE_S = 1.0  # the driver wakes at least this often (the in-flight TTL, a late change)


class SwitchingController:
    def __init__(
        self, core: FailoverCore, settings: FailoverSettings, inflight: InFlight | None = None
    ) -> None:
        self.core = core
        self.settings = settings
        self.clock = core.clock
        self.inflight = inflight or InFlight(ttl_s=settings.drain.in_flight_ttl_s, clock=core.clock)
        self.inflight.listener = self._attempt_ended
        self.emit = Emitter(core)
        self.drains = DrainBook(self.inflight, self.emit)
        self._holds: dict[str, Hold] = {}
        self._slow: dict[str, Stepper] = {}  # slow start of one deployment inside its tier
        self._transfers: dict[str, Transfer] = {}  # per group: a failback ramp or a shift
        self._shifted: dict[str, Shifted] = {}  # per group: a completed shift holding its target
        self._planned: dict[str, PlannedFailover] = {}
        # Views a metrics scrape in another thread reads: replaced whole, never mutated.
        self._draining_view: frozenset[str] = frozenset()
        self._ramp_view: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        core.planner = self

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="failover:switching")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # The flag ends the loop even if a cancellation were lost in ``wait_for`` (Python 3.11
        # can swallow one that races the wake-up it waits for).
        self._stopping = True
        self._wake.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before advancing: a change made meanwhile wakes the next wait
            try:
                deadline = self.advance()
            except Exception:
                logger.exception("traffic switching: advancing ramps and drains failed")
                deadline = None
            wait = MAX_IDLE_S if deadline is None else min(MAX_IDLE_S, max(0.0, deadline - self.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    # -- operator operations --------------------------------------------------------------

    def drain(self, deployment_id: str, *, timeout_s: float | None = None, source: str = "api") -> dict:
        group = self._group_of(deployment_id)
        if timeout_s is None:
            timeout = self.settings.drain.timeout_s
        else:
            try:
                timeout = check_interval(timeout_s, "timeout_s")
            except ValueError as exc:
                raise OperatorError(f"drain {deployment_id}: {exc}") from None
        existing = self.drains.get(deployment_id)
        if existing is not None:  # idempotent: a second drain changes nothing
            return self.drains.result(existing, already=True)
        drain = self._start_drain(deployment_id, group, timeout, source, cause="drain")
        self._group_changed(group)
        self.core.rebuild(
            group, source="drain", reason=f"{deployment_id} drained by operator", deployment_id=deployment_id
        )
        self.drains.settle(deployment_id, self.clock())  # nothing in flight: drained at once
        return self.drains.result(drain)

    def undrain(self, deployment_id: str, *, source: str = "api") -> dict:
        """A deployment that is not draining: a no-op (``changed: False``), not an error, so an
        undrain sent to every replica of a fleet succeeds on one that never had the drain."""
        group = self._group_of(deployment_id)
        if deployment_id not in self.drains:
            return {
                "deployment_id": deployment_id,
                "group": group,
                "changed": False,
                "state": "not draining",
                "message": f"{deployment_id} is not draining: nothing to undrain",
            }
        now = self.clock()
        self.drains.end(deployment_id, now, source)
        planned = self._planned.get(group)
        if planned is not None:
            planned.drained.discard(deployment_id)
            if not planned.drained:
                del self._planned[group]
        back = self._came_back(deployment_id, now, via=source, operator=True)
        self._group_changed(group)
        self.core.rebuild(
            group,
            source="drain",
            reason=f"{deployment_id} undrained by operator",
            deployment_id=deployment_id,
        )
        return {
            "deployment_id": deployment_id,
            "group": group,
            "changed": True,
            "state": back,
            "message": f"{deployment_id} undrained: {back}",
        }

    def failover(self, group: str, *, source: str = "api") -> dict:
        """Planned failover: drain ``group``'s primary tier (its best ``order``, the one serving it
        in normal times) so traffic goes to the next tier; work in flight finishes. Refused when
        no standby is routable. Stays until ``failback(group)``: never an automatic failback."""
        self._require_group(group)
        running = self._transfers.get(group)
        if running is not None and running.kind == "shift":
            raise OperatorError(self._shift_running(group, running))
        existing = self._planned.get(group)
        if existing is not None:
            return {
                "group": group,
                "changed": False,
                "from_tier": existing.tier,
                "to_tier": existing.to_tier,
                "drained": sorted(existing.drained),
                "message": f"{group} is already failed over from tier {existing.tier}",
            }
        tier = min(self._spec(i).tier for i in self.core.groups[group])  # the primary tier
        members = [i for i in self.core.groups[group] if self._spec(i).tier == tier]
        standby = [
            i
            for i in self.core.groups[group]
            if self._spec(i).tier > tier and self._routable(i) and i not in self.drains
        ]
        if not standby:
            raise OperatorError(
                f"group {group!r} has no routable standby behind tier {tier}: "
                "a planned failover would leave it nothing to serve from"
            )
        now = self.clock()
        to_tier = min(self._spec(i).tier for i in standby)
        if running is not None:  # a failback ramp toward this tier: the operator overrules it
            self._abort_transfer(group, running, now, "superseded by a planned failover", eject=False)
        drained = []
        for deployment_id in members:
            if deployment_id not in self.drains:
                self._start_drain(
                    deployment_id, group, self.settings.drain.timeout_s, source, cause="failover"
                )
            drained.append(deployment_id)
        self._planned[group] = PlannedFailover(tier, set(drained), to_tier, now, source)
        self._group_changed(group)
        self.core.rebuild(group, source="manual", reason=f"planned failover of tier {tier} by operator")
        for deployment_id in drained:
            self.drains.settle(deployment_id, now)
        return {
            "group": group,
            "changed": True,
            "from_tier": tier,
            "to_tier": to_tier,
            "drained": drained,
            "in_flight": {i: self.inflight.count(i) for i in drained},
            "message": f"{group}: tier {tier} draining ({', '.join(drained)}), tier {to_tier} serves",
        }

    def failback(self, group: str, *, source: str = "api") -> dict:
        """Bring the primary back through the ramp: after a planned failover, a manual hold, a
        hold-down not yet over, or a completed shift. Also cancels a running shift (rolled back
        at once): the operator's way to stop a canary."""
        self._require_group(group)
        now = self.clock()
        running = self._transfers.get(group)
        if running is not None and running.kind == "failback":
            return {
                "group": group,
                "changed": False,
                "ramp": running.describe(now),
                "message": f"{group}: failback already ramping (step {running.stepper.index + 1})",
            }
        if running is not None:
            self._rollback_shift(group, running, now, "rolled back by failback")
            return {
                "group": group,
                "changed": True,
                "message": f"{group}: running shift to {running.label} rolled back",
            }
        planned = self._planned.pop(group, None)
        if planned is not None:
            for deployment_id in sorted(planned.drained):
                if deployment_id in self.drains:
                    self.drains.end(deployment_id, now, source)
            return self._failback_to(group, planned.tier, now, source, "after a planned failover")
        shifted = self._shifted.get(group)
        if shifted is not None:
            natural = self._natural(group)
            target = frozenset(i for i in natural.serving)
            if not target or target <= shifted.target:
                del self._shifted[group]
                self._group_changed(group)
                self.core.rebuild(group, source="failback", reason="completed shift ended by failback")
                return {
                    "group": group,
                    "changed": True,
                    "message": f"{group}: shift hold to {shifted.label} ended",
                }
            del self._shifted[group]
            tier = min(self._spec(i).tier for i in target)
            return self._failback_to(
                group,
                tier,
                now,
                source,
                f"from the shift to {shifted.label}",
                base=shifted.target,
                ids=target,
            )
        held = sorted((h for h in self._holds.values() if h.group == group), key=lambda h: h.tier)
        if held:
            return self._failback_to(group, held[0].tier, now, source, "released by operator")
        best = min(self._spec(i).tier for i in self.core.groups[group])
        table = self.core.tables[group]
        serving_tier = self._serving_tier(table)
        if serving_tier is not None and serving_tier <= best:
            return {
                "group": group,
                "changed": False,
                "message": f"{group} already serves from its primary tier {best}: nothing to fail back",
            }
        raise OperatorError(
            f"group {group!r}: tier {best} has no routable deployment yet, nothing to fail back to "
            f"(tier {serving_tier} serves)"
        )

    def shift(
        self, group: str, to: str, steps: Sequence[float], interval_s: float, *, source: str = "api"
    ) -> dict:
        self._require_group(group)
        members = self.core.groups[group]
        target, label = resolve_target(group, to, members, {i: self._spec(i) for i in members})
        try:
            checked = check_steps(steps)
            interval = check_interval(interval_s)
        except ValueError as exc:
            raise OperatorError(f"shift {group}: {exc}") from None
        running = self._transfers.get(group)
        if running is not None:
            if running.kind == "shift":
                raise OperatorError(self._shift_running(group, running))
            raise OperatorError(
                f"a failback ramp is running on {group!r} (step {running.stepper.index + 1} of "
                f"{len(running.stepper.steps)}): wait for it to complete"
            )
        usable = [i for i in target if self._routable(i) and i not in self.drains]
        if not usable:
            raise OperatorError(f"shift target {label!r} has no routable, undrained deployment")
        shifted = self._shifted.get(group)
        if shifted is not None and shifted.target == target:
            raise OperatorError(f"all of {group!r}'s traffic already goes to {label}")
        table = self.core.tables[group]
        if shifted is None and table.split is None and table.serving and set(table.serving) <= target:
            raise OperatorError(f"{label} already serves all of {group!r}'s traffic: nothing to shift")
        now = self.clock()
        for deployment_id in target:
            # A held primary named as the target: the operator decides its traffic now.
            self._holds.pop(deployment_id, None)
            self._slow.pop(deployment_id, None)
        transfer = Transfer(
            kind="shift",
            group=group,
            target=target,
            label=label,
            stepper=Stepper(checked, interval, now, now),
            via=source,
            base=shifted.target if shifted else None,
            previous=shifted.target if shifted else None,
            previous_label=shifted.label if shifted else None,
        )
        self._shifted.pop(group, None)
        self._transfers[group] = transfer
        self.emit.step(transfer, self._admitted_of(target))
        if transfer.stepper.last:
            self._finish_transfer(group, transfer, now)
        self._group_changed(group)
        self.core.rebuild(group, source="shift", reason=f"shift to {label} at {checked[0]:g}%")
        return {
            "group": group,
            "changed": True,
            "to": label,
            "deployments": sorted(target),
            "steps": list(checked),
            "interval_s": interval,
            "step": 1,
            "percent": checked[0],
            "message": f"{group}: shifting to {label}, {checked[0]:g}% now, a step every {interval:g}s",
        }

    # -- core hooks (``core.planner``) ----------------------------------------------------

    def plan(self, group: str) -> GroupPlan:
        draining = self.drains.in_group(group)
        held = frozenset(i for i, h in self._holds.items() if h.group == group)
        ramp = {i: s.share for i, s in self._slow.items() if self._spec(i).group == group}
        transfer = self._transfers.get(group)
        shifted = self._shifted.get(group)
        split = transfer.split() if transfer else (Split(shifted.target, 1.0) if shifted else None)
        if not (draining or held or ramp or split):
            return EMPTY_PLAN
        return GroupPlan(draining=draining, held=held, ramp=ramp, split=split)

    def on_transition(self, transition: Transition) -> tuple:
        came_back = transition.to_state.routable and not transition.from_state.routable
        went_out = transition.from_state.routable and not transition.to_state.routable
        if not (came_back or went_out):
            return ()
        now = self.clock()
        if came_back:
            self._came_back(transition.deployment_id, now, via=transition.source, operator=False)
        else:
            self._went_out(transition, now)
        self._group_changed(transition.group, rebuild_check=False)
        return ()

    # -- outcomes -------------------------------------------------------------------------

    def on_failure(self, deployment_id: str, outcome: Outcome) -> None:
        """A failed attempt (counted once per request): errors during a step stop the ramp."""
        if not outcome.counts_toward_ejection or deployment_id not in self.core.health:
            return
        now = self.clock()
        stepper = self._slow.get(deployment_id)
        if stepper is not None and stepper.record_error(deployment_id) >= self.settings.failback.abort_errors:
            del self._slow[deployment_id]
            group = self._spec(deployment_id).group
            reason = (
                f"slow start of {deployment_id} aborted: "
                f"{stepper.errors} failed attempts at {stepper.percent:g}%"
            )
            self.emit.slow_aborted(deployment_id, group, stepper, reason)
            self._group_changed(group)
            if not self.core.eject(deployment_id, reason, source="ramp"):
                self.core.rebuild(group, source="ramp", reason=reason, deployment_id=deployment_id)
        group = self._spec(deployment_id).group
        transfer = self._transfers.get(group)
        if transfer is None or deployment_id not in transfer.target:
            return
        limit = (
            self.settings.failback.abort_errors
            if transfer.kind == "failback"
            else self.settings.shift.abort_errors
        )
        errors = transfer.stepper.record_error(deployment_id)
        if errors < limit:
            return
        why = f"{errors} failed attempts at step {transfer.stepper.index + 1} ({transfer.stepper.percent:g}%)"
        if transfer.kind == "failback":
            self._abort_transfer(group, transfer, now, why, eject=True)
        else:
            self._rollback_shift(group, transfer, now, why)

    def _attempt_ended(self, deployment_id: str) -> None:
        self.drains.settle(deployment_id, self.clock())

    # -- time -----------------------------------------------------------------------------

    def advance(self) -> float | None:
        """Everything due by now; returns when something is next due (None: nothing pending)."""
        now = self.clock()
        self.inflight.expire()  # lost end signals; may complete drains through the listener
        self.drains.time_out(now)
        self._release_due(now)
        stepped: set[str] = set()
        for deployment_id, stepper in list(self._slow.items()):
            if stepper.due(now):
                stepper.advance(now)
                self.emit.slow_step(deployment_id, self._spec(deployment_id).group, stepper)
                if stepper.last:
                    del self._slow[deployment_id]
                    self.emit(
                        EventType.RAMP_COMPLETED,
                        self._spec(deployment_id).group,
                        f"{deployment_id} at its full weight after slow start",
                        deployment_id=deployment_id,
                        steps=list(stepper.steps),
                        duration_s=round(now - stepper.started_at, 3),
                    )
                stepped.add(self._spec(deployment_id).group)
        for group in stepped:
            self._group_changed(group)
            self.core.rebuild(group, source="ramp", reason="slow start step")
        for group, transfer in list(self._transfers.items()):
            if transfer.stepper.due(now):
                transfer.stepper.advance(now)
                self.emit.step(transfer, self._admitted_of(transfer.target))
                if transfer.stepper.last:
                    self._finish_transfer(group, transfer, now)
                self._group_changed(group)
                self.core.rebuild(
                    group,
                    source=transfer.kind,
                    reason=f"{transfer.kind} to {transfer.label} at {transfer.stepper.percent:g}%",
                )
        return self._next_deadline()

    def _next_deadline(self) -> float | None:
        times = self.drains.deadlines()
        times += [h.until for h in self._holds.values() if h.until is not None]
        times += [s.next_at for s in self._slow.values() if not s.last]
        times += [t.stepper.next_at for t in self._transfers.values() if not t.stepper.last]
        return min(times) if times else None

    # -- inspection -----------------------------------------------------------------------

    def in_flight_counts(self) -> dict[str, int]:
        return self.inflight.counts()

    def draining(self) -> frozenset[str]:
        return self._draining_view

    def ramp_factors(self) -> dict[str, float]:
        """Slow-start factors, and a failback ramp's share for its primary tier (1.0: full)."""
        return self._ramp_view

    def status(self) -> dict[str, Any]:
        now = self.clock()
        counts = self.inflight.counts()
        transfers = list(self._transfers.values())
        return {
            "drains": self.drains.describe(now),
            "holds": [h.describe(now) for _, h in sorted(self._holds.items())],
            "ramps": [{"scope": "group", **t.describe(now)} for t in transfers if t.kind == "failback"]
            + [
                {"scope": "deployment", "deployment_id": i, "group": self._spec(i).group, **s.describe(now)}
                for i, s in sorted(self._slow.items())
            ],
            "shifts": [{"state": "running", **t.describe(now)} for t in transfers if t.kind == "shift"]
            + [s.describe(group, now) for group, s in sorted(self._shifted.items())],
            "planned_failovers": [p.describe(group, now) for group, p in sorted(self._planned.items())],
            "in_flight": dict(sorted(counts.items())),
            "in_flight_tracking": self.inflight.stats(),
            "events": dict(self.emit.counts),
            "cut_at_drain_timeout": self.drains.cut,
        }

    def decorate(self, status: dict[str, Any]) -> None:
        """Add each deployment's switching state to ``core.status()``'s per-deployment rows."""
        counts = self.inflight.counts()
        for group, info in status.get("groups", {}).items():
            table = self.core.tables.get(group)
            if table is not None and table.split is not None:
                info["split"] = {"to": list(table.split.tier.picker.ids), "share": table.split.share}
            for row in info.get("deployments", []):
                deployment_id = row.get("deployment_id")
                drain = self.drains.get(deployment_id)
                row["draining"] = drain is not None
                row["drain_state"] = (
                    None if drain is None else ("draining" if drain.completed_at is None else "drained")
                )
                row["held"] = deployment_id in self._holds
                row["ramp"] = self._ramp_view.get(deployment_id, 1.0)
                row["in_flight"] = counts.get(deployment_id, 0)

    # -- drains ---------------------------------------------------------------------------

    def _start_drain(
        self, deployment_id: str, group: str, timeout_s: float, via: str, *, cause: str
    ) -> Drain:
        self._holds.pop(deployment_id, None)  # drained: neither held nor ramping any more
        self._slow.pop(deployment_id, None)
        return self.drains.start(deployment_id, group, timeout_s, self.clock(), via=via, cause=cause)

    # -- holds, failback ramps, slow start ------------------------------------------------

    def _came_back(self, deployment_id: str, now: float, *, via: str, operator: bool) -> str:
        """A deployment routable again (a recovery, or an undrain): how it gets traffic back."""
        self._holds.pop(deployment_id, None)
        self._slow.pop(deployment_id, None)
        if deployment_id in self.drains or not self._routable(deployment_id):
            return "drained" if deployment_id in self.drains else "waiting for health"
        spec = self._spec(deployment_id)
        group = spec.group
        table = self.core.tables[group]
        if table.panic or not table.serving:
            return "serving (nothing else could)"
        transfer = self._transfers.get(group)
        if transfer is not None:
            return f"joins the running {transfer.kind}" if deployment_id in transfer.target else "standby"
        if group in self._shifted:
            return "serving per the completed shift"
        serving_tier = self._serving_tier(table)
        if table.strategy == "primary-standby" and serving_tier is not None:
            if spec.tier > serving_tier:
                return "standby"
            if spec.tier < serving_tier:
                if operator:
                    self._failback_to(group, spec.tier, now, via, f"{deployment_id} undrained", rebuild=False)
                    return "ramping (failback)"
                self._hold(deployment_id, group, spec.tier, now)
                return "held"
        return "slow start" if self._start_slow(deployment_id, now) else "serving"

    def _start_slow(self, deployment_id: str, now: float) -> bool:
        """Slow start inside the serving tier: weight x each ramp step in turn."""
        stepper = self._stepper(now)
        if not self.settings.failback.slow_start or stepper.last:
            return False
        self._slow[deployment_id] = stepper
        self.emit.slow_step(deployment_id, self._spec(deployment_id).group, stepper)
        return True

    def _went_out(self, transition: Transition, now: float) -> None:
        deployment_id = transition.deployment_id
        group = transition.group
        self._holds.pop(deployment_id, None)  # the hold-down needs health without a break
        stepper = self._slow.pop(deployment_id, None)
        why = f"{deployment_id} {transition.to_state.value}: {transition.reason}"
        if stepper is not None and transition.source != "ramp":
            self.emit.slow_aborted(
                deployment_id, group, stepper, f"slow start of {deployment_id} aborted: {why}"
            )
        transfer = self._transfers.get(group)
        if transfer is not None and deployment_id in transfer.target:
            if transfer.kind == "failback":
                self._abort_transfer(group, transfer, now, why, eject=False, rebuild=False)
            elif not any(self._admitted(i) for i in transfer.target if i != deployment_id):
                self._rollback_shift(group, transfer, now, why, rebuild=False)
        self._standby_check(group, now)

    def _hold(self, deployment_id: str, group: str, tier: int, now: float) -> None:
        manual = self.settings.group_failback(group) == "manual"
        hold_down = self.settings.failback.hold_down_s
        self._holds[deployment_id] = Hold(
            deployment_id, group, tier, now, None if manual else now + hold_down
        )
        self.emit(
            EventType.FAILBACK_PENDING,
            group,
            (
                f"{deployment_id} is healthy again: held until failback({group!r})"
                if manual
                else f"{deployment_id} is healthy again: ramping back after {hold_down:g}s without a break"
            ),
            deployment_id=deployment_id,
            tier=tier,
            mode="manual" if manual else "auto",
            hold_down_s=None if manual else hold_down,
        )

    def _release_due(self, now: float) -> None:
        due = sorted(
            (h for h in self._holds.values() if h.until is not None and now >= h.until), key=lambda h: h.tier
        )
        for hold in due:
            if self._holds.get(hold.deployment_id) is not hold:
                continue  # released with its tier already
            group = hold.group
            transfer = self._transfers.get(group)
            if transfer is not None:
                if transfer.kind == "failback" and hold.deployment_id in transfer.target:
                    del self._holds[hold.deployment_id]  # joins the ramp of its tier
                    self._group_changed(group)
                    self.core.rebuild(
                        group, source="failback", reason=f"{hold.deployment_id} joins the failback"
                    )
                continue  # otherwise it waits for the running ramp or shift to finish
            serving_tier = self._serving_tier(self.core.tables[group])
            if serving_tier is not None and hold.tier >= serving_tier:
                # Its tier serves again by now (the standby was lost meanwhile): slow start.
                del self._holds[hold.deployment_id]
                self._start_slow(hold.deployment_id, now)
                self._group_changed(group)
                self.core.rebuild(group, source="ramp", reason=f"{hold.deployment_id} released into its tier")
                continue
            self._failback_to(group, hold.tier, now, "auto", "hold-down over", due_only=True)

    def _failback_to(
        self,
        group: str,
        tier: int,
        now: float,
        via: str,
        why: str,
        *,
        base: frozenset[str] | None = None,
        ids: frozenset[str] | None = None,
        due_only: bool = False,
        rebuild: bool = True,
    ) -> dict:
        """Start the failback ramp of ``tier`` (its held members join, all of them or, for an
        automatic release, those whose hold-down is over)."""
        target = ids or frozenset(i for i in self.core.groups[group] if self._spec(i).tier == tier)
        label = f"tier:{tier}"
        result: dict[str, Any] = {"group": group, "changed": True, "to": label}
        if any(self._routable(i) and i not in self.drains for i in target):
            for deployment_id in list(target):
                hold = self._holds.get(deployment_id)
                if hold is not None and (not due_only or (hold.until is not None and now >= hold.until)):
                    del self._holds[deployment_id]
                self._slow.pop(deployment_id, None)
            transfer = Transfer("failback", group, target, label, self._stepper(now), via, base=base)
            self._transfers[group] = transfer
            self.emit.step(transfer, self._admitted_of(target), why)
            if transfer.stepper.last:
                self._finish_transfer(group, transfer, now)
            percent = transfer.stepper.percent
            result |= {"deployments": sorted(target), "steps": list(transfer.stepper.steps), "step": 1}
            result |= {
                "percent": percent,
                "message": f"{group}: failing back to {label} ({why}), {percent:g}% now",
            }
        else:
            # Nothing of it is up yet: it comes back through the hold when its health does.
            result["message"] = f"{group}: {label} has no routable deployment yet; it ramps back once healthy"
        self._group_changed(group)
        if rebuild:
            self.core.rebuild(group, source="failback", reason=f"failback of {label} ({why})")
        return result

    def _finish_transfer(self, group: str, transfer: Transfer, now: float) -> None:
        """The last step (100 %) was taken: the ramp or shift is over."""
        self._transfers.pop(group, None)
        duration = round(now - transfer.stepper.started_at, 3)
        if transfer.kind == "failback":
            # Members still in their hold-down join now, slow-starting like any node coming
            # back inside a serving tier.
            for deployment_id in sorted(transfer.target):
                if self._holds.pop(deployment_id, None) is not None and self._routable(deployment_id):
                    self._start_slow(deployment_id, now)
            self.emit.completed(transfer, f"{transfer.label} serves {group} again", duration)
            return
        natural = self._natural(group)
        if not (natural.serving and set(natural.serving) <= transfer.target):
            self._shifted[group] = Shifted(transfer.target, transfer.label, now, transfer.via)
        self.emit.completed(transfer, f"all of {group}'s traffic goes to {transfer.label}", duration)

    def _abort_transfer(
        self, group: str, transfer: Transfer, now: float, why: str, *, eject: bool, rebuild: bool = True
    ) -> None:
        """Stop a failback ramp: the members that failed are ejected again (``eject``), the
        others held again (a fresh hold-down, or until failback in manual mode)."""
        self._transfers.pop(group, None)
        errors_by = transfer.stepper.errors_by
        ejected = sorted(i for i in transfer.target if eject and errors_by[i] > 0 and self._routable(i))
        for deployment_id in sorted(transfer.target):
            if (
                deployment_id not in ejected
                and self._admitted(deployment_id)
                and deployment_id not in self._holds
            ):
                self._hold(deployment_id, group, self._spec(deployment_id).tier, now)
        reason = f"failback of {transfer.label} aborted: {why}"
        self.emit(
            EventType.RAMP_ABORTED,
            group,
            reason,
            scope="group",
            tier=transfer.label,
            step=transfer.stepper.index + 1,
            percent=transfer.stepper.percent,
            errors=transfer.stepper.errors,
            ejected=ejected,
            via=transfer.via,
        )
        self._group_changed(group, rebuild_check=False)
        for deployment_id in ejected:
            self.core.eject(deployment_id, reason, source="ramp", group_ramp=transfer.label)
        if rebuild:
            self.core.rebuild(group, source="ramp", reason=reason)

    def _rollback_shift(
        self, group: str, transfer: Transfer, now: float, why: str, *, rebuild: bool = True
    ) -> None:
        self._transfers.pop(group, None)
        if transfer.previous is not None and transfer.previous_label is not None:
            self._shifted[group] = Shifted(transfer.previous, transfer.previous_label, now, transfer.via)
        reason = f"shift to {transfer.label} rolled back: {why}"
        self.emit(
            EventType.SHIFT_ROLLED_BACK,
            group,
            reason,
            to=transfer.label,
            deployments=sorted(transfer.target),
            step=transfer.stepper.index + 1,
            percent=transfer.stepper.percent,
            errors=transfer.stepper.errors,
            restored=transfer.previous_label or "normal routing",
            via=transfer.via,
            source="shift",
        )
        self._group_changed(group, rebuild_check=False)
        if rebuild:
            self.core.rebuild(group, source="shift", reason=reason)

    def _standby_check(self, group: str, now: float) -> None:
        """A held or ramping primary whose standby has nothing routable left takes the group at
        once: holding it back any longer would leave the group without service."""
        transfer = self._transfers.get(group)
        failback = transfer if transfer is not None and transfer.kind == "failback" else None
        held = [i for i, h in self._holds.items() if h.group == group]
        if failback is None and not held:
            return
        waiting = set(held) | (failback.target if failback else set())
        if any(self._admitted(i) for i in self.core.groups[group] if i not in waiting):
            return
        if failback is not None:
            self._transfers.pop(group, None)
        for deployment_id in held:
            del self._holds[deployment_id]
        self.emit(
            EventType.FAILBACK_COMPLETED,
            group,
            "the standby has nothing routable left: the primary takes the traffic at once",
            deployments=sorted(waiting),
            immediate=True,
            source="failback",
        )

    # -- helpers --------------------------------------------------------------------------

    def _stepper(self, now: float) -> Stepper:
        failback = self.settings.failback
        return Stepper(tuple(failback.ramp_steps), failback.step_interval_s, now, now)

    def _group_changed(self, group: str, *, rebuild_check: bool = True) -> None:
        """Refresh the views other threads read and wake the driver for new deadlines."""
        if rebuild_check:
            self._standby_check(group, self.clock())
        self._draining_view = self.drains.ids()
        ramp = {i: s.share for i, s in self._slow.items()}
        for transfer in self._transfers.values():
            if transfer.kind == "failback":
                ramp.update({i: transfer.stepper.share for i in transfer.target if self._admitted(i)})
        self._ramp_view = ramp
        self._wake.set()

    def _natural(self, group: str) -> RoutingTable:
        """The group's table as it would be with no split (what serves it without a shift)."""
        plan = replace(self.plan(group), split=None)
        strategy, in_tier = self.settings.group_strategy(group)
        members = [self.core.health[i] for i in self.core.groups[group]]
        return build_table(
            group, members, strategy, in_tier, self.clock(), panic_mode=self.settings.panic_mode, plan=plan
        )

    def _serving_tier(self, table: RoutingTable) -> int | None:
        if table.panic or not table.serving:
            return None
        return min(self._spec(i).tier for i in table.serving)

    def _shift_running(self, group: str, transfer: Transfer) -> str:
        return (
            f"a shift is already running on {group!r} (to {transfer.label}, step "
            f"{transfer.stepper.index + 1} of {len(transfer.stepper.steps)}); wait for it to complete, "
            f"or roll it back with failback {group}"
        )

    def _routable(self, deployment_id: str) -> bool:
        return self.core.health[deployment_id].state.routable

    def _admitted_of(self, ids: frozenset[str]) -> list[str]:
        return [i for i in ids if self._admitted(i)]

    def _admitted(self, deployment_id: str) -> bool:
        return (
            self._routable(deployment_id)
            and deployment_id not in self.drains
            and deployment_id not in self._holds
        )

    def _spec(self, deployment_id: str) -> DeploymentSpec:
        return self.core.health[deployment_id].spec

    def _group_of(self, deployment_id: object) -> str:
        record = self.core.health.get(deployment_id) if isinstance(deployment_id, str) else None
        if record is None:
            raise OperatorError(
                f"unknown deployment {deployment_id!r} (known: {', '.join(sorted(self.core.health))})"
            )
        return record.spec.group

    def _require_group(self, group: object) -> None:
        if not isinstance(group, str) or group not in self.core.groups:
            raise OperatorError(
                f"unknown model group {group!r} (known: {', '.join(sorted(self.core.groups))})"
            )


__all__ = ["HealthState", "SwitchingController"]

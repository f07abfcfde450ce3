"""``ChaosInjector``: the active faults of one replica and the per-attempt draw.

The request path reads one immutable snapshot (deployment -> kind -> fault), swapped whole when
an operator injects or clears a fault, so a draw is a dict lookup, a time compare and a random
number: no I/O, no locks, nothing to wait for. With no fault active it is one lookup in an empty
dict. Counts of injections per fault are kept for status and for the cleared/expired events; an
event per injected request would flood the audit table.

A fault ends by itself at its end time: a timer on the event loop removes it and writes
``chaos_expired``; a draw that meets an ended fault before the timer ran ignores it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from litellm_failover.chaos.faults import Fault, FaultInputError, FaultKind, iso, parse_fault_args
from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.switching.errors import OperatorError

if TYPE_CHECKING:
    from litellm_failover.settings import ChaosSettings

logger = logging.getLogger("litellm_failover.chaos")

DISABLED = "chaos is disabled: set failover_settings.chaos.enabled: true"
_KNOWN_SHOWN = 20  # deployments named in an "unknown deployment" message

Snapshot = Mapping[str, Mapping[FaultKind, Fault]]
_EMPTY: Snapshot = MappingProxyType({})


class ChaosInjector:
    """``ChaosInjector(settings, groups, emit, instance_id)``: ``groups`` maps each deployment id
    this replica routes to its model group; ``emit`` takes the chaos events (the core's, which
    feeds the store writer, alerts and ``recent_events``)."""

    def __init__(
        self,
        settings: ChaosSettings,
        groups: Mapping[str, str],
        emit: Callable[[FailoverEvent], None],
        instance_id: str,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        # Read live, not copied: the plugin's map follows deployments LiteLLM adds and deletes.
        self._groups = groups
        self._emit = emit
        self._instance_id = instance_id
        self._clock = clock
        self._random = (rng or random.Random()).random
        self._active: Snapshot = _EMPTY
        self._counts: Counter[str] = Counter()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    # -- the request path -----------------------------------------------------------------

    def draw(self, deployment_id: str | None, kind: FaultKind) -> Fault | None:
        """The fault of ``kind`` to inject into this attempt on ``deployment_id``, or None."""
        faults = self._active.get(deployment_id) if self._active else None
        fault = faults.get(kind) if faults else None
        if fault is None:
            return None
        if self._clock() >= fault.ends_at:
            self._expire(fault.fault_id)  # the timer has not run yet; the first draw after ends it
            return None
        if self._random() >= fault.probability:
            return None
        self._counts[fault.fault_id] += 1
        return fault

    @property
    def armed(self) -> bool:
        """Whether any fault is active (the handler's one check when none is)."""
        return bool(self._active)

    # -- operator operations ----------------------------------------------------------------

    def inject(
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
    ) -> dict[str, Any]:
        """Start a fault; ``OperatorError`` (nothing injected) on bad input, an unknown
        deployment, chaos disabled, an end in the past or beyond ``chaos.max_duration_s``. A
        fault of the same kind already on the deployment is replaced (and ``chaos_cleared``)."""
        self._check_enabled()
        group = self._group_of(deployment_id)
        now = self._clock()
        raw = {
            "kind": kind,
            "probability": probability,
            "duration_s": duration_s,
            "until": until,
            "status": status,
            "delay_s": delay_s,
            "after_chunks": after_chunks,
        }
        try:
            args = parse_fault_args(raw, _utc(now))
        except FaultInputError as exc:
            raise OperatorError(str(exc)) from None
        remaining = args["until"] - now
        if remaining > self.settings.max_duration_s:
            raise OperatorError(
                f"--for/--until: the fault would last {remaining:.0f}s, over "
                f"chaos.max_duration_s={self.settings.max_duration_s:g} (ends {iso(args['until'])})"
            )
        fault = Fault(
            fault_id=uuid.uuid4().hex[:12],
            deployment_id=deployment_id,
            kind=args["kind"],
            probability=args["probability"],
            ends_at=args["until"],
            started_at=now,
            status=args.get("status"),
            delay_s=args.get("delay_s"),
            after_chunks=args.get("after_chunks"),
            issued_by=issued_by,
            source=source,
        )
        replaced = self._active.get(deployment_id, {}).get(fault.kind)
        if replaced is not None:
            why = f"replaced by a new {fault.kind} fault"
            self._remove(replaced, EventType.CHAOS_CLEARED, why, source, issued_by)
        faults = dict(self._active.get(deployment_id, {}))
        faults[fault.kind] = fault
        self._swap(deployment_id, faults)
        self._schedule(fault)
        who = f" by {issued_by}" if issued_by else ""
        self._event(
            EventType.CHAOS_INJECTED,
            fault,
            group,
            f"chaos: {fault.describe()} until {iso(fault.ends_at)}{who} (via {source})",
        )
        logger.warning("chaos: injecting %s until %s%s", fault.describe(), iso(fault.ends_at), who)
        return {
            "deployment_id": deployment_id,
            "group": group,
            "message": f"injecting {fault.describe()} until {iso(fault.ends_at)}",
            "fault": fault.to_dict(),
            "replaced": replaced.fault_id if replaced is not None else None,
        }

    def clear(
        self, deployment_id: str | None = None, *, source: str = "api", issued_by: str = ""
    ) -> dict[str, Any]:
        """End the faults on ``deployment_id`` (all deployments when None or empty); each writes
        ``chaos_cleared`` with its injected count. Clearing where nothing is active is no error."""
        self._check_enabled()
        if deployment_id:
            self._group_of(deployment_id)
        cleared = []
        who = f" by {issued_by}" if issued_by else ""
        for dep_id, faults in list(self._active.items()):
            if deployment_id and dep_id != deployment_id:
                continue
            for fault in list(faults.values()):
                why = f"cleared{who} (via {source})"
                count = self._remove(fault, EventType.CHAOS_CLEARED, why, source, issued_by)
                cleared.append(fault.to_dict(count))
        where = deployment_id or "all deployments"
        if cleared:
            logger.warning("chaos: cleared %d fault(s) on %s%s", len(cleared), where, who)
        return {
            "deployment_id": deployment_id or None,
            "message": f"cleared {len(cleared)} fault(s) on {where}",
            "cleared": cleared,
        }

    def stop(self) -> None:
        """Cancel the expiry timers (the plugin stops; faults are in-memory and end with it)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # -- inspection -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self._clock()
        active = [
            fault.to_dict(self._counts[fault.fault_id])
            for faults in self._active.values()
            for fault in faults.values()
            if fault.ends_at > now
        ]
        return {
            "enabled": self.settings.enabled,
            "max_duration_s": self.settings.max_duration_s,
            "active": sorted(active, key=lambda f: (f["deployment_id"], f["kind"])),
        }

    def injected(self, fault_id: str) -> int:
        return self._counts[fault_id]

    # -- inside -----------------------------------------------------------------------------

    def _check_enabled(self) -> None:
        if not self.settings.enabled:
            raise OperatorError(DISABLED)

    def _group_of(self, deployment_id: str) -> str:
        group = self._groups.get(deployment_id)
        if group is None:
            known = sorted(self._groups)
            shown = ", ".join(known[:_KNOWN_SHOWN]) + (
                f", ... ({len(known) - _KNOWN_SHOWN} more)" if len(known) > _KNOWN_SHOWN else ""
            )
            raise OperatorError(f"unknown deployment {deployment_id!r} (known: {shown or 'none'})")
        return group

    def _swap(self, deployment_id: str, faults: dict[FaultKind, Fault]) -> None:
        """Publish a new snapshot: the request path sees the old one or the new one, whole."""
        active = dict(self._active)
        if faults:
            active[deployment_id] = MappingProxyType(faults)
        else:
            active.pop(deployment_id, None)
        self._active = MappingProxyType(active) if active else _EMPTY

    def _remove(self, fault: Fault, event_type: EventType, why: str, source: str, by: str = "") -> int:
        faults = dict(self._active.get(fault.deployment_id, {}))
        if faults.get(fault.kind) is not fault:
            return 0
        del faults[fault.kind]
        self._swap(fault.deployment_id, faults)
        handle = self._timers.pop(fault.fault_id, None)
        if handle is not None:
            handle.cancel()
        count = self._counts.pop(fault.fault_id, 0)
        self._event(
            event_type,
            fault,
            self._groups.get(fault.deployment_id, ""),
            f"chaos: {fault.describe()} {why}; injected {count} time(s)",
            injected=count,
            source=source,
            by=by,
        )
        return count

    def _schedule(self, fault: Fault) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a call outside the loop: the first draw after the end expires it
            return
        delay = max(0.0, fault.ends_at - self._clock())
        self._timers[fault.fault_id] = loop.call_later(delay, self._expire, fault.fault_id)

    def _expire(self, fault_id: str) -> None:
        self._timers.pop(fault_id, None)
        for faults in self._active.values():
            for fault in faults.values():
                if fault.fault_id != fault_id:
                    continue
                if self._clock() < fault.ends_at:  # the wall clock was set back: wait on
                    self._schedule(fault)
                    return
                count = self._remove(fault, EventType.CHAOS_EXPIRED, "ended", "expiry")
                logger.warning("chaos: %s ended; injected %d time(s)", fault.describe(), count)
                return

    def _event(
        self,
        event_type: EventType,
        fault: Fault,
        group: str,
        reason: str,
        *,
        injected: int | None = None,
        source: str | None = None,
        by: str = "",
    ) -> None:
        details = fault.to_dict(injected)
        if source is not None:
            details["ended_via"] = source
        if by:
            details["ended_by"] = by
        self._emit(
            FailoverEvent(
                event_type=event_type.value,
                model_group=group,
                deployment_id=fault.deployment_id,
                reason=reason,
                instance_id=self._instance_id,
                details=details,
            )
        )


def _utc(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)

"""Drains: deployments that take no new requests while their in-flight ones finish.

A drain has two phases. ``draining``: attempts started before the drain are still running; it
ends when the last of them ends (``drain_completed`` with ``cut: 0``), or at ``timeout_s`` with
whatever is still running counted as cut. ``drained``: nothing of it is in flight; it stays out of
rotation until ``undrain``. The plugin never kills a connection itself: "cut" means the drain
stopped waiting for that work (a maintenance that stops the node then cuts it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litellm_failover.events import EventType
from litellm_failover.switching.events import Emitter
from litellm_failover.switching.ports import InFlightView


@dataclass(slots=True)
class Drain:
    deployment_id: str
    group: str
    started_at: float
    timeout_s: float
    in_flight_at_start: int
    expired_at_start: int  # the tracker's expiry count then: expiries since are lost end signals
    via: str  # who asked: "api", "control", "control:restore"
    cause: str  # "drain" (drain(id)) or "failover" (failover(group) drained its tier)
    completed_at: float | None = None
    cut: int = 0
    timed_out: bool = False

    @property
    def deadline(self) -> float:
        return self.started_at + self.timeout_s

    def complete(self, now: float, still_in_flight: int, expired_total: int) -> dict[str, Any]:
        """Close the draining phase; the ``drain_completed`` details."""
        self.completed_at = now
        self.timed_out = still_in_flight > 0
        self.cut = still_in_flight
        expired = max(0, expired_total - self.expired_at_start)
        return {
            "in_flight": self.in_flight_at_start,
            "finished": max(0, self.in_flight_at_start - still_in_flight - expired),
            "cut": still_in_flight,
            "expired": expired,
            "timed_out": self.timed_out,
            "duration_s": round(now - self.started_at, 3),
            "timeout_s": self.timeout_s,
            "cause": self.cause,
            "via": self.via,
        }

    def describe(self, now: float, in_flight: int) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "group": self.group,
            "state": "draining" if self.completed_at is None else "drained",
            "in_flight": in_flight,
            "in_flight_at_start": self.in_flight_at_start,
            "since_s": round(now - self.started_at, 3),
            "timeout_s": self.timeout_s,
            "times_out_in_s": None
            if self.completed_at is not None
            else round(max(0.0, self.deadline - now), 3),
            "cut": self.cut,
            "cause": self.cause,
            "via": self.via,
        }


class DrainBook:
    """Every drain of the plugin, and the events that mark its phases."""

    def __init__(self, inflight: InFlightView, emit: Emitter) -> None:
        self.inflight = inflight
        self.emit = emit
        self._drains: dict[str, Drain] = {}
        self.cut = 0  # attempts counted as cut at a drain timeout, since start

    def __contains__(self, deployment_id: object) -> bool:
        return deployment_id in self._drains

    def get(self, deployment_id: str) -> Drain | None:
        return self._drains.get(deployment_id)

    def ids(self) -> frozenset[str]:
        return frozenset(self._drains)

    def in_group(self, group: str) -> frozenset[str]:
        return frozenset(i for i, d in self._drains.items() if d.group == group)

    def start(
        self, deployment_id: str, group: str, timeout_s: float, now: float, *, via: str, cause: str
    ) -> Drain:
        in_flight = self.inflight.count(deployment_id)
        drain = Drain(
            deployment_id=deployment_id,
            group=group,
            started_at=now,
            timeout_s=timeout_s,
            in_flight_at_start=in_flight,
            expired_at_start=self.inflight.expired.get(deployment_id, 0),
            via=via,
            cause=cause,
        )
        self._drains[deployment_id] = drain
        self.emit(
            EventType.DRAIN_STARTED,
            group,
            f"{deployment_id} draining: {in_flight} in flight, no new requests",
            deployment_id=deployment_id,
            in_flight=in_flight,
            timeout_s=timeout_s,
            cause=cause,
            via=via,
        )
        return drain

    def settle(self, deployment_id: str, now: float) -> None:
        """Complete the drain of ``deployment_id`` if nothing of it is in flight any more."""
        drain = self._drains.get(deployment_id)
        if drain is not None and drain.completed_at is None and self.inflight.count(deployment_id) == 0:
            self._complete(drain, now)

    def time_out(self, now: float) -> None:
        for drain in list(self._drains.values()):
            if drain.completed_at is None and now >= drain.deadline:
                self._complete(drain, now)

    def deadlines(self) -> list[float]:
        return [d.deadline for d in self._drains.values() if d.completed_at is None]

    def end(self, deployment_id: str, now: float, via: str) -> Drain:
        """Undrain. A drain still waiting for in-flight work is closed first, so every
        ``drain_started`` has its ``drain_completed`` (nothing was cut)."""
        drain = self._drains.pop(deployment_id)
        if drain.completed_at is None:
            drain.completed_at = now
            self.emit(
                EventType.DRAIN_COMPLETED,
                drain.group,
                f"{deployment_id} undrained before its in-flight work finished",
                deployment_id=deployment_id,
                in_flight=drain.in_flight_at_start,
                finished=max(0, drain.in_flight_at_start - self.inflight.count(deployment_id)),
                cut=0,
                cancelled=True,
                duration_s=round(now - drain.started_at, 3),
                cause=drain.cause,
                via=drain.via,
            )
        self.emit(
            EventType.UNDRAINED,
            drain.group,
            f"{deployment_id} undrained",
            deployment_id=deployment_id,
            drained_for_s=round(now - drain.started_at, 3),
            via=via,
        )
        return drain

    def result(self, drain: Drain, *, already: bool = False) -> dict[str, Any]:
        """What ``drain()`` returns (and the control plane shows the operator)."""
        in_flight = self.inflight.count(drain.deployment_id)
        state = "draining" if drain.completed_at is None else "drained"
        return {
            "deployment_id": drain.deployment_id,
            "group": drain.group,
            "changed": not already,
            "state": state,
            "in_flight": in_flight,
            "timeout_s": drain.timeout_s,
            "message": f"{drain.deployment_id} {state}: {in_flight} in flight"
            + (" (already draining)" if already else ""),
        }

    def describe(self, now: float) -> list[dict[str, Any]]:
        counts = self.inflight.counts()
        return [d.describe(now, counts.get(i, 0)) for i, d in sorted(self._drains.items())]

    def _complete(self, drain: Drain, now: float) -> None:
        still = self.inflight.count(drain.deployment_id)
        details = drain.complete(now, still, self.inflight.expired.get(drain.deployment_id, 0))
        self.cut += still
        self.emit(
            EventType.DRAIN_COMPLETED,
            drain.group,
            f"{drain.deployment_id} drained: {details['finished']} finished"
            + (f", {still} cut at the {drain.timeout_s:g}s timeout" if still else ", none cut"),
            deployment_id=drain.deployment_id,
            **details,
        )

"""Applying one command to a running plugin, and the result each replica reports back.

``OperatorTarget`` is all the control plane needs from the plugin, so it is handed that and not
the whole plugin: its ``instance_id``, the five synchronous operations of issue 4, the two of
chaos and ``status()`` for ``status --live`` (``FailoverPlugin`` implements them). The
operations refuse bad input, such as an
unknown group or a shift already running, by raising ``OperatorError``, a ``ValueError``, with
a message for the operator and no state changed; that is a *refused* command. Any other
exception is a fault of the replica, reported as an *error* (and logged with its traceback),
never raised into the transport that delivered the command.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from litellm_failover.control.commands import Command

logger = logging.getLogger("litellm_failover.control")

Outcome = Literal["applied", "refused", "expired", "error"]
MAX_MESSAGE = 1000  # a result's message is shown in a terminal; keep one replica to a few lines
MAX_DETAILS_BYTES = 64 * 1024  # a live status of a few hundred deployments


class OperatorTarget(Protocol):
    """What a command can ask of a replica; each operation returns a small JSON-able dict of
    what it did."""

    @property
    def instance_id(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    def drain(self, deployment_id: str, *, timeout_s: float | None = None, source: str = "api") -> dict: ...

    def undrain(self, deployment_id: str, *, source: str = "api") -> dict: ...

    def failover(self, group: str, *, source: str = "api") -> dict: ...

    def failback(self, group: str, *, source: str = "api") -> dict: ...

    def shift(
        self, group: str, to: str, steps: Sequence[float], interval_s: float, *, source: str = "api"
    ) -> dict: ...

    def chaos_inject(
        self,
        deployment_id: str,
        kind: str,
        probability: float,
        *,
        until: Any = None,
        status: int | None = None,
        delay_s: float | str | None = None,
        after_chunks: int | None = None,
        source: str = "api",
        issued_by: str = "",
    ) -> dict: ...

    def chaos_clear(
        self, deployment_id: str | None = None, *, source: str = "api", issued_by: str = ""
    ) -> dict: ...


@dataclass(frozen=True, slots=True)
class CommandResult:
    """One replica's answer to one command (a Redis acknowledgement, a results row)."""

    instance_id: str
    outcome: Outcome
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    applied_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def ok(self) -> bool:
        return self.outcome == "applied"

    def to_wire(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "outcome": self.outcome,
            "ok": self.ok,
            "message": self.message,
            "details": self.details,
            "applied_at": self.applied_at.isoformat(),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> CommandResult:
        outcome = data.get("outcome")
        if outcome not in ("applied", "refused", "expired", "error"):
            outcome = "applied" if data.get("ok") else "refused"
        applied_at = data.get("applied_at")
        try:
            moment = datetime.fromisoformat(applied_at) if isinstance(applied_at, str) else None
        except ValueError:
            moment = None
        details = data.get("details")
        return cls(
            instance_id=str(data.get("instance_id") or "?"),
            outcome=outcome,
            message=str(data.get("message") or ""),
            details=details if isinstance(details, dict) else {},
            applied_at=moment or datetime.now(UTC),
        )


def summarize(details: dict[str, Any]) -> str:
    """The line shown for an applied command: the target's own ``message`` if it gave one, else
    its scalar fields (``state=draining in_flight=3``)."""
    message = details.get("message")
    if isinstance(message, str) and message:
        return message[:MAX_MESSAGE]
    parts = [
        f"{key}={value}"
        for key, value in details.items()
        if isinstance(value, (str, int, float, bool)) or value is None
    ]
    return (" ".join(parts) or "applied")[:MAX_MESSAGE]


def _jsonable(value: Any) -> dict[str, Any]:
    """What the target returned, as JSON the transports can carry (bounded; never raises)."""
    if not isinstance(value, dict):
        return {"result": str(value)[:MAX_MESSAGE]} if value is not None else {}
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        return {"result": str(value)[:MAX_MESSAGE]}
    if len(text) > MAX_DETAILS_BYTES:
        return {"message": summarize(value), "truncated": True}
    return json.loads(text)


def apply_command(
    target: OperatorTarget, command: Command, *, instance_id: str, source: str
) -> CommandResult:
    """Apply ``command`` to ``target`` and say what happened. Never raises."""
    try:
        returned = _call(target, command, source)
    except ValueError as exc:  # OperatorError and friends: refused, nothing changed
        return CommandResult(instance_id, "refused", (str(exc) or type(exc).__name__)[:MAX_MESSAGE])
    except Exception as exc:
        logger.exception("control: applying %s (command %s) failed", command.describe(), command.command_id)
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return CommandResult(instance_id, "error", f"internal error: {text}"[:MAX_MESSAGE])
    details = _jsonable(returned)
    return CommandResult(instance_id, "applied", summarize(details), details)


def _call(target: OperatorTarget, command: Command, source: str) -> Any:
    args = command.args
    match command.kind:
        case "drain":
            return target.drain(command.target, timeout_s=args.get("timeout_s"), source=source)
        case "undrain":
            return target.undrain(command.target, source=source)
        case "failover":
            return target.failover(command.target, source=source)
        case "failback":
            return target.failback(command.target, source=source)
        case "shift":
            return target.shift(
                command.target, args["to"], list(args["steps"]), args["interval_s"], source=source
            )
        case "status":
            return live_status(target, command.target)
        case "chaos_inject":
            return target.chaos_inject(
                command.target,
                args["kind"],
                args["probability"],
                until=args["until"],
                status=args.get("status"),
                delay_s=args.get("delay_s"),
                after_chunks=args.get("after_chunks"),
                source=source,
                issued_by=command.issued_by,
            )
        case "chaos_clear":
            return target.chaos_clear(command.target or None, source=source, issued_by=command.issued_by)
    raise ValueError(f"unknown command {command.kind!r}")  # pragma: no cover (validated before)


_GROUP_KEYS = ("active_tier", "serving", "panic", "split")
_DEPLOYMENT_KEYS = ("deployment_id", "tier", "state", "reason", "effective_weight")
_DEPLOYMENT_KEYS += ("draining", "drain_state", "held", "ramp", "in_flight")  # switching's, where present


def live_status(target: OperatorTarget, group: str = "") -> dict[str, Any]:
    """A compact view of a replica's routing state for ``status --live``: per group the serving
    tier and per deployment its state, reason and effective weight (what an operator checks
    after a drain or a shift), from ``target.status()``."""
    status = target.status()
    groups = status.get("groups", {}) if isinstance(status, dict) else {}
    if group and group not in groups:
        raise ValueError(f"unknown model group {group!r} (known: {', '.join(sorted(groups)) or 'none'})")
    compact: dict[str, Any] = {}
    for name, info in groups.items():
        if group and name != group:
            continue
        compact[name] = {key: info[key] for key in _GROUP_KEYS if key in info} | {
            "deployments": [
                {key: deployment[key] for key in _DEPLOYMENT_KEYS if key in deployment}
                for deployment in info.get("deployments", [])
            ]
        }
    count = sum(len(info["deployments"]) for info in compact.values())
    live: dict[str, Any] = {"message": f"{len(compact)} groups, {count} deployments", "groups": compact}
    unmanaged = status.get("unmanaged") if isinstance(status, dict) else None
    if isinstance(unmanaged, list):  # what LiteLLM routes that the plugin does not manage, and why
        live["unmanaged"] = [row for row in unmanaged if not group or row.get("model_group") == group]
    chaos = status.get("chaos") if isinstance(status, dict) else None
    if isinstance(chaos, dict):  # active faults of this replica (``chaos inject``), in this view
        members = {d["deployment_id"] for info in compact.values() for d in info["deployments"]}
        active = [f for f in chaos.get("active", []) if not group or f.get("deployment_id") in members]
        live["chaos"] = {"enabled": chaos.get("enabled", False), "active": active}
    return live

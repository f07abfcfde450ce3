"""Applying operator commands to this replica: each once, audited, standing ones restored.

A command can reach a replica twice (through Redis and the database, or a Redis message and its
state key) and is applied once, by ``command_id``; one issued longer ago than
``control.command_ttl_s`` is reported expired, not applied (an operator who gave up on it must
not see it happen later). Every command leaves one ``operator_command`` event per replica in the
audit trail: who asked for what, and what this replica did. At start the standing drains and
planned failovers are taken over (``restore``; see ``control.plane``).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Any

from litellm_failover.control.commands import DEPLOYMENT_KINDS, STANDING, Command
from litellm_failover.control.dispatch import CommandResult, OperatorTarget, apply_command
from litellm_failover.events import EventType, FailoverEvent

logger = logging.getLogger("litellm_failover.control")

SOURCE = "control"
"""The ``source`` the plugin's operations are called with for a command from the CLI."""
RESTORE_SOURCE = "control:restore"
"""... and for standing state taken over at start."""

_FUTURE = "invalid command: issued_at is in the future, past control.command_ttl_s of clock skew"
_SEEN_IDS = 10_000
_RECENT = 20


class CommandApplier:
    """Applies commands to ``target`` and keeps what ``ControlPlane.status()`` shows of them.
    ``submit``: the audit trail's event sink (the store writer's ``submit_event``), or None."""

    def __init__(
        self,
        target: OperatorTarget,
        instance_id: str,
        command_ttl_s: float,
        submit: Callable[[FailoverEvent], Any] | None,
    ) -> None:
        self._target = target
        self.instance_id = instance_id
        self._command_ttl_s = command_ttl_s
        self._submit = submit
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.outcomes: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=_RECENT)
        self.restored: list[dict[str, Any]] = []

    def seen(self, command_id: str) -> bool:
        return command_id in self._seen

    def remember(self, command_id: str) -> None:
        self._seen[command_id] = None
        if len(self._seen) > _SEEN_IDS:
            self._seen.popitem(last=False)

    def refuse(self, command_id: str, message: str) -> CommandResult:
        """A command that did not validate: remembered (answered once) and counted as refused."""
        self.remember(command_id)
        self.outcomes["refused"] += 1
        return CommandResult(self.instance_id, "refused", message)

    def refuse_standing(self, entry: str, via: str, message: str) -> None:
        """A standing entry that is not a valid command: counted, shown, logged; not restored."""
        self.outcomes["refused"] += 1
        self.restored.append(
            {"command": entry, "command_id": None, "via": via, "outcome": "refused", "message": message}
        )
        logger.warning("control: not restoring standing entry %r from %s: %s", entry, via, message)

    def _from_the_future(self, command: Command, now: float) -> bool:
        """Issued later than ``now`` by more than the clock skew a command may have (its TTL): a
        time no honest sender writes, and one that would win "the latest word" forever."""
        return command.issued_at.timestamp() - now > self._command_ttl_s

    def handle(self, command: Command, via: str, now: float) -> CommandResult | None:
        """Apply a command once (None if it was seen already), unless it is too old."""
        if command.command_id in self._seen:
            return None
        if self._from_the_future(command, now):
            return self.refuse(command.command_id, _FUTURE)
        self.remember(command.command_id)
        age = now - command.issued_at.timestamp()
        if age > self._command_ttl_s:
            result = CommandResult(
                self.instance_id,
                "expired",
                f"expired: issued {age:.0f}s ago, over control.command_ttl_s="
                f"{self._command_ttl_s:g}; not applied",
            )
        else:
            result = apply_command(self._target, command, instance_id=self.instance_id, source=SOURCE)
        self.outcomes[result.outcome] += 1
        self.recent.append(
            {
                "command_id": command.command_id,
                "command": command.describe(),
                "issued_by": command.issued_by,
                "via": via,
                "outcome": result.outcome,
                "message": result.message,
                "at": result.applied_at.isoformat(),
            }
        )
        self._audit(command, result, via)
        log = logger.info if result.ok else logger.warning
        log(
            "control: %s by %s (via %s): %s: %s",
            command.describe(),
            command.issued_by,
            via,
            result.outcome,
            result.message,
        )
        return result

    def _audit(self, command: Command, result: CommandResult, via: str, *, restored: bool = False) -> None:
        """One ``operator_command`` event per replica and command: who asked for what, and what
        this replica did (the plugin's own drain/failover events say how it went)."""
        if self._submit is None:
            return
        group = command.target
        if command.kind in DEPLOYMENT_KINDS:
            group = str(result.details.get("group") or result.details.get("model_group") or "")
        prefix = "restored at start: " if restored else ""
        self._submit(
            FailoverEvent(
                event_type=EventType.OPERATOR_COMMAND.value,
                model_group=group,
                deployment_id=(command.target or None) if command.kind in DEPLOYMENT_KINDS else None,
                reason=f"{prefix}{command.describe()} by {command.issued_by or 'unknown'}: "
                f"{result.outcome}: {result.message}",
                instance_id=self.instance_id,
                details={
                    "command_id": command.command_id,
                    "kind": command.kind,
                    "target": command.target,
                    "args": command.args,
                    "issued_by": command.issued_by,
                    "issued_at": command.issued_at.isoformat(),
                    "via": via,
                    "outcome": result.outcome,
                    "restored": restored,
                },
            )
        )

    def restore(self, sources: list[tuple[str, list[Command] | None]], now: float) -> None:
        """Apply, per deployment and per group, the latest standing command of ``sources``
        ((transport, its standing commands or None when it was away)) if it is a drain or a
        failover. One issued in the future (see ``_from_the_future``) is refused, not restored."""
        latest: dict[tuple[str, str], tuple[Command, str]] = {}
        for via, commands in sources:
            for command in commands or []:
                if self._from_the_future(command, now):
                    self.refuse_standing(command.describe(), via, _FUTURE)
                    continue
                key = (STANDING[command.kind], command.target)
                known = latest.get(key)
                if known is None or command.issued_at > known[0].issued_at:
                    latest[key] = (command, via)
        for command, via in sorted(latest.values(), key=lambda item: item[0].issued_at):
            self.remember(command.command_id)
            if command.kind not in ("drain", "failover"):
                continue  # the latest word was undrain/failback: nothing stands
            result = apply_command(self._target, command, instance_id=self.instance_id, source=RESTORE_SOURCE)
            self.restored.append(
                {"command": command.describe(), "command_id": command.command_id, "via": via}
                | {"outcome": result.outcome, "message": result.message}
            )
            self._audit(command, result, via, restored=True)
            if result.ok:
                logger.info("control: restored %s (issued by %s)", command.describe(), command.issued_by)
            else:
                logger.warning("control: could not restore %s: %s", command.describe(), result.message)

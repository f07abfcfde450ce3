"""The operator command: what the CLI sends and what every replica checks before applying it.

One model, one set of rules, used on both ends: the CLI refuses bad input before anything is sent
(exit 2), and a replica checks again what it receives, since a row in ``failover_commands`` or a
message on the Redis channel can come from anything that can write there. What only a running
replica can know (does this group exist, is a shift already running on it) is for the plugin's
own methods to refuse; see ``dispatch``.
"""

from __future__ import annotations

import getpass
import math
import re
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from litellm_failover.chaos.faults import FaultInputError, iso, parse_fault_args
from litellm_failover.durations import DurationError, parse_duration
from litellm_failover.untrusted import LATEST_EPOCH_S, UntrustedError, bounded_number

Kind = Literal["drain", "undrain", "failover", "failback", "shift", "status", "chaos_inject", "chaos_clear"]
KINDS: tuple[Kind, ...] = (
    "drain",
    "undrain",
    "failover",
    "failback",
    "shift",
    "status",
    "chaos_inject",
    "chaos_clear",
)

DEPLOYMENT_KINDS = frozenset({"drain", "undrain", "chaos_inject", "chaos_clear"})
"""Kinds whose target is a deployment id; the others (but status) name a model group."""
OPTIONAL_TARGET = frozenset({"status", "chaos_clear"})
"""Kinds whose target may be empty: every group (status), every deployment (chaos_clear)."""

STANDING = {"drain": "deployment", "undrain": "deployment", "failover": "group", "failback": "group"}
"""Kinds that leave a standing state a replica starting later must take over: the latest of
drain/undrain per deployment, of failover/failback per group (see ``ControlPlane``)."""

MAX_TARGET = 255  # the store's identifier columns
MAX_STEPS = 100
MAX_DURATION_S = 7 * 24 * 3600.0  # a drain timeout or shift interval longer than a week is a typo
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CommandError(ValueError):
    """Input that is not a valid command; the message names the option or field and the value."""


@dataclass(frozen=True, slots=True)
class Command:
    """One operator command. ``args`` holds only what the kind takes, already validated:
    drain ``{"timeout_s": float}`` (optional), shift ``{"to", "steps", "interval_s"}``,
    chaos_inject ``{"kind", "probability", "until"}`` (epoch seconds) and the fault kind's own
    ``status`` / ``delay_s`` / ``after_chunks`` (see ``litellm_failover.chaos.faults``)."""

    kind: Kind
    target: str
    args: dict[str, Any] = field(default_factory=dict)
    command_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    issued_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    issued_by: str = ""
    tag: str = ""  # its authentication tag (``control.signing``); "" when unsigned

    def signed_body(self) -> dict[str, Any]:
        """What the tag covers: every field but the tag, ``issued_at`` in whole microseconds (a
        float would not survive a database's timestamp column exactly)."""
        moment = self.issued_at if self.issued_at.tzinfo else self.issued_at.replace(tzinfo=UTC)
        return {
            "command_id": self.command_id,
            "kind": self.kind,
            "target": self.target,
            "args": self.args,
            "issued_at_us": (moment - _EPOCH) // timedelta(microseconds=1),
            "issued_by": self.issued_by,
        }

    def describe(self) -> str:
        """A short human form: ``shift chat --to s1 --steps 5,25,50,100 --interval 60``."""
        if self.kind.startswith("chaos_"):
            return _describe_chaos(self)
        parts = [self.kind] + ([self.target] if self.target else [])
        if "to" in self.args:
            parts.append(f"--to {self.args['to']}")
        if "steps" in self.args:
            parts.append("--steps " + ",".join(f"{step:g}" for step in self.args["steps"]))
        if "interval_s" in self.args:
            parts.append(f"--interval {self.args['interval_s']:g}")
        if self.args.get("timeout_s") is not None:
            parts.append(f"--timeout {self.args['timeout_s']:g}")
        return " ".join(parts)

    def to_wire(self) -> dict[str, Any]:
        """JSON-able form (``issued_at`` as epoch seconds) for Redis and for JSON output."""
        return {
            "command_id": self.command_id,
            "kind": self.kind,
            "target": self.target,
            "args": dict(self.args),
            "issued_at": self.issued_at.timestamp(),
            "issued_by": self.issued_by,
            "tag": self.tag,
        }


def _describe_chaos(command: Command) -> str:
    """``chaos inject p1 --kind error --probability 0.5 --until 2026-...Z --status 503``."""
    parts = ["chaos", command.kind.removeprefix("chaos_")] + ([command.target] if command.target else [])
    args = command.args
    if "kind" in args:
        parts += [f"--kind {args['kind']}", f"--probability {args['probability']:g}"]
        parts.append(f"--until {iso(args['until'])}")
    for key, option, unit in (
        ("status", "--status", ""),
        ("delay_s", "--delay", "s"),
        ("after_chunks", "--after-chunks", ""),
    ):
        if args.get(key) is not None:
            parts.append(f"{option} {args[key]:g}{unit}")
    return " ".join(parts)


def default_issuer() -> str:
    """``user@host`` of whoever runs the CLI: the audit trail's answer to "who drained it?"."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:MAX_TARGET]


def _name(value: Any, what: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise CommandError(f"{what}: must be a string (got {value!r})")
    if _CONTROL_CHARS.search(value):
        raise CommandError(f"{what}: must not contain control characters (got {value[:80]!r})")
    text = value.strip(" ")
    if not text and not allow_empty:
        raise CommandError(f"{what}: must not be empty")
    if len(text) > MAX_TARGET:
        raise CommandError(f"{what}: at most {MAX_TARGET} characters (got {len(text)})")
    return text


def _seconds(value: Any, what: str) -> float:
    """A positive duration in seconds (``litellm_failover.durations``' grammar: 60, 30s, 5m), at
    most ``MAX_DURATION_S``: a replica gets these from whoever can write a command row."""
    try:
        seconds = parse_duration(value, what)
        return bounded_number(seconds, what, low=0.0, high=MAX_DURATION_S)
    except (DurationError, UntrustedError) as exc:
        raise CommandError(str(exc)) from None


def parse_steps(value: str | Sequence[Any], what: str = "--steps") -> list[float]:
    """``"5,25,50,100"`` (or a list) as percentages: increasing, each in (0, 100], ending at 100."""
    items: Sequence[Any]
    if isinstance(value, str):
        items = [item.strip().removesuffix("%") for item in value.split(",")]
        if not value.strip():
            raise CommandError(f"{what}: must list the steps, e.g. 5,25,50,100")
    elif isinstance(value, Sequence):
        items = value
    else:
        raise CommandError(f"{what}: must be a list of percentages (got {value!r})")
    if not items:
        raise CommandError(f"{what}: must list the steps, e.g. 5,25,50,100")
    if len(items) > MAX_STEPS:
        raise CommandError(f"{what}: at most {MAX_STEPS} steps (got {len(items)})")
    steps: list[float] = []
    for item in items:
        try:
            if isinstance(item, bool):
                raise ValueError
            step = float(item)
        except (TypeError, ValueError):
            raise CommandError(f"{what}: {item!r} is not a number (use e.g. 5,25,50,100)") from None
        if not math.isfinite(step) or step <= 0 or step > 100:
            raise CommandError(f"{what}: each step is a percentage above 0 and at most 100 (got {item!r})")
        if steps and step <= steps[-1]:
            raise CommandError(f"{what}: steps must increase ({steps[-1]:g} then {step:g} in {_show(value)})")
        steps.append(step)
    if steps[-1] != 100:
        raise CommandError(f"{what}: the last step must be 100 (got {steps[-1]:g} in {_show(value)})")
    return steps


def _show(value: str | Sequence[Any]) -> str:
    return value if isinstance(value, str) else ",".join(str(item) for item in value)


def build_command(
    kind: str,
    target: str = "",
    args: Mapping[str, Any] | None = None,
    *,
    command_id: str | None = None,
    issued_at: datetime | None = None,
    issued_by: str | None = None,
    tag: str = "",
) -> Command:
    """Validate a command and return it; ``CommandError`` names the option or field at fault.

    Field names in messages are the CLI's (``--steps``), since that is where bad input is typed;
    a replica that refuses a command it received reports the same words.
    """
    if kind not in KINDS:
        raise CommandError(f"unknown command {kind!r} (known: {', '.join(KINDS)})")
    if args is not None and not isinstance(args, Mapping):
        raise CommandError(f"args: must be an object (got {type(args).__name__})")
    raw = dict(args or {})
    what = "DEPLOYMENT_ID" if kind in DEPLOYMENT_KINDS else "GROUP"
    name = _name(target, what, allow_empty=kind in OPTIONAL_TARGET)
    moment = issued_at or datetime.now(UTC)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    clean: dict[str, Any] = {}
    if kind == "chaos_inject":
        try:
            clean = parse_fault_args(raw, moment)
        except FaultInputError as exc:
            raise CommandError(str(exc)) from None
        raw = {}
    elif kind == "drain":
        timeout = raw.pop("timeout_s", None)
        if timeout is not None:
            clean["timeout_s"] = _seconds(timeout, "--timeout")
    elif kind == "shift":
        for required, option in (("to", "--to"), ("steps", "--steps"), ("interval_s", "--interval")):
            if raw.get(required) is None:
                raise CommandError(f"shift: {option} is required")
        clean["to"] = _name(raw.pop("to"), "--to")
        clean["steps"] = parse_steps(raw.pop("steps"))
        clean["interval_s"] = _seconds(raw.pop("interval_s"), "--interval")
    if raw:
        raise CommandError(f"{kind}: unexpected arguments {sorted(raw)}")
    return Command(
        kind=cast(Kind, kind),
        target=name,
        args=clean,
        command_id=_name(command_id, "command_id") if command_id is not None else uuid.uuid4().hex,
        issued_at=moment,
        issued_by=_name(
            (issued_by if issued_by is not None else default_issuer())[:MAX_TARGET],
            "issued_by",
            allow_empty=True,
        ),
        tag=_name(tag, "tag", allow_empty=True) if tag else "",
    )


def from_wire(data: Mapping[str, Any]) -> Command:
    """The inverse of ``Command.to_wire``, validated again (the sender may not be our CLI)."""
    if not isinstance(data, Mapping):
        raise CommandError(f"command: must be an object (got {type(data).__name__})")
    issued = data.get("issued_at")
    if isinstance(issued, datetime):
        moment = issued
    else:
        try:
            seconds = bounded_number(issued, "issued_at", low=0.0, high=LATEST_EPOCH_S)
        except UntrustedError as exc:
            raise CommandError(f"issued_at: must be a time in epoch seconds ({exc})") from None
        moment = datetime.fromtimestamp(seconds, UTC)
    args = data.get("args")
    return build_command(
        str(data.get("kind", "")),
        data.get("target", ""),
        args if args is not None else {},
        command_id=str(data.get("command_id") or ""),
        issued_at=moment,
        issued_by=str(data.get("issued_by") or ""),
        tag=data.get("tag") or "",
    )

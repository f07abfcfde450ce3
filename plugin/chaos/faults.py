"""What one injected fault is, and the rules its input must follow (issue 5, fault injection).

The rules run on both ends of an operator command: the CLI refuses bad input before anything is
sent, and a replica checks again what it receives (``control.commands`` calls ``parse_fault_args``
for ``chaos_inject``). Messages name the CLI option (``--probability``), since that is where bad
input is typed. What only a running replica knows (is the deployment one of mine, is chaos
enabled, is the fault within ``chaos.max_duration_s``) is the plugin's to refuse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from litellm_failover.durations import DurationError, parse_duration

FaultKind = Literal["error", "latency", "stream_cut"]
FAULT_KINDS: tuple[FaultKind, ...] = ("error", "latency", "stream_cut")

DEFAULT_STATUS = 503
DEFAULT_AFTER_CHUNKS = 3
MAX_DELAY_S = 600.0  # a "latency" longer than any client timeout is an outage: use --kind error
MAX_AFTER_CHUNKS = 1_000_000

_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_ONLY_FOR = {"status": ("--status", "error"), "delay_s": ("--delay", "latency")}
_ONLY_FOR["after_chunks"] = ("--after-chunks", "stream_cut")


class FaultInputError(ValueError):
    """Input that is not a valid fault; the message names the option and the value."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One active fault on one deployment. Times are epoch seconds (``time.time()``), so that
    every replica ends a fault at the same moment whatever its start."""

    fault_id: str
    deployment_id: str
    kind: FaultKind
    probability: float
    ends_at: float
    started_at: float
    status: int | None = None
    delay_s: float | None = None
    after_chunks: int | None = None
    issued_by: str = ""
    source: str = "api"

    def describe(self) -> str:
        """``error 503 at p=0.5 on p1`` (for events and logs)."""
        if self.kind == "error":
            what = f"error {self.status}"
        elif self.kind == "latency":
            what = f"latency {self.delay_s or 0:g}s"
        else:
            what = f"stream_cut after {self.after_chunks} chunks"
        return f"{what} at p={self.probability:g} on {self.deployment_id}"

    def to_dict(self, injected: int | None = None) -> dict[str, Any]:
        """JSON-able form for status, command results and event details."""
        data: dict[str, Any] = {
            "fault_id": self.fault_id,
            "deployment_id": self.deployment_id,
            "kind": self.kind,
            "probability": self.probability,
            "started_at": iso(self.started_at),
            "ends_at": iso(self.ends_at),
            "issued_by": self.issued_by,
            "source": self.source,
        }
        for key in ("status", "delay_s", "after_chunks"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        if injected is not None:
            data["injected"] = injected
        return data


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


def parse_seconds(value: Any, what: str) -> float:
    """A positive duration in seconds (``litellm_failover.durations``' grammar: 500ms, 30s, 5m)."""
    try:
        return parse_duration(value, what)
    except DurationError as exc:
        raise FaultInputError(str(exc)) from None


def parse_time(value: Any, what: str = "--until") -> float:
    """An ISO 8601 time (no zone: UTC) or epoch seconds, as epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if not math.isfinite(number):
            raise FaultInputError(f"{what}: must be a time (got {value!r})")
        return number
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise FaultInputError(
                f"{what}: not an ISO time (got {value!r}; use e.g. 2026-05-01T14:30:00Z)"
            ) from None
    else:
        raise FaultInputError(f"{what}: must be an ISO time (got {value!r})")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_probability(value: Any) -> float:
    if isinstance(value, bool):
        raise FaultInputError(f"--probability: must be a number above 0 and at most 1 (got {value!r})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FaultInputError(
            f"--probability: must be a number above 0 and at most 1 (got {value!r})"
        ) from None
    if not math.isfinite(number) or number <= 0 or number > 1:
        raise FaultInputError(f"--probability: must be above 0 and at most 1 (got {value!r})")
    return number


def _whole(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INTEGER.match(value):
        number = int(value)
    else:
        raise FaultInputError(f"{what}: must be a whole number (got {value!r})")
    if not low <= number <= high:
        raise FaultInputError(f"{what}: must be from {low} to {high} (got {value!r})")
    return number


def parse_fault_args(raw: Mapping[str, Any], issued_at: datetime) -> dict[str, Any]:
    """Validate ``chaos_inject``'s arguments and return them clean: ``kind``, ``probability``,
    ``until`` (epoch seconds; ``duration_s`` is turned into it from ``issued_at``) and the kind's
    own option (``status``, ``delay_s`` or ``after_chunks``). A fault with no end is refused: a
    drill that outlives its operator's attention is an outage."""
    raw = dict(raw)
    kind = raw.pop("kind", None)
    if kind not in FAULT_KINDS:
        raise FaultInputError(f"--kind: unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
    if raw.get("probability") is None:
        raise FaultInputError("--probability: required (above 0, at most 1)")
    clean: dict[str, Any] = {"kind": kind, "probability": parse_probability(raw.pop("probability"))}
    duration, until = raw.pop("duration_s", None), raw.pop("until", None)
    if duration is not None and until is not None:
        raise FaultInputError("--for and --until: give one of them, not both")
    if duration is None and until is None:
        raise FaultInputError("a fault needs an end: give --for DURATION (e.g. 5m) or --until ISO-TIME")
    start = issued_at.timestamp()
    if duration is not None:
        clean["until"] = start + parse_seconds(duration, "--for")
    else:
        clean["until"] = parse_time(until)
        if clean["until"] <= start:
            shown = repr(until) if isinstance(until, str) else iso(clean["until"])
            raise FaultInputError(f"--until: {shown} is in the past (it is now {iso(start)})")
    for key, (option, owner) in _ONLY_FOR.items():
        if raw.get(key) is not None and kind != owner:
            raise FaultInputError(f"{option}: only for --kind {owner} (got --kind {kind})")
    if kind == "error":
        status = raw.pop("status", None)
        clean["status"] = DEFAULT_STATUS if status is None else _whole(status, "--status", 400, 599)
    elif kind == "latency":
        delay = raw.pop("delay_s", None)
        if delay is None:
            raise FaultInputError("--delay: required for --kind latency (e.g. 500ms, 2s)")
        clean["delay_s"] = parse_seconds(delay, "--delay")
        if clean["delay_s"] > MAX_DELAY_S:
            raise FaultInputError(f"--delay: at most {MAX_DELAY_S:g}s (got {delay!r})")
    else:
        after = raw.pop("after_chunks", None)
        clean["after_chunks"] = (
            DEFAULT_AFTER_CHUNKS if after is None else _whole(after, "--after-chunks", 0, MAX_AFTER_CHUNKS)
        )
    leftover = sorted(key for key, value in raw.items() if value is not None)
    if leftover:
        raise FaultInputError(f"chaos inject: unexpected arguments {leftover}")
    return clean


def kind_of(value: str) -> FaultKind:
    if value not in FAULT_KINDS:
        raise FaultInputError(f"--kind: unknown fault kind {value!r} (known: {', '.join(FAULT_KINDS)})")
    return cast(FaultKind, value)

"""The fake vLLM's switchable faults: the modes a drill can set, and how a request is checked.

A fault is set at start (``fake-vllm --fault``) or at run time (``POST /control/fault``), so both
the CLI's ``KEY=VALUE`` strings and JSON numbers must validate to the same ``Fault``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Fault mode -> {param: (type, default)}. Modes without params take none; anything else is a 400.
FAULT_MODES: dict[str, dict[str, tuple[type, float | int]]] = {
    "http_500": {},
    "hang": {},
    # Generation requests are held while /health, /v1/models and the GPU sidecar still answer (a
    # wedged engine behind a live HTTP server): requests pile up on a node its probes pass.
    "engine_hang": {},
    "slow": {"delay_s": (float, 3.0)},
    "drop_midstream": {"after_chunks": (int, 3)},
    "health_lie": {},
    "gpu_pressure": {},
    # /health and the GPU sidecar report failure while generation still works: every probe
    # ejects the node, yet it could serve (the drill's "every node down" panic-mode scenario).
    "health_fail": {},
}


class FaultError(ValueError):
    """A fault request names an unknown mode or a bad parameter (answered as HTTP 400)."""

    def __init__(self, message: str, param: str = "mode") -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class Fault:
    """The fault in force; ``params`` always holds every parameter of the mode, defaults filled."""

    mode: str
    params: dict[str, float | int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Flat, like the control request body, so a state read can be posted back as is."""
        return {"mode": self.mode, **self.params}


def parse_fault(mode: object, params: Mapping[str, object] | None = None) -> Fault:
    """Validate a fault request; strings are accepted for numbers so CLI ``KEY=VALUE`` works."""
    params = dict(params or {})
    if not isinstance(mode, str) or mode not in FAULT_MODES:
        raise FaultError(f"unknown fault mode {mode!r}; known modes: {', '.join(sorted(FAULT_MODES))}")
    spec = FAULT_MODES[mode]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        takes = f"it takes {', '.join(sorted(spec))}" if spec else "it takes no parameters"
        raise FaultError(f"fault mode {mode!r} has no parameter {unknown[0]!r}; {takes}", unknown[0])
    values = {
        name: _coerce_param(mode, name, kind, params.get(name, default))
        for name, (kind, default) in spec.items()
    }
    return Fault(mode, values)


def _coerce_param(mode: str, name: str, kind: type, raw: object) -> float | int:
    value: float | int | None = None
    if isinstance(raw, str):
        try:
            value = kind(raw.strip())
        except ValueError:
            value = None
    elif isinstance(raw, bool):
        value = None
    elif kind is int and isinstance(raw, int):
        value = raw
    elif kind is int and isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif kind is float and isinstance(raw, int | float):
        value = float(raw)
    if value is None or not math.isfinite(value) or value < 0:
        what = "integer" if kind is int else "number"
        raise FaultError(
            f"fault mode {mode!r}: parameter {name!r} must be a non-negative {what}, got {raw!r}", name
        )
    return value


class FaultSwitch:
    """The fault in force, and the event that lets requests held by ``hang`` or ``slow`` go on.

    Every change swaps in a fresh event and sets the old one: held requests wake and re-read the
    fault (a ``hang`` replaced by ``slow`` now waits ``delay_s``), new requests wait on the new one.
    """

    def __init__(self) -> None:
        self.fault: Fault | None = None
        self._release = asyncio.Event()
        self._stopping = False

    @property
    def mode(self) -> str | None:
        return self.fault.mode if self.fault else None

    def set(self, mode: str, params: Mapping[str, object]) -> Fault:
        """Switch to a fault mode; raises ``FaultError`` for an unknown mode or a bad param."""
        self.fault = parse_fault(mode, params)
        self._wake()
        return self.fault

    def clear(self) -> None:
        self.fault = None
        self._wake()

    def open(self) -> None:
        """At server start: hold requests again (a stopped server released them all)."""
        self._stopping = False
        self._release = asyncio.Event()

    def release_all(self) -> None:
        """At server stop: nothing is held any more, whatever the fault."""
        self._stopping = True
        self._release.set()

    def _wake(self) -> None:
        released, self._release = self._release, asyncio.Event()
        released.set()

    async def hold(self, generation: bool = True) -> bool:
        """``hang`` (and ``engine_hang``, for a ``generation`` request) waits for the fault to
        change; ``slow`` waits ``delay_s`` (or until a change).

        False when the server is stopping, which the caller answers with a 503.
        """
        holding = ("hang", "slow", "engine_hang") if generation else ("hang", "slow")
        while not self._stopping:
            fault, release = self.fault, self._release
            if fault is None or fault.mode not in holding:
                return True
            if fault.mode in ("hang", "engine_hang"):
                await release.wait()
                continue
            try:
                await asyncio.wait_for(release.wait(), fault.params["delay_s"])
            except TimeoutError:
                pass
            return True
        return False

"""Where a LiteLLM attempt lives on the stack, for the rescue (``litellm_failover.rescue``).

The rescue fails an attempt in flight from outside; it needs, at the pick (inside the plugin's
routing hook, in the attempt's task), something it can later test: is this attempt still waiting
on its upstream call, not started yet, or gone? LiteLLM's two layouts differ, and the one found is
told by the frames on the stack (a capability), never by the version string:

- **the Router frame** (LiteLLM 1.108.x): the caller of ``async_get_available_deployment`` picks
  and then awaits the upstream call in the same frame (for a stream, up to its first chunk). While
  that frame is in the task's chain of awaits the attempt is waiting; once it returns it is gone.
- **the step runner** (LiteLLM 1.110.x, ``router_rust``): ``RustCore._run_steps`` runs every step
  of a request in one frame: a ``select`` step (which calls the plugin's hook), then an
  ``attempt`` step (``_Driver.attempt`` -> ``_routed_attempt``, which awaits ``host.invoke`` and,
  for a stream, its first chunk), then ``done`` or another select/attempt for a retry. The pick
  comes before the attempt's frame exists, so the handle is the ``_run_steps`` frame plus what
  tells this attempt from the request's others: the driver's attempt count at the pick (the next
  attempt is ours) and the picked deployment id (checked against the attempt step's own).

Every name read here is checked when the layout is found (``locate``); a layout that does not
match finds nothing, and the rescue counts the attempt as untracked rather than guess.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import CodeType, CoroutineType, FrameType
from typing import Any

_MAX_DEPTH = 16  # frames walked up from the hook; 1.108.7's pick is 6 frames up, 1.110.2's 5

_PICK_FUNCTIONS = frozenset({"async_get_available_deployment"})
"""1.108.x: the Router functions that pick a deployment; their caller is the attempt."""

_STEP_RUNNER = "_run_steps"
"""1.110.x: ``RustCore._run_steps``, the loop that answers a request's select and attempt steps."""
# What the step runner's attempt coroutine must have for its state to be read from its locals:
# ``in_call`` is True exactly while it awaits the litellm call or its stream's first chunk,
# ``answered`` is bound once the call answered, ``response`` once the first chunk came, and
# ``error`` while a failure is being handled.
_ROUTED_LOCALS = frozenset({"in_call", "answered", "response", "error"})


class AttemptState(enum.Enum):
    WAITING = "waiting"  # its upstream call is in flight and has delivered nothing
    PENDING = "pending"  # picked, its call not made yet (1.110: between the select and the call)
    GONE = "gone"  # answered, failed, past its first byte, or its task ended


@dataclass(slots=True)
class RouterFrame:
    """1.108.x: the Router frame that picked and awaits the call."""

    frame: FrameType

    def state(self, awaited: Any) -> AttemptState:
        # The frame is in the task's chain (else the caller saw GONE): it still awaits its call.
        return AttemptState.WAITING


@dataclass(slots=True)
class StepRunner:
    """1.110.x: the ``_run_steps`` frame, and which of its attempts is the one picked."""

    frame: FrameType
    driver: Any  # router_rust's ``_Driver``: its ``_attempts`` counts the attempts started
    attempts_before: int  # the count at the pick: the attempt picked is the next one
    deployment_id: str
    attempt_code: CodeType  # ``_Driver.attempt``
    routed_code: CodeType  # ``_Driver._routed_attempt``

    def state(self, awaited: Any) -> AttemptState:
        """``awaited``: what the ``_run_steps`` frame awaits now."""
        started = self.driver._attempts - self.attempts_before
        if started <= 0:
            return AttemptState.PENDING  # still selecting, or between the select and the attempt
        if started > 1 or not isinstance(awaited, CoroutineType) or awaited.cr_code is not self.attempt_code:
            return AttemptState.GONE  # a later attempt (a retry) started, or ours returned
        step = awaited.cr_frame.f_locals.get("step") if awaited.cr_frame is not None else None
        if not isinstance(step, Mapping) or step.get("deployment_id") != self.deployment_id:
            return AttemptState.GONE  # not the deployment picked (the pick was overridden)
        routed = awaited.cr_await
        inside = isinstance(routed, CoroutineType) and routed.cr_code is self.routed_code
        if not inside or routed.cr_frame is None:
            return AttemptState.GONE  # the count moved inside ``_routed_attempt``: it has returned
        local = routed.cr_frame.f_locals
        if "response" in local or "error" in local:
            return AttemptState.GONE  # its first chunk came, or its failure is being handled
        if local.get("in_call") is True:
            return AttemptState.WAITING
        # Not in the call: before it (pre-call checks) unless the call already answered.
        return AttemptState.GONE if "answered" in local else AttemptState.PENDING


Layout = RouterFrame | StepRunner


class _KnownDepths:
    """The depths, counted up from the capturing frame, where a layout was found before, nearest
    first. A pick reaches the hook through the same few LiteLLM paths every time (1.108.7's Router
    pick; 1.110's step runner, or its pick without a call), so reading the frame at a known depth
    (``sys._getframe(n)`` creates that one frame object, not the ones between) finds the layout
    without walking: walking up creates a frame object for every frame on the way, which the
    interpreter must then fill in as each returns, a few microseconds on every pick."""

    def __init__(self, limit: int = 4) -> None:
        self.limit = limit
        self.depths: tuple[int, ...] = ()

    def learn(self, depth: int) -> None:
        if depth not in self.depths and len(self.depths) < self.limit:
            self.depths = tuple(sorted((*self.depths, depth)))  # replaced whole: readers see one or the other


_KNOWN = _KnownDepths()


def find(skip: int, deployment_id: str) -> Layout | None:
    """The attempt's layout, looking up from the frame ``skip`` levels above the caller: first at
    the depths where one was found before (one frame read each), walking up only when none holds
    one (a path not seen yet). A known depth is taken when the frame there is a pick function or
    the step runner, as the walk would take it; the walk would stop earlier only at a nearer such
    frame, that is a pick nested inside another pick's routing hook, which no LiteLLM path makes."""
    base = skip + 1  # sys._getframe(0) is this function
    getframe = sys._getframe
    for depth in _KNOWN.depths:
        try:
            frame = getframe(base + depth)
        except ValueError:  # a shallower stack than that path's
            continue
        name = frame.f_code.co_name
        if name in _PICK_FUNCTIONS:  # ``_layout_at`` inline for 1.108's Router frame (every pick there)
            back = frame.f_back
            return RouterFrame(back) if back is not None else None
        if name == _STEP_RUNNER:
            return _step_runner(frame, deployment_id)
    found = _walk(getframe(base))
    if found is None:
        return None
    depth, frame = found
    _KNOWN.learn(depth)
    return _layout_at(frame, deployment_id)


def locate(frame: FrameType | None, deployment_id: str) -> Layout | None:
    """From a frame inside the pick hook, up: the attempt's layout, or None if neither is found."""
    found = _walk(frame)
    return None if found is None else _layout_at(found[1], deployment_id)


def _walk(frame: FrameType | None) -> tuple[int, FrameType] | None:
    """The nearest pick function or step runner frame from ``frame`` up, and how far up it is."""
    for depth in range(_MAX_DEPTH):
        if frame is None:
            return None
        name = frame.f_code.co_name
        if name in _PICK_FUNCTIONS or name == _STEP_RUNNER:
            return depth, frame
        frame = frame.f_back
    return None


def _layout_at(frame: FrameType, deployment_id: str) -> Layout | None:
    if frame.f_code.co_name == _STEP_RUNNER:
        return _step_runner(frame, deployment_id)
    return RouterFrame(frame.f_back) if frame.f_back is not None else None


_RUNNER_CODES: dict[tuple[CodeType, CodeType], bool] = {}
"""Per (``attempt``, ``_routed_attempt``) code pair, whether its locals are the ones read here:
checked once per pair, not on every pick."""


def _readable(attempt_code: CodeType, routed_code: CodeType) -> bool:
    key = (attempt_code, routed_code)
    known = _RUNNER_CODES.get(key)
    if known is None:
        known = "step" in attempt_code.co_varnames and _ROUTED_LOCALS <= {
            *routed_code.co_varnames,
            *routed_code.co_cellvars,
        }
        if len(_RUNNER_CODES) < 16:  # a driver class rebuilt again and again is checked each time
            _RUNNER_CODES[key] = known
    return known


def _step_runner(frame: FrameType, deployment_id: str) -> StepRunner | None:
    driver = frame.f_locals.get("driver")
    attempts = getattr(driver, "_attempts", None)
    attempt = getattr(type(driver), "attempt", None)
    routed = getattr(type(driver), "_routed_attempt", None)
    attempt_code = getattr(attempt, "__code__", None)
    routed_code = getattr(routed, "__code__", None)
    if (
        type(attempts) is not int
        or not isinstance(attempt_code, CodeType)
        or not isinstance(routed_code, CodeType)
        or not _readable(attempt_code, routed_code)
    ):
        return None  # another step runner than the one read here
    return StepRunner(frame, driver, attempts, deployment_id, attempt_code, routed_code)

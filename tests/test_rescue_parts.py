"""Rescue (issue 12 §1), the parts without a Router: which ejections rescue, and the counter."""

from __future__ import annotations

import asyncio
import sys
from types import FrameType

import pytest

from litellm_failover.events import FailoverEvent
from litellm_failover.litellm_compat.attempt_frames import RouterFrame, locate
from litellm_failover.metrics.catalog import REQUESTS_RESCUED
from litellm_failover.metrics.counters import EventCounters
from litellm_failover.rescue import stopped_answering
from litellm_failover.rescue.interrupt import _running_task, capture


def state_change(
    source: str, from_state: str = "healthy", to_state: str = "unhealthy", **details
) -> FailoverEvent:
    return FailoverEvent(
        "state_change",
        "chat",
        deployment_id="p1",
        details={"from_state": from_state, "to_state": to_state, "source": source, **details},
    )


@pytest.mark.parametrize(
    ("event", "rescues"),
    [
        (state_change("probe"), True),  # failed probe rounds: it does not answer
        (state_change("fleet"), True),  # another replica ejected it
        (state_change("traffic", outcome="connect_error"), True),
        (state_change("traffic", outcome="timeout"), True),
        (state_change("traffic", outcome="stream_cut"), True),
        (state_change("probe", from_state="degraded"), True),
        (state_change("traffic", outcome="server_error"), False),  # it answers, with 5xx, fast
        (state_change("ramp"), False),  # a failback ramp aborted: nothing hangs on it
        (state_change("probe", from_state="recovering"), False),  # not routed: nothing waits on it
        (state_change("probe", to_state="degraded"), False),
        (FailoverEvent("failover", "chat", deployment_id="p1", details={"source": "probe"}), False),
    ],
)
def test_only_an_ejection_for_not_answering_rescues(event, rescues):
    assert stopped_answering(event) is rescues


def test_request_rescued_events_are_counted_by_cause_with_a_bounded_label():
    counters = EventCounters()
    for cause in ("ejected", "ejected", "first_token_timeout", "made-up\nvalue"):
        counters(FailoverEvent("request_rescued", "chat", deployment_id="p1", details={"cause": cause}))
    counts = counters.snapshot()[REQUESTS_RESCUED]
    assert counts == {
        ("chat", "p1", "p1", "ejected"): 2,
        ("chat", "p1", "p1", "first_token_timeout"): 1,
        ("chat", "p1", "p1", "other"): 1,
    }


async def test_a_pick_outside_a_known_layout_is_not_followed():
    """No Router on the stack, or a step runner by name only (its driver counts attempts but has
    no ``_routed_attempt`` whose locals say where an attempt stands): nothing is captured (the
    rescuer counts it as untracked) rather than a wrong frame followed."""
    assert capture("p1") is None

    class Partial:
        _attempts = 0

        async def attempt(self, step: dict) -> None: ...

    async def _run_steps(driver: object) -> FrameType:
        return sys._getframe(0)

    frame = await _run_steps(Partial())
    assert locate(frame, "p1") is None


def _capture_from(depth: int) -> object:
    return capture("p1") if depth == 0 else _capture_from(depth - 1)


def async_get_available_deployment(depth: int) -> tuple[object, FrameType]:
    """Named as LiteLLM's pick: the attempt is its caller's frame."""
    return _capture_from(depth), sys._getframe(1)


def _attempt(depth: int) -> tuple[object, FrameType]:
    return async_get_available_deployment(depth)


async def test_a_pick_is_captured_from_its_own_frame_on_each_path_seen_and_each_new_one():
    """The capture reads the frames at the depths where it found a pick before, and walks up only
    on a path it has not seen: each pick, on either path, is captured from its own caller."""
    for depth in (2, 5, 2, 5, 3):
        handle, caller = _attempt(depth)
        assert isinstance(handle.layout, RouterFrame) and handle.layout.frame is caller
        assert handle.task is asyncio.current_task()


async def test_each_task_captures_itself_though_a_child_starts_with_its_parents_context():
    """The task is remembered in the task's context, which a child task starts with a copy of:
    the child must still find itself, and the parent itself again afterwards."""
    parent = asyncio.current_task()
    assert _running_task() is parent

    async def child() -> object:
        return _running_task(), asyncio.current_task()

    seen, itself = await asyncio.create_task(child())
    assert seen is itself and seen is not parent
    assert _running_task() is parent

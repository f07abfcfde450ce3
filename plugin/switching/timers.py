"""Time in traffic switching: what falls due (``advance``) and the task that waits for it.

``advance`` runs everything due by now on the board (drain timeouts, hold-downs over, ramp and
shift steps) and says when the next thing is due. ``Driver`` is the one background task that
sleeps until then (or until the board says its deadlines moved) and calls its ``step``, which
advances and has the effects applied. Lost in-flight end signals are not its business: the
plugin's refresh loop expires them, and a drain they held completes through ``attempt_ended``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from litellm_failover.events import EventType
from litellm_failover.switching.board import Board
from litellm_failover.switching.moves import finish_transfer, release_due, settle

logger = logging.getLogger("litellm_failover")

MAX_IDLE_S = 1.0  # the driver wakes at least this often (a late change it was not woken for)


def advance(board: Board) -> float | None:
    """Everything due by now; returns when something is next due (None: nothing pending)."""
    now = board.clock()
    board.drains.time_out(now)
    release_due(board, now)
    stepped: list[str] = []
    for group, state in board.states():
        for deployment_id, stepper in state.slow.items():
            if not stepper.due(now):
                continue
            stepper = stepper.advanced(now)
            board.emit.slow_step(deployment_id, group, stepper)
            current = board.state(group)
            if stepper.last:
                board.put(group, current.without_slow({deployment_id}))
                board.emit(
                    EventType.RAMP_COMPLETED,
                    group,
                    f"{deployment_id} at its full weight after slow start",
                    deployment_id=deployment_id,
                    steps=list(stepper.steps),
                    duration_s=round(now - stepper.started_at, 3),
                )
            else:
                board.put(group, current.with_slow(deployment_id, stepper))
            if group not in stepped:
                stepped.append(group)
    for group in stepped:
        settle(board, group)
        board.emit.rebuild(group, source="ramp", reason="slow start step")
    for group, state in board.states():
        transfer = state.transfer
        if transfer is None or not transfer.stepper.due(now):
            continue
        transfer = transfer.stepped(transfer.stepper.advanced(now))
        board.put(group, replace(board.state(group), transfer=transfer))
        board.emit.step(transfer, board.admitted_of(transfer.target))
        if transfer.stepper.last:
            finish_transfer(board, group, transfer, now)
        settle(board, group)
        percent = transfer.stepper.percent
        board.emit.rebuild(
            group, source=transfer.kind, reason=f"{transfer.kind} to {transfer.label} at {percent:g}%"
        )
    return next_deadline(board)


def next_deadline(board: Board) -> float | None:
    times = board.drains.deadlines()
    for _, state in board.states():
        times += [h.until for h in state.holds.values() if h.until is not None]
        times += [s.next_at for s in state.slow.values() if not s.last]
        if state.transfer is not None and not state.transfer.stepper.last:
            times.append(state.transfer.stepper.next_at)
    return min(times) if times else None


class Driver:
    """Calls ``step`` whenever something is due (its return: when next), or when ``wake`` is set."""

    def __init__(
        self, step: Callable[[], float | None], clock: Callable[[], float], wake: asyncio.Event
    ) -> None:
        self._step = step
        self._clock = clock
        self._wake = wake
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

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
                deadline = self._step()
            except Exception:
                logger.exception("traffic switching: advancing ramps and drains failed")
                deadline = None
            wait = MAX_IDLE_S if deadline is None else min(MAX_IDLE_S, max(0.0, deadline - self._clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

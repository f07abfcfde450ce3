"""The operator verbs: ``drain``, ``undrain``, ``failover``, ``failback``, ``shift``.

Each validates its input first and raises ``OperatorError`` before anything changes (a refused
verb leaves routing exactly as it was), then changes the board and queues its events and the one
rebuild its change needs; the answer is the dict the operator sees. The controller turns the
queue into the verb's ``Effects``; the core applies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from litellm_failover.switching.board import Board
from litellm_failover.switching.errors import OperatorError
from litellm_failover.switching.moves import (
    abort_transfer,
    came_back,
    failback_to,
    finish_transfer,
    rollback_shift,
    settle,
    start_drain,
)
from litellm_failover.switching.ramp import Stepper, Transfer
from litellm_failover.switching.shift import resolve_target
from litellm_failover.switching.state import PlannedFailover
from litellm_failover.switching.steps import check_interval, check_steps


def drain(board: Board, deployment_id: str, *, timeout_s: float | None, source: str) -> dict[str, Any]:
    group = board.group_of(deployment_id)
    if timeout_s is None:
        timeout = board.settings.drain.timeout_s
    else:
        try:
            timeout = check_interval(timeout_s, "timeout_s")
        except ValueError as exc:
            raise OperatorError(f"drain {deployment_id}: {exc}") from None
    existing = board.drains.get(deployment_id)
    if existing is not None:  # idempotent: a second drain changes nothing
        return board.drains.result(existing, already=True)
    started = start_drain(board, deployment_id, group, timeout, source, cause="drain")
    settle(board, group)
    board.emit.rebuild(
        group, source="drain", reason=f"{deployment_id} drained by operator", deployment_id=deployment_id
    )
    board.drains.settle(deployment_id, board.clock())  # nothing in flight: drained at once
    return board.drains.result(started)


def undrain(board: Board, deployment_id: str, *, source: str) -> dict[str, Any]:
    """A deployment that is not draining: a no-op (``changed: False``), not an error, so an
    undrain sent to every replica of a fleet succeeds on one that never had the drain."""
    group = board.group_of(deployment_id)
    if deployment_id not in board.drains:
        return {
            "deployment_id": deployment_id,
            "group": group,
            "changed": False,
            "state": "not draining",
            "message": f"{deployment_id} is not draining: nothing to undrain",
        }
    now = board.clock()
    board.drains.end(deployment_id, now, source)
    planned = board.state(group).planned
    if planned is not None:
        left = planned.drained - {deployment_id}
        board.put(
            group, replace(board.state(group), planned=replace(planned, drained=left) if left else None)
        )
    back = came_back(board, deployment_id, now, via=source, operator=True)
    settle(board, group)
    board.emit.rebuild(
        group, source="drain", reason=f"{deployment_id} undrained by operator", deployment_id=deployment_id
    )
    return {
        "deployment_id": deployment_id,
        "group": group,
        "changed": True,
        "state": back,
        "message": f"{deployment_id} undrained: {back}",
    }


def failover(board: Board, group: str, *, source: str) -> dict[str, Any]:
    """Planned failover: drain ``group``'s primary tier (its best ``order``, the one serving it
    in normal times) so traffic goes to the next tier; work in flight finishes. Refused when
    no standby is routable. Stays until ``failback(group)``: never an automatic failback."""
    board.require_group(group)
    state = board.state(group)
    running = state.transfer
    if running is not None and running.kind == "shift":
        raise OperatorError(shift_running(group, running))
    existing = state.planned
    if existing is not None:
        return {
            "group": group,
            "changed": False,
            "from_tier": existing.tier,
            "to_tier": existing.to_tier,
            "drained": sorted(existing.drained),
            "message": f"{group} is already failed over from tier {existing.tier}",
        }
    members = board.members(group)
    tier = min(board.spec(i).tier for i in members)  # the primary tier
    primary = [i for i in members if board.spec(i).tier == tier]
    standby = [
        i for i in members if board.spec(i).tier > tier and board.routable(i) and i not in board.drains
    ]
    if not standby:
        raise OperatorError(
            f"group {group!r} has no routable standby behind tier {tier}: "
            "a planned failover would leave it nothing to serve from"
        )
    now = board.clock()
    to_tier = min(board.spec(i).tier for i in standby)
    if running is not None:  # a failback ramp toward this tier: the operator overrules it
        reason = abort_transfer(board, group, running, now, "superseded by a planned failover", eject=False)
        board.emit.rebuild(group, source="ramp", reason=reason)
    for deployment_id in primary:
        if deployment_id not in board.drains:
            start_drain(board, deployment_id, group, board.settings.drain.timeout_s, source, cause="failover")
    planned = PlannedFailover(tier, frozenset(primary), to_tier, now, source)
    board.put(group, replace(board.state(group), planned=planned))
    settle(board, group)
    board.emit.rebuild(group, source="manual", reason=f"planned failover of tier {tier} by operator")
    for deployment_id in primary:
        board.drains.settle(deployment_id, now)
    return {
        "group": group,
        "changed": True,
        "from_tier": tier,
        "to_tier": to_tier,
        "drained": primary,
        "in_flight": {i: board.inflight.count(i) for i in primary},
        "message": f"{group}: tier {tier} draining ({', '.join(primary)}), tier {to_tier} serves",
    }


def failback(board: Board, group: str, *, source: str) -> dict[str, Any]:
    """Bring the primary back through the ramp: after a planned failover, a manual hold, a
    hold-down not yet over, or a completed shift. Also cancels a running shift (rolled back
    at once): the operator's way to stop a canary."""
    board.require_group(group)
    now = board.clock()
    state = board.state(group)
    running = state.transfer
    if running is not None and running.kind == "failback":
        return {
            "group": group,
            "changed": False,
            "ramp": running.describe(now),
            "message": f"{group}: failback already ramping (step {running.stepper.index + 1})",
        }
    if running is not None:
        reason = rollback_shift(board, group, running, now, "rolled back by failback")
        board.emit.rebuild(group, source="shift", reason=reason)
        return {
            "group": group,
            "changed": True,
            "message": f"{group}: running shift to {running.label} rolled back",
        }
    if state.planned is not None:
        board.put(group, replace(state, planned=None))
        for deployment_id in sorted(state.planned.drained):
            if deployment_id in board.drains:
                board.drains.end(deployment_id, now, source)
        return _failback(board, group, state.planned.tier, now, source, "after a planned failover")
    shifted = state.shifted
    if shifted is not None:
        target = frozenset(board.natural(group).serving)
        board.put(group, replace(state, shifted=None))
        if not target or target <= shifted.target:
            settle(board, group)
            board.emit.rebuild(group, source="failback", reason="completed shift ended by failback")
            return {
                "group": group,
                "changed": True,
                "message": f"{group}: shift hold to {shifted.label} ended",
            }
        tier = min(board.spec(i).tier for i in target)
        why = f"from the shift to {shifted.label}"
        return _failback(board, group, tier, now, source, why, base=shifted.target, ids=target)
    held = sorted(state.holds.values(), key=lambda h: h.tier)
    if held:
        return _failback(board, group, held[0].tier, now, source, "released by operator")
    best = min(board.spec(i).tier for i in board.members(group))
    serving_tier = board.serving_tier(board.table(group))
    if serving_tier is not None and serving_tier <= best:
        return {
            "group": group,
            "changed": False,
            "message": f"{group} already serves from its primary tier {best}: nothing to fail back",
        }
    raise OperatorError(
        f"group {group!r}: tier {best} has no routable deployment yet, nothing to fail back to "
        f"(tier {serving_tier} serves)"
    )


def shift(
    board: Board, group: str, to: str, steps: Sequence[float], interval_s: float, *, source: str
) -> dict[str, Any]:
    board.require_group(group)
    members = board.members(group)
    target, label = resolve_target(group, to, members, {i: board.spec(i) for i in members})
    try:
        checked = check_steps(steps)
        interval = check_interval(interval_s)
    except ValueError as exc:
        raise OperatorError(f"shift {group}: {exc}") from None
    state = board.state(group)
    running = state.transfer
    if running is not None:
        if running.kind == "shift":
            raise OperatorError(shift_running(group, running))
        raise OperatorError(
            f"a failback ramp is running on {group!r} (step {running.stepper.index + 1} of "
            f"{len(running.stepper.steps)}): wait for it to complete"
        )
    if not [i for i in target if board.routable(i) and i not in board.drains]:
        raise OperatorError(f"shift target {label!r} has no routable, undrained deployment")
    shifted = state.shifted
    if shifted is not None and shifted.target == target:
        raise OperatorError(f"all of {group!r}'s traffic already goes to {label}")
    table = board.table(group)
    if shifted is None and table.split is None and table.serving and set(table.serving) <= target:
        raise OperatorError(f"{label} already serves all of {group!r}'s traffic: nothing to shift")
    now = board.clock()
    transfer = Transfer(
        kind="shift",
        group=group,
        target=target,
        label=label,
        stepper=Stepper(checked, interval, now, now),
        via=source,
        base=shifted.target if shifted else None,
        previous=shifted.target if shifted else None,
        previous_label=shifted.label if shifted else None,
    )
    # A held primary named as the target: the operator decides its traffic now.
    board.put(group, replace(state.without(*target), shifted=None, transfer=transfer))
    board.emit.step(transfer, board.admitted_of(target))
    if transfer.stepper.last:
        finish_transfer(board, group, transfer, now)
    settle(board, group)
    board.emit.rebuild(group, source="shift", reason=f"shift to {label} at {checked[0]:g}%")
    return {
        "group": group,
        "changed": True,
        "to": label,
        "deployments": sorted(target),
        "steps": list(checked),
        "interval_s": interval,
        "step": 1,
        "percent": checked[0],
        "message": f"{group}: shifting to {label}, {checked[0]:g}% now, a step every {interval:g}s",
    }


def shift_running(group: str, transfer: Transfer) -> str:
    return (
        f"a shift is already running on {group!r} (to {transfer.label}, step "
        f"{transfer.stepper.index + 1} of {len(transfer.stepper.steps)}); wait for it to complete, "
        f"or roll it back with failback {group}"
    )


def _failback(
    board: Board, group: str, tier: int, now: float, via: str, why: str, **target: Any
) -> dict[str, Any]:
    result = failback_to(board, group, tier, now, via, why, **target)
    board.emit.rebuild(group, source="failback", reason=f"failback of tier:{tier} ({why})")
    return result

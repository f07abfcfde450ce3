"""The state changes shared by the operator verbs, the timers and the health transitions.

Each move replaces a group's ``GroupState`` on the ``Board`` and queues the events it causes in
the board's outbox; none of them rebuilds a table. Whoever called a move (a verb, a timer step,
the controller's reaction to an outcome) decides whether its change needs a rebuild, and queues
that once, with the source and reason the ``failover`` event should carry. A reaction to a health
transition queues none at all: the core rebuilds the group after every transition anyway.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any

from litellm_failover.events import EventType
from litellm_failover.health import Transition
from litellm_failover.switching.board import Board
from litellm_failover.switching.drain import Drain
from litellm_failover.switching.ramp import Hold, Shifted, Transfer


def settle(board: Board, group: str) -> None:
    """After a change: the standby check (a held primary may have to serve at once), then the
    views other threads read and the timer driver's wake-up."""
    standby_check(board, group, board.clock())
    board.refresh()


def start_drain(
    board: Board, deployment_id: str, group: str, timeout_s: float, via: str, *, cause: str
) -> Drain:
    board.put(group, board.state(group).without(deployment_id))  # drained: neither held nor ramping
    return board.drains.start(deployment_id, group, timeout_s, board.clock(), via=via, cause=cause)


def came_back(board: Board, deployment_id: str, now: float, *, via: str, operator: bool) -> str:
    """A deployment routable again (a recovery, or an undrain): how it gets traffic back."""
    spec = board.spec(deployment_id)
    group = spec.group
    board.put(group, board.state(group).without(deployment_id))
    if deployment_id in board.drains or not board.routable(deployment_id):
        return "drained" if deployment_id in board.drains else "waiting for health"
    table = board.table(group)
    if table.panic or not table.serving:
        return "serving (nothing else could)"
    state = board.state(group)
    if state.transfer is not None:
        running = state.transfer
        return f"joins the running {running.kind}" if deployment_id in running.target else "standby"
    if state.shifted is not None:
        return "serving per the completed shift"
    serving_tier = board.serving_tier(table)
    if table.strategy == "primary-standby" and serving_tier is not None:
        if spec.tier > serving_tier:
            return "standby"
        if spec.tier < serving_tier:
            if operator:
                failback_to(board, group, spec.tier, now, via, f"{deployment_id} undrained")
                return "ramping (failback)"
            hold(board, deployment_id, group, spec.tier, now)
            return "held"
    return "slow start" if start_slow(board, deployment_id, now) else "serving"


def went_out(board: Board, transition: Transition, now: float) -> None:
    deployment_id = transition.deployment_id
    group = transition.group
    state = board.state(group)
    stepper = state.slow.get(deployment_id)
    board.put(group, state.without(deployment_id))  # the hold-down needs health without a break
    why = f"{deployment_id} {transition.to_state.value}: {transition.reason}"
    if stepper is not None:  # a slow start the ramp aborted is gone before its ejection arrives
        board.emit.slow_aborted(
            deployment_id, group, stepper, f"slow start of {deployment_id} aborted: {why}"
        )
    transfer = board.state(group).transfer
    if transfer is not None and deployment_id in transfer.target:
        if transfer.kind == "failback":
            abort_transfer(board, group, transfer, now, why, eject=False)
        elif not any(board.admitted(i) for i in transfer.target if i != deployment_id):
            rollback_shift(board, group, transfer, now, why)
    standby_check(board, group, now)


def start_slow(board: Board, deployment_id: str, now: float) -> bool:
    """Slow start inside the serving tier: weight x each ramp step in turn."""
    stepper = board.stepper(now)
    if not board.settings.failback.slow_start or stepper.last:
        return False
    group = board.spec(deployment_id).group
    board.put(group, board.state(group).with_slow(deployment_id, stepper))
    board.emit.slow_step(deployment_id, group, stepper)
    return True


def hold(board: Board, deployment_id: str, group: str, tier: int, now: float) -> None:
    manual = board.settings.group_failback(group) == "manual"
    hold_down = board.settings.failback.hold_down_s
    held = Hold(deployment_id, group, tier, now, None if manual else now + hold_down)
    board.put(group, board.state(group).with_hold(held))
    board.emit(
        EventType.FAILBACK_PENDING,
        group,
        (
            f"{deployment_id} is healthy again: held until failback({group!r})"
            if manual
            else f"{deployment_id} is healthy again: ramping back after {hold_down:g}s without a break"
        ),
        deployment_id=deployment_id,
        tier=tier,
        mode="manual" if manual else "auto",
        hold_down_s=None if manual else hold_down,
    )


def failback_to(
    board: Board,
    group: str,
    tier: int,
    now: float,
    via: str,
    why: str,
    *,
    base: frozenset[str] | None = None,
    ids: frozenset[str] | None = None,
    due_only: bool = False,
) -> dict[str, Any]:
    """Start the failback ramp of ``tier`` (its held members join, all of them or, for an
    automatic release, those whose hold-down is over). The caller queues the rebuild."""
    target = ids or frozenset(i for i in board.members(group) if board.spec(i).tier == tier)
    label = f"tier:{tier}"
    result: dict[str, Any] = {"group": group, "changed": True, "to": label}
    if any(board.routable(i) and i not in board.drains for i in target):
        state = board.state(group)
        released = {
            i
            for i, h in state.holds.items()
            if i in target and (not due_only or (h.until is not None and now >= h.until))
        }
        state = state.without_holds(released).without_slow(target)
        transfer = Transfer("failback", group, target, label, board.stepper(now), via, base=base)
        board.put(group, replace(state, transfer=transfer))
        board.emit.step(transfer, board.admitted_of(target), why)
        if transfer.stepper.last:
            finish_transfer(board, group, transfer, now)
        percent = transfer.stepper.percent
        result |= {"deployments": sorted(target), "steps": list(transfer.stepper.steps), "step": 1}
        result |= {
            "percent": percent,
            "message": f"{group}: failing back to {label} ({why}), {percent:g}% now",
        }
    else:
        # Nothing of it is up yet: it comes back through the hold when its health does.
        result["message"] = f"{group}: {label} has no routable deployment yet; it ramps back once healthy"
    settle(board, group)
    return result


def finish_transfer(board: Board, group: str, transfer: Transfer, now: float) -> None:
    """The last step (100 %) was taken: the ramp or shift is over."""
    state = replace(board.state(group), transfer=None)
    board.put(group, state)
    duration = round(now - transfer.stepper.started_at, 3)
    if transfer.kind == "failback":
        # Members still in their hold-down join now, slow-starting like any node coming back
        # inside a serving tier.
        held = sorted(i for i in transfer.target if i in state.holds)
        board.put(group, state.without_holds(set(held)))
        for deployment_id in held:
            if board.routable(deployment_id):
                start_slow(board, deployment_id, now)
        board.emit.completed(transfer, f"{transfer.label} serves {group} again", duration)
        return
    natural = board.natural(group)
    if not (natural.serving and set(natural.serving) <= transfer.target):
        shifted = Shifted(transfer.target, transfer.label, now, transfer.via)
        board.put(group, replace(board.state(group), shifted=shifted))
    board.emit.completed(transfer, f"all of {group}'s traffic goes to {transfer.label}", duration)


def abort_transfer(board: Board, group: str, transfer: Transfer, now: float, why: str, *, eject: bool) -> str:
    """Stop a failback ramp: the members that failed are ejected again (``eject``), the others
    held again (a fresh hold-down, or until failback in manual mode). Returns the reason."""
    board.put(group, replace(board.state(group), transfer=None))
    errors_by = transfer.stepper.errors_by
    ejected = sorted(i for i in transfer.target if eject and errors_by.get(i, 0) > 0 and board.routable(i))
    for deployment_id in sorted(transfer.target):
        if deployment_id not in ejected and board.admitted(deployment_id):
            hold(board, deployment_id, group, board.spec(deployment_id).tier, now)
    reason = f"failback of {transfer.label} aborted: {why}"
    board.emit(
        EventType.RAMP_ABORTED,
        group,
        reason,
        scope="group",
        tier=transfer.label,
        step=transfer.stepper.index + 1,
        percent=transfer.stepper.percent,
        errors=transfer.stepper.errors,
        ejected=ejected,
        via=transfer.via,
    )
    board.refresh()
    for deployment_id in ejected:
        board.emit.eject(deployment_id, reason, source="ramp", group_ramp=transfer.label)
    return reason


def rollback_shift(board: Board, group: str, transfer: Transfer, now: float, why: str) -> str:
    """Stop a running shift: the completed shift before it (if any) holds again. The reason."""
    state = replace(board.state(group), transfer=None)
    if transfer.previous is not None and transfer.previous_label is not None:
        state = replace(state, shifted=Shifted(transfer.previous, transfer.previous_label, now, transfer.via))
    board.put(group, state)
    reason = f"shift to {transfer.label} rolled back: {why}"
    board.emit(
        EventType.SHIFT_ROLLED_BACK,
        group,
        reason,
        to=transfer.label,
        deployments=sorted(transfer.target),
        step=transfer.stepper.index + 1,
        percent=transfer.stepper.percent,
        errors=transfer.stepper.errors,
        restored=transfer.previous_label or "normal routing",
        via=transfer.via,
        source="shift",
    )
    board.refresh()
    return reason


def standby_check(board: Board, group: str, now: float) -> None:
    """A held or ramping primary whose standby has nothing routable left takes the group at
    once: holding it back any longer would leave the group without service."""
    state = board.state(group)
    transfer = state.transfer
    failback = transfer if transfer is not None and transfer.kind == "failback" else None
    held = list(state.holds)
    if failback is None and not held:
        return
    waiting = set(held) | (failback.target if failback else set())
    if any(board.admitted(i) for i in board.members(group) if i not in waiting):
        return
    board.put(group, replace(state, holds=MappingProxyType({}), transfer=None if failback else transfer))
    board.emit(
        EventType.FAILBACK_COMPLETED,
        group,
        "the standby has nothing routable left: the primary takes the traffic at once",
        deployments=sorted(waiting),
        immediate=True,
        source="failback",
    )


def release_due(board: Board, now: float) -> None:
    """Holds whose hold-down is over: join a running failback, slow-start in a serving tier, or
    start the failback ramp of their tier."""
    due = sorted(
        (
            h
            for _, state in board.states()
            for h in state.holds.values()
            if h.until is not None and now >= h.until
        ),
        key=lambda h: h.tier,
    )
    for held in due:
        group = held.group
        state = board.state(group)
        if state.holds.get(held.deployment_id) is not held:
            continue  # released with its tier already
        transfer = state.transfer
        if transfer is not None:
            if transfer.kind == "failback" and held.deployment_id in transfer.target:
                board.put(group, state.without_holds({held.deployment_id}))  # joins the ramp of its tier
                settle(board, group)
                board.emit.rebuild(
                    group, source="failback", reason=f"{held.deployment_id} joins the failback"
                )
            continue  # otherwise it waits for the running ramp or shift to finish
        serving_tier = board.serving_tier(board.table(group))
        if serving_tier is not None and held.tier >= serving_tier:
            # Its tier serves again by now (the standby was lost meanwhile): slow start.
            board.put(group, state.without_holds({held.deployment_id}))
            start_slow(board, held.deployment_id, now)
            settle(board, group)
            board.emit.rebuild(group, source="ramp", reason=f"{held.deployment_id} released into its tier")
            continue
        failback_to(board, group, held.tier, now, "auto", "hold-down over", due_only=True)
        board.emit.rebuild(group, source="failback", reason=f"failback of tier:{held.tier} (hold-down over)")

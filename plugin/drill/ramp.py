"""Did the failback follow the configured ramp? Judged in windows aligned with the ramp's steps.

The ramp check reads the plugin's ``failback_step`` events for the step times and compares the
restored node's measured share inside each step's window (from that step to the next) against the
step's percent, with a tolerance (the larger of 15 points and four binomial standard errors at
that window's count), because a share measured on tens of requests is noisy. A window that holds
fewer than ``MIN_STEP_REQUESTS`` answers cannot see its step: the check then says "not measured",
never "ok" (at the smallest duration scales a step lasts a fraction of a second).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from litellm_failover.drill.load import Outcome
from litellm_failover.drill.shares import Phases, failback_shares, first_answer_by, share_in

SHARE_TOLERANCE = 0.15
# A request is routed after it is sent, so one sent just before the next step may be routed by
# that step: the answers sent this close to a window's end are left out. At its start only the
# moment between the event's timestamp and the routing change it records needs a margin.
WINDOW_END_MARGIN_S = 0.2
WINDOW_START_MARGIN_S = 0.05
MIN_STEP_REQUESTS = 5


def _tolerance(p: float, n: int) -> float:
    return max(SHARE_TOLERANCE, 4 * math.sqrt(max(p * (1 - p), 0.0025) / max(n, 1)))


@dataclass(frozen=True, slots=True)
class RampCheck:
    """The ramp check's outcome: ``verdict`` is "ok", "failed" or "not measured".

    "not measured" means no problem was seen but at least one intermediate step's window held
    fewer than ``MIN_STEP_REQUESTS`` answers, so the check could not see that step: a ramp it
    did not see is never reported as "ok". ``windows`` are the step-aligned windows it judged.
    """

    verdict: str
    problems: list[str]
    windows: list[dict[str, Any]]

    @property
    def ok(self) -> bool | None:
        """``ramp_ok`` in the report: true/false when measured, null when not."""
        return {"ok": True, "failed": False}.get(self.verdict)


def _window(
    outcomes: Sequence[Outcome], node: str, start: float, end: float, percent: float, *, step: bool
) -> dict[str, Any]:
    """One judged window, aligned with the ramp step that opened it (``start``) and the next one
    (``step`` false: the hold-down window from the restore to the first step)."""
    share, n = share_in(outcomes, node, start + WINDOW_START_MARGIN_S, end - WINDOW_END_MARGIN_S)
    return {
        "start": round(start, 3),
        "end": round(end, 3),
        "percent": percent,
        "step": step,
        "n": n,
        "share": None if share is None else round(share, 3),
        "measured": share is not None and n >= MIN_STEP_REQUESTS,
    }


def check_ramp(
    outcomes: Sequence[Outcome],
    node: str,
    phases: Phases,
    events: Sequence[dict[str, Any]],
    steps: Sequence[float],
) -> RampCheck:
    """Did the failback follow the configured steps? Judged in windows between ramp step events."""
    all_steps = [
        e for e in events if e["type"] == "failback_step" and phases.fault_at <= e["t"] <= phases.end_at
    ]
    # A ramp aborted on errors starts again from step 1 later: judge the last ramp, whole.
    starts = [i for i, e in enumerate(all_steps) if e.get("step", 1 if i == 0 else 0) == 1]
    first = starts[-1] if starts else 0
    step_events, earlier = all_steps[first:], all_steps[:first]
    seen = [float(e.get("percent") or 0) for e in step_events]
    problems: list[str] = []
    if not step_events:
        first_answer = first_answer_by(outcomes, node, phases.restored_at, sent_after=True)
        if first_answer is not None:
            problems.append(
                f"{node} served again {first_answer:.2f} s after the restore "
                "with no failback ramp step recorded"
            )
        else:
            problems.append(
                f"no failback ramp step was recorded before the scenario ended ({node} never served)"
            )
        return RampCheck("failed", problems, [])
    configured = [float(s) for s in steps]
    if seen != configured and seen == configured[: len(seen)]:
        problems.append(
            f"the failback ramp had reached only {', '.join(f'{p:g}%' for p in seen)} of "
            f"{', '.join(f'{p:g}%' for p in steps)} when the scenario ended"
        )
    elif seen != configured:
        problems.append(
            f"the failback ramp took steps {', '.join(f'{p:g}%' for p in seen)} instead of the configured "
            f"{', '.join(f'{p:g}%' for p in steps)}"
        )
    bounds = [e["t"] for e in step_events] + [phases.end_at]
    # Before the ramp the node gets nothing, unless an earlier (aborted) ramp let it in. That
    # window is judged when it holds enough answers, but it is not a step: it does not decide
    # whether the ramp was measured.
    before = not (earlier and earlier[-1]["t"] >= phases.restored_at)
    windows = [_window(outcomes, node, phases.restored_at, bounds[0], 0.0, step=False)] if before else []
    windows += [
        _window(outcomes, node, bounds[i], bounds[i + 1], seen[i], step=True) for i in range(len(step_events))
    ]
    for window in windows:
        expected = window["percent"] / 100
        # The last step admits any share up to all of it; a window with too few answers cannot
        # tell a jump from noise (it makes the verdict "not measured" below, never "ok").
        if expected >= 1.0 or not window["measured"]:
            continue
        share, n = window["share"], window["n"]
        tolerance = _tolerance(expected, n)
        if share > expected + tolerance:
            problems.append(
                f"{node} got {share:.0%} of {n} answers while the ramp was at {expected:.0%} "
                f"(tolerance {tolerance:.0%}): a jump ahead of the configured steps"
            )
    if problems:
        return RampCheck("failed", problems, windows)
    return RampCheck("not measured" if _unseen(windows) else "ok", [], windows)


def _unseen(windows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The intermediate steps whose window held too few answers to judge (the last step, at
    100 %, admits any share, so it needs no measurement)."""
    return [w for w in windows if w["step"] and w["percent"] < 100 and not w["measured"]]


def ramp_not_measured(check: RampCheck) -> str:
    """Why the ramp could not be measured, for the scenario that requires the measurement."""
    held = ", ".join(
        f"{w['n']} for the {w['percent']:g}% step in {w['start']:.2f}-{w['end']:.2f} s"
        for w in _unseen(check.windows)
    )
    return (
        f"the failback ramp was not measured: answers sent inside each step's window ({held}); "
        f"each step needs at least {MIN_STEP_REQUESTS}, sent more than {WINDOW_END_MARGIN_S:g} s "
        "before the next step (a larger --duration-scale or --concurrency gives more)"
    )


def plain_ramp_ok(outcomes: Sequence[Outcome], node: str, phases: Phases) -> bool | None:
    """Without ramp events: did the node come back gradually? A jump is 80 % or more of the
    answers in the bucket of its first answer or the next one (the first bucket may straddle
    the moment it came back, so it alone would understate the jump)."""
    shares = [entry["share"] for entry in failback_shares(outcomes, node, phases)]
    for i, share in enumerate(shares):
        if share > 0:
            return max(shares[i : i + 2]) < 0.8
    return None


def ramp_verdict(sc: Mapping[str, Any]) -> str | None:
    """A report entry's ramp check in words: "yes", "no", "not measured" (the check could not
    see the steps), or None where no ramp was checked. Reports written before the step-aligned
    check have only ``ramp_ok``."""
    ramp = sc.get("ramp")
    if ramp and ramp["verdict"] == "not measured":
        return "not measured" + (" (required)" if ramp["required"] else "")
    return None if sc["ramp_ok"] is None else ("yes" if sc["ramp_ok"] else "no")

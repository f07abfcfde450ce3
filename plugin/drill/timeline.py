"""From one scenario's request outcomes and events to its figures, timeline and verdict.

Times are seconds since the scenario's load started. Traffic is attributed to the moment a
request was sent (the routing decision), errors and broken streams to the moment the client saw
them. The ramp check reads the plugin's ``failback_step`` events for the step times and compares
the restored node's measured share inside each step window against the step's percent, with a
tolerance (the larger of 15 points and four binomial standard errors at that window's count),
because a share measured on tens of requests is noisy.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from litellm_failover.drill.load import Outcome
from litellm_failover.drill.scenarios import Scenario

BUCKET_S = 0.5
ERROR_SAMPLES = 5
SHARE_TOLERANCE = 0.15
WINDOW_MARGIN_S = 0.2
# Degrade before eject: under pressure the node's share must fall below this fraction of before.
SHARE_DROP_RATIO = 0.5
DETECTION_GRACE_S = 1.5
MIN_STEP_REQUESTS = 5


@dataclass(frozen=True, slots=True)
class Phases:
    fault_at: float
    restored_at: float
    end_at: float


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def _bucket(t: float) -> int:
    return max(0, int(t // BUCKET_S))


def build_timeline(outcomes: Sequence[Outcome], nodes: Sequence[str], end_at: float) -> dict[str, Any]:
    count = _bucket(end_at) + 1
    served = {node: [0] * count for node in nodes}
    errors, broken = [0] * count, [0] * count
    for outcome in outcomes:
        if outcome.ok and outcome.served_by in served:
            served[outcome.served_by][min(_bucket(outcome.start), count - 1)] += 1
        elif outcome.broken:
            broken[min(_bucket(outcome.end), count - 1)] += 1
        elif outcome.client_error:
            errors[min(_bucket(outcome.end), count - 1)] += 1
    return {
        "bucket_s": BUCKET_S,
        "t": [round(i * BUCKET_S, 3) for i in range(count)],
        "served": served,
        "errors": errors,
        "broken": broken,
    }


def share_in(outcomes: Sequence[Outcome], node: str, start: float, end: float) -> tuple[float | None, int]:
    """The node's share of the answers sent in [start, end), and how many answers that was."""
    window = [o for o in outcomes if o.ok and start <= o.start < end]
    if not window:
        return None, 0
    return sum(o.served_by == node for o in window) / len(window), len(window)


def first_answer_by(
    outcomes: Sequence[Outcome], node: str, after: float, *, sent_after: bool = False
) -> float | None:
    """Seconds from ``after`` to the first byte ``node`` sent in a good answer after it.

    A stream continued on ``node`` counts from ``node``'s own first chunk. ``sent_after``: only
    requests sent after ``after`` (a failback is a routing decision; a request held by a hung
    node and released at the restore is not one).
    """
    times = [
        o.first_byte_by[node]
        for o in outcomes
        if o.ok and node in o.first_byte_by and (not sent_after or o.start >= after)
    ]
    later = [t for t in times if t >= after]
    return round(min(later) - after, 3) if later else None


def failback_shares(outcomes: Sequence[Outcome], node: str, phases: Phases) -> list[dict[str, float]]:
    shares = []
    t = phases.restored_at
    while t < phases.end_at:
        share, n = share_in(outcomes, node, t, t + BUCKET_S)
        if share is not None:
            shares.append({"t": round(t, 3), "share": round(share, 3), "n": n})
        t += BUCKET_S
    return shares


def _tolerance(p: float, n: int) -> float:
    return max(SHARE_TOLERANCE, 4 * math.sqrt(max(p * (1 - p), 0.0025) / max(n, 1)))


def check_ramp(
    outcomes: Sequence[Outcome],
    node: str,
    phases: Phases,
    events: Sequence[dict[str, Any]],
    steps: Sequence[float],
) -> tuple[bool, list[str]]:
    """Did the failback follow the configured steps? (ok, failure sentences)."""
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
        return False, problems
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
    # Before the ramp the node gets nothing, unless an earlier (aborted) ramp let it in.
    windows = (
        [] if earlier and earlier[-1]["t"] >= phases.restored_at else [(phases.restored_at, bounds[0], 0.0)]
    )
    windows += [(bounds[i], bounds[i + 1], seen[i] / 100) for i in range(len(step_events))]
    for start, end, expected in windows:
        if expected >= 1.0:
            continue  # the last step: any share up to all of it is right
        share, n = share_in(outcomes, node, start + WINDOW_MARGIN_S, end - WINDOW_MARGIN_S)
        if share is None or n < MIN_STEP_REQUESTS:
            continue
        tolerance = _tolerance(expected, n)
        if share > expected + tolerance:
            problems.append(
                f"{node} got {share:.0%} of {n} answers while the ramp was at {expected:.0%} "
                f"(tolerance {tolerance:.0%}): a jump ahead of the configured steps"
            )
    return not problems, problems


def plain_ramp_ok(outcomes: Sequence[Outcome], node: str, phases: Phases) -> bool | None:
    """Without ramp events: did the node come back gradually? A jump is 80 % or more of the
    answers in the bucket of its first answer or the next one (the first bucket may straddle
    the moment it came back, so it alone would understate the jump)."""
    shares = [entry["share"] for entry in failback_shares(outcomes, node, phases)]
    for i, share in enumerate(shares):
        if share > 0:
            return max(shares[i : i + 2]) < 0.8
    return None


def summarize_errors(outcomes: Sequence[Outcome]) -> list[str]:
    counts = Counter(o.error or "unknown error" for o in outcomes if not o.ok)
    return [f"{error} (x{n})" if n > 1 else error for error, n in counts.most_common(ERROR_SAMPLES)]


def event_row(row: dict[str, Any], group: str, t0_wall: float) -> dict[str, Any]:
    """A ``failover_events`` row as the report lists it, deployment ids shortened to ``p1``."""
    from litellm_failover.drill.profiles import short_id

    created = row["created_at"]
    timestamp = created.timestamp() if hasattr(created, "timestamp") else float(created)
    details = row.get("details") or {}
    parts = [str(row.get("reason") or "")]
    if row.get("from_deployment") or row.get("to_deployment"):
        parts.append(
            f"{short_id(group, row.get('from_deployment'))} -> {short_id(group, row.get('to_deployment'))}"
        )
    detail = "; ".join(p for p in parts if p).replace(f"{group}-", "")
    entry: dict[str, Any] = {
        "t": round(timestamp - t0_wall, 3),
        "type": row["event_type"],
        "deployment": short_id(group, row.get("deployment_id")),
        "detail": detail[:300],
    }
    for key in ("percent", "step"):
        if key in details:
            entry[key] = details[key]
    return entry


def analyse(
    scenario: Scenario,
    profile: str,
    outcomes: Sequence[Outcome],
    phases: Phases,
    events: Sequence[dict[str, Any]],
    ramp_steps: Sequence[float],
) -> dict[str, Any]:
    """The scenario's entry in the result dict (status left to the caller for skips)."""
    nodes = [node.id for node in scenario.nodes]
    restored = scenario.faulted[0]
    broken = sum(o.broken for o in outcomes)
    errors = sum(o.client_error for o in outcomes)
    latencies = [(o.end - o.start) * 1000 for o in outcomes if o.ok]
    standby_s = first_answer_by(outcomes, scenario.standby, phases.fault_at) if scenario.standby else None
    failback_s = (
        first_answer_by(outcomes, restored, phases.restored_at, sent_after=True)
        if scenario.failback
        else None
    )
    failures: list[str] = []
    if errors:
        failures.append(f"{errors} request(s) failed with a client-visible error")
    if broken:
        failures.append(f"{broken} stream(s) broke after delivering text")
    ramp_ok: bool | None = None
    if scenario.check_ramp:
        if profile == "plugin":
            ramp_ok, problems = check_ramp(outcomes, restored, phases, events, ramp_steps)
            failures += problems
        else:
            ramp_ok = plain_ramp_ok(outcomes, restored, phases)
    if profile == "plugin" and scenario.max_standby_s is not None:
        if standby_s is None:
            failures.append(f"{scenario.standby} never served after the fault")
        elif standby_s > scenario.max_standby_s:
            failures.append(
                f"the first answer by {scenario.standby} came {standby_s:.2f} s after the fault "
                f"(goal: within {scenario.max_standby_s:g} s)"
            )
    extra: dict[str, Any] = {}
    if scenario.expect_share_drop:
        before, n_before = share_in(outcomes, restored, 0.0, phases.fault_at)
        during, n_during = share_in(
            outcomes, restored, phases.fault_at + DETECTION_GRACE_S, phases.restored_at
        )
        extra["share_before"] = None if before is None else round(before, 3)
        extra["share_during_fault"] = None if during is None else round(during, 3)
        dropped = before is not None and during is not None and during < before * SHARE_DROP_RATIO
        if profile == "plugin" and not dropped:
            failures.append(
                f"{restored}'s share did not drop under GPU pressure "
                f"({_pct(before)} of {n_before} before, {_pct(during)} of {n_during} during)"
            )
    panic_events = [e for e in events if e["type"] == "panic_mode"]
    if scenario.expect_panic and profile == "plugin":
        if not any(phases.fault_at <= e["t"] <= phases.end_at for e in panic_events):
            failures.append("no panic_mode event: the group did not fail open while every node was out")
    markers = _markers(scenario, phases, standby_s, failback_s, restored, events)
    return {
        "name": scenario.name,
        "title": scenario.title,
        "description": scenario.description,
        "status": "failed" if failures else "passed",
        "skip_reason": None,
        "failures": failures,
        "deployments": scenario.deployments(),
        "requests": len(outcomes),
        "streams": sum(o.stream for o in outcomes),
        "client_errors": errors,
        "broken_streams": broken,
        "resumed_streams": sum(e["type"] == "stream_resumed" for e in events),
        "error_samples": summarize_errors(outcomes),
        "latency_ms": {"p50": _ms(percentile(latencies, 50)), "p99": _ms(percentile(latencies, 99))},
        "fault_at_s": round(phases.fault_at, 3),
        "restored_at_s": round(phases.restored_at, 3),
        "time_to_first_standby_s": standby_s,
        "time_to_failback_s": failback_s,
        "failback_shares": failback_shares(outcomes, restored, phases) if scenario.failback else [],
        "ramp_ok": ramp_ok,
        "markers": markers,
        "timeline": build_timeline(outcomes, nodes, phases.end_at),
        "events": list(events),
        **extra,
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _markers(
    scenario: Scenario,
    phases: Phases,
    standby_s: float | None,
    failback_s: float | None,
    restored: str,
    events: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    markers = [
        {"t": round(phases.fault_at, 3), "label": f"fault: {scenario.title}", "kind": "fault"},
        {"t": round(phases.restored_at, 3), "label": "restore", "kind": "restore"},
    ]
    if standby_s is not None:
        t = round(phases.fault_at + standby_s, 3)
        markers.append({"t": t, "label": f"first answer by {scenario.standby}", "kind": "failover"})
    if failback_s is not None:
        t = round(phases.restored_at + failback_s, 3)
        markers.append({"t": t, "label": f"first answer by {restored} again", "kind": "failback"})
    for event in events:
        if event["type"] == "failback_step":
            label = f"failback step {event.get('percent', '?'):g}%" if "percent" in event else "failback step"
            markers.append({"t": event["t"], "label": label, "kind": "failback"})
        elif event["type"] == "ramp_aborted":
            markers.append({"t": event["t"], "label": "failback ramp aborted", "kind": "failback"})
        elif event["type"] == "panic_mode":
            markers.append({"t": event["t"], "label": event["detail"][:80] or "panic mode", "kind": "panic"})
    return sorted(markers, key=lambda m: m["t"])

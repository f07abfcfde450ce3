"""From one scenario's request outcomes and events to its figures, timeline and verdict.

Times are seconds since the scenario's load started. Traffic is attributed to the moment a
request was sent (the routing decision), errors and broken streams to the moment the client saw
them. The ramp check is ``litellm_failover.drill.ramp``'s; the shared measurements are in
``litellm_failover.drill.shares``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from litellm_failover.drill.load import Outcome
from litellm_failover.drill.ramp import check_ramp, plain_ramp_ok, ramp_not_measured
from litellm_failover.drill.scenarios import Scenario
from litellm_failover.drill.shares import BUCKET_S, Phases, failback_shares, first_answer_by, share_in

ERROR_SAMPLES = 5
# Degrade before eject: under pressure the node's share must fall below this fraction of before.
SHARE_DROP_RATIO = 0.5
DETECTION_GRACE_S = 1.5


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
    ramp: dict[str, Any] | None = None
    if scenario.check_ramp:
        if profile == "plugin":
            check = check_ramp(outcomes, restored, phases, events, ramp_steps)
            ramp_ok, failures = check.ok, failures + check.problems
            if check.verdict == "not measured" and scenario.ramp_required:
                failures.append(ramp_not_measured(check))
            ramp = {"verdict": check.verdict, "required": scenario.ramp_required, "windows": check.windows}
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
        "ramp": ramp,
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

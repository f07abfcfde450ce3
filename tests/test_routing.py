"""Routing tables and the core: tiers, weights, round-robin, exclusions, panic mode, events."""

from __future__ import annotations

import itertools
from collections import Counter

from factories import Clock, bad_report, good_report, model_list, saturated_report, specs_for

from litellm_failover.core import FailoverCore
from litellm_failover.events import EventType
from litellm_failover.outlier import Outcome
from litellm_failover.picker import RoundRobinPicker, WeightedPicker
from litellm_failover.settings import parse_settings


class ListSink:
    def __init__(self) -> None:
        self.events = []
        self.states = []

    def submit_event(self, event):
        self.events.append(event)
        return True

    def submit_state(self, row):
        self.states.append(row)


def make_core(entries, settings=None):
    parsed = parse_settings(settings or {"health": {"unhealthy_threshold": 1, "healthy_threshold": 1}})
    sink = ListSink()
    clock = Clock()
    core = FailoverCore(
        parsed, specs_for(entries, parsed), instance_id="test", probed=lambda s: True, sink=sink, clock=clock
    )
    return core, sink, clock


def shares(core, group, n=4000, exclude=frozenset()):
    table = core.table(group)
    return Counter(table.pick(exclude) for _ in range(n))


PRIMARY_STANDBY = model_list(("g", "p1", 1, 1.0), ("g", "p2", 1, 1.0), ("g", "s1", 2, 1.0))


def test_primary_standby_sends_everything_to_the_primary_tier():
    core, _, _ = make_core(PRIMARY_STANDBY)
    counts = shares(core, "g")
    assert counts["s1"] == 0
    assert abs(counts["p1"] - counts["p2"]) < 400


def test_standby_takes_over_only_when_the_primary_tier_has_no_routable_member():
    core, sink, _ = make_core(PRIMARY_STANDBY)
    core.apply_probe("p1", bad_report())
    assert set(shares(core, "g")) == {"p2"}
    core.apply_probe("p2", bad_report())
    assert set(shares(core, "g")) == {"s1"}
    failovers = [e for e in sink.events if e.event_type == EventType.FAILOVER.value]
    assert [(e.from_deployment, e.to_deployment) for e in failovers] == [("p1,p2", "p2"), ("p2", "s1")]
    assert failovers[-1].details["from_tier"] == 1 and failovers[-1].details["to_tier"] == 2
    transitions = [e for e in sink.events if e.event_type == EventType.STATE_CHANGE.value]
    assert [(e.deployment_id, e.details["to_state"]) for e in transitions] == [
        ("p1", "unhealthy"),
        ("p2", "unhealthy"),
    ]
    assert [s.state for s in sink.states if s.deployment_id == "p2"][-1] == "unhealthy"


def test_a_request_that_failed_on_the_primaries_falls_through_to_the_standby():
    core, _, _ = make_core(PRIMARY_STANDBY)
    table = core.table("g")
    assert table.pick(frozenset({"p1"})) == "p2"
    assert table.pick(frozenset({"p1", "p2"})) == "s1"
    assert table.pick(frozenset({"p1", "p2", "s1"})) is None


def test_degraded_primary_gets_a_smaller_share_of_its_tier():
    core, _, _ = make_core(PRIMARY_STANDBY)
    core.apply_probe("p1", saturated_report(0.99))
    counts = shares(core, "g")
    assert counts["s1"] == 0
    assert counts["p1"] < counts["p2"] * 0.25


def test_weighted_follows_static_weights_and_never_picks_zero_while_positive_exists():
    entries = model_list(("w", "a", 1, 3.0), ("w", "b", 1, 1.0), ("w", "z", 1, 0.0))
    core, _, _ = make_core(entries, {"strategy": "weighted"})
    counts = shares(core, "w", n=8000)
    assert counts["z"] == 0
    assert 0.70 < counts["a"] / 8000 < 0.80


def test_zero_weight_member_is_used_when_it_is_the_only_one_left():
    entries = model_list(("w", "a", 1, 1.0), ("w", "z", 1, 0.0))
    core, _, _ = make_core(entries, {"strategy": "weighted"})
    core.record_failure("a", Outcome.CONNECT_ERROR)
    assert set(shares(core, "w", n=50)) == {"z"}


def test_round_robin_goes_in_turn_and_skips_unhealthy():
    entries = model_list(("r", "a", 1, 1.0), ("r", "b", 2, 1.0), ("r", "c", 3, 1.0))
    core, _, _ = make_core(entries, {"strategy": "round-robin"})
    picks = [core.table("r").pick() for _ in range(6)]
    assert Counter(picks) == {"a": 2, "b": 2, "c": 2}
    assert picks[0] != picks[1] != picks[2]
    core.record_failure("b", Outcome.CONNECT_ERROR)
    picks = [core.table("r").pick() for _ in range(6)]
    assert Counter(picks) == {"a": 3, "c": 3}


def test_per_group_strategy_override():
    entries = model_list(("x", "a", 1, 1.0), ("x", "b", 2, 1.0), ("y", "c", 1, 1.0), ("y", "d", 2, 1.0))
    core, _, _ = make_core(entries, {"groups": {"y": {"strategy": "round-robin"}}})
    assert set(shares(core, "x", n=100)) == {"a"}
    assert set(shares(core, "y", n=100)) == {"c", "d"}


def test_panic_mode_routes_to_everyone_when_all_are_out_and_says_so():
    core, sink, _ = make_core(PRIMARY_STANDBY)
    for dep in ("p1", "p2", "s1"):
        core.record_failure(dep, Outcome.CONNECT_ERROR)
    table = core.table("g")
    assert table.panic
    assert set(shares(core, "g")) == {"p1", "p2"}  # tiers still apply in panic mode
    panic = [e for e in sink.events if e.event_type == EventType.PANIC_MODE.value]
    assert len(panic) == 1 and panic[0].details["entered"] is True


def test_without_panic_mode_an_all_down_group_routes_nowhere():
    core, _, _ = make_core(PRIMARY_STANDBY, {"panic_mode": False})
    for dep in ("p1", "p2", "s1"):
        core.record_failure(dep, Outcome.CONNECT_ERROR)
    assert core.table("g").pick() is None


def test_recovery_through_hysteresis_brings_the_primary_back():
    core, sink, _ = make_core(PRIMARY_STANDBY, {"health": {"unhealthy_threshold": 1, "healthy_threshold": 2}})
    core.apply_probe("p1", bad_report())
    core.apply_probe("p2", bad_report())
    assert core.table("g").serving == ("s1",)
    core.apply_probe("p1", good_report())
    assert core.table("g").serving == ("s1",)  # recovering is not routable
    core.apply_probe("p1", good_report())
    assert core.table("g").serving == ("p1",)
    states = [
        e.details["to_state"]
        for e in sink.events
        if e.deployment_id == "p1" and e.event_type == "state_change"
    ]
    assert states == ["unhealthy", "recovering", "healthy"]


def test_request_failover_event():
    core, sink, _ = make_core(PRIMARY_STANDBY)
    core.request_served_elsewhere("g", "p1", "p2", "req-1")
    event = sink.events[-1]
    assert event.event_type == EventType.REQUEST_FAILOVER.value
    assert (event.from_deployment, event.to_deployment, event.request_id) == ("p1", "p2", "req-1")


def test_status_shows_every_deployment_with_checks_and_reasons():
    core, _, _ = make_core(PRIMARY_STANDBY)
    core.apply_probe("p1", bad_report("HTTP 500 from /health"))
    status = core.status()
    group = status["groups"]["g"]
    p1 = next(d for d in group["deployments"] if d["deployment_id"] == "p1")
    assert p1["state"] == "unhealthy"
    assert p1["checks"]["http_health"] == {
        "ok": False,
        "severity": "fail",
        "reason": "HTTP 500 from /health",
        "value": None,
    }
    assert group["serving"] == ["p2"]


def test_pickers_are_o_log_n_and_exact_for_exclusions():
    ids = [f"d{i}" for i in range(300)]
    picker = WeightedPicker(ids, [1.0] * 300)
    assert picker.pick(frozenset(ids[:-1])) == "d299"
    assert RoundRobinPicker(ids).pick(frozenset(ids)) is None


def test_round_robin_keeps_its_turn_across_table_rebuilds() -> None:
    """A table is rebuilt on every health change and weight refresh; the turn must survive it,
    or a member takes two turns in a row and the split drifts (seen as 5/3 over 8 sessions)."""
    from litellm_failover.picker import RoundRobinPicker

    picks = []
    for _ in range(8):
        picks.append(RoundRobinPicker(("rr-a", "rr-b")).pick())  # a new picker per pick: a rebuild
    assert picks.count("rr-a") == 4 and picks.count("rr-b") == 4
    assert all(first != second for first, second in itertools.pairwise(picks))

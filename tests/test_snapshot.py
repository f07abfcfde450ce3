"""The core's read-only snapshot, and switching decisions as values the core applies.

The snapshot is what every reader outside the core sees (metrics in another thread, sessions,
streams, fleets, switching, ``status()``): it must be replaced whole, never changed under a
reader, and stay consistent with the tables the hot path picks from. The switching controller
must decide without touching the core: its effects change nothing until the core applies them.
"""

from __future__ import annotations

import dataclasses

import pytest
from factories import Clock, bad_report, good_report, model_list, specs_for

from litellm_failover.actions import Announce, Eject, Rebuild
from litellm_failover.core import FailoverCore
from litellm_failover.events import EventType
from litellm_failover.outlier import Outcome
from litellm_failover.requests import RequestBook
from litellm_failover.settings import parse_settings
from litellm_failover.snapshot import status_of
from litellm_failover.switching import SwitchingController

ENTRIES = model_list(("g", "p1", 1, 1.0), ("g", "p2", 1, 1.0), ("g", "s1", 2, 1.0), ("h", "x1", 1, 1.0))
SETTINGS = {
    "health": {"unhealthy_threshold": 1, "healthy_threshold": 1},
    "failback": {"hold_down_s": 10, "ramp_steps": [10, 50, 100], "step_interval_s": 5, "abort_errors": 2},
}


def make(settings: dict | None = None) -> tuple[FailoverCore, SwitchingController, Clock]:
    parsed = parse_settings(settings or SETTINGS)
    clock = Clock()
    core = FailoverCore(
        parsed, specs_for(ENTRIES, parsed), instance_id="t", probed=lambda s: True, clock=clock
    )
    inflight = RequestBook(ttl_s=parsed.drain.in_flight_ttl_s, clock=clock)
    controller = SwitchingController(core, parsed, inflight)
    core.attach_planner(controller)
    return core, controller, clock


def test_a_transition_replaces_the_snapshot_whole_and_leaves_the_old_one_as_it_was():
    core, _, _ = make()
    before = core.snapshot
    core.apply_probe("p1", bad_report())
    after = core.snapshot
    assert after is not before
    assert before.deployments["p1"].state.value == "healthy" and before.tables["g"].serving == ("p1", "p2")
    assert after.deployments["p1"].state.value == "unhealthy" and after.tables["g"].serving == ("p2",)
    assert after.tables["g"] is core.table("g")
    assert after.deployments["x1"] is before.deployments["x1"]  # another group's view is shared
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.deployments["p1"].reason = "edited"  # type: ignore[misc]
    with pytest.raises(TypeError):
        after.tables["g"] = before.tables["g"]  # type: ignore[index]


def test_a_probe_without_a_transition_shows_its_checks_at_once():
    core, _, _ = make()
    core.apply_probe("p1", good_report(latency=0.25))
    view = core.snapshot.deployments["p1"]
    assert view.last_probe_latency_s == 0.25 and set(view.checks) == {"http_health", "probe_latency"}


def test_status_is_a_function_of_the_snapshot():
    core, _, clock = make()
    core.apply_probe("s1", bad_report("HTTP 503"))
    snapshot = core.snapshot
    assert status_of(snapshot, clock()) == status_of(snapshot, clock()) == core.status()
    core.apply_probe("p1", bad_report())  # a later change does not reach a snapshot already read
    rows = {r["deployment_id"]: r for r in status_of(snapshot, clock())["groups"]["g"]["deployments"]}
    assert rows["p1"]["state"] == "healthy" and rows["s1"]["checks"]["http_health"]["reason"] == "HTTP 503"


def test_a_drain_decision_changes_nothing_until_the_core_applies_it():
    core, controller, _ = make()
    table = core.table("g")
    decision = controller.drain("p1", source="api")
    assert decision.result["state"] == "drained"  # nothing in flight: drained at once
    assert core.table("g") is table and core.recent_events == type(core.recent_events)()
    kinds = [type(a).__name__ for a in decision.effects]
    assert kinds == ["Announce", "Rebuild", "Announce"]  # started, the table, completed
    assert isinstance(decision.effects[1], Rebuild) and decision.effects[1].source == "drain"
    core.apply(decision.effects)
    assert core.table("g").serving == ("p2",) and core.snapshot.tables["g"].draining == {"p1"}
    assert controller.draining() == {"p1"}  # read from the tables: one source of truth
    events = [e.event_type for e in core.recent_events]
    assert events == ["drain_started", "failover", "drain_completed"]


def test_a_ramp_aborted_on_errors_asks_the_core_to_eject_instead_of_ejecting():
    core, controller, _ = make()
    core.apply_probe("p1", bad_report())
    core.apply_probe("p1", good_report())  # back inside the serving tier: slow start
    assert controller.status()["ramps"][0]["deployment_id"] == "p1"
    assert controller.on_failure("p1", Outcome.SERVER_ERROR) == ()  # one error: below abort_errors
    effects = controller.on_failure("p1", Outcome.SERVER_ERROR)
    assert [type(a) for a in effects] == [Announce, Eject]
    assert effects[0].event_type == EventType.RAMP_ABORTED.value and effects[1].source == "ramp"
    assert core.snapshot.deployments["p1"].routable  # decided, not done
    core.apply(effects)
    assert core.snapshot.deployments["p1"].state.value == "unhealthy"
    assert controller.status()["ramps"] == []

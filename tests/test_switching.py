"""Traffic switching on the real core with a controlled clock: drains, planned failover, failback
ramps (auto and manual), slow start, canary shifts, and the bad input each operation refuses.

Shares are measured by sampling the routing table's ``pick`` 4,000 times: the standard error of a
share is then at most 0.8 points, so the ±3-point tolerances below are 3.7 standard errors wide.
"""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest
from factories import Clock, bad_report, good_report, model_list, specs_for

from litellm_failover.core import FailoverCore
from litellm_failover.events import EventType
from litellm_failover.outlier import Outcome
from litellm_failover.requests import RequestBook
from litellm_failover.settings import parse_settings
from litellm_failover.switching import OperatorError, Switching, SwitchingController

PRIMARY_STANDBY = model_list(("g", "p1", 1, 1.0), ("g", "p2", 1, 1.0), ("g", "s1", 2, 1.0))
SAMPLES = 4000
TOLERANCE = 3.0  # percentage points (see the module docstring)
SOURCES = {"manual", "drain", "ramp", "shift", "failback"}


class ListSink:
    def __init__(self) -> None:
        self.events = []

    def submit_event(self, event):
        self.events.append(event)
        return True

    def submit_state(self, row):
        pass


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


BASE = {
    "health": {"unhealthy_threshold": 1, "healthy_threshold": 1},
    "failback": {"hold_down_s": 10, "ramp_steps": [10, 50, 100], "step_interval_s": 5, "abort_errors": 3},
    "drain": {"timeout_s": 30, "in_flight_ttl_s": 120},
}


class Rig:
    def __init__(self, settings: dict | None = None, entries=PRIMARY_STANDBY) -> None:
        self.settings = parse_settings(merge(BASE, settings or {}))
        self.sink = ListSink()
        self.clock = Clock()
        self.core = FailoverCore(
            self.settings,
            specs_for(entries, self.settings),
            instance_id="test",
            probed=lambda s: True,
            sink=self.sink,
            clock=self.clock,
        )
        # The wiring of plugin.py: the controller plans the core's tables and decides, the core
        # applies what it decides, and the in-flight book reports attempt ends to it.
        self.inflight = RequestBook(ttl_s=self.settings.drain.in_flight_ttl_s, clock=self.clock)
        controller = SwitchingController(self.core, self.settings, self.inflight)
        self.core.attach_planner(controller)
        self.switching = Switching(controller, self.core.apply)
        self.inflight.listener = self.switching.attempt_ended

    def shares(self, group: str = "g", exclude: frozenset[str] = frozenset()) -> dict[str, float]:
        table = self.core.table(group)
        counts = Counter(table.pick(exclude) for _ in range(SAMPLES))
        return {name: 100.0 * count / SAMPLES for name, count in counts.items()}

    def tier_share(self, *ids: str) -> float:
        shares = self.shares()
        return sum(shares.get(i, 0.0) for i in ids)

    def events(self, kind: EventType | str) -> list:
        value = kind.value if isinstance(kind, EventType) else kind
        return [e for e in self.sink.events if e.event_type == value]

    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.inflight.expire()  # the plugin's refresh loop expires lost end signals
        self.switching.advance()

    def fail(self, *ids: str) -> None:
        for deployment_id in ids:
            self.core.apply_probe(deployment_id, bad_report())

    def recover(self, *ids: str) -> None:
        for deployment_id in ids:
            self.core.apply_probe(deployment_id, good_report())

    def snapshot(self) -> tuple:
        """What bad input must leave untouched: switching state, plans and picks' inputs."""
        status = self.switching.status()
        for key in ("drains", "holds", "ramps", "shifts", "planned_failovers"):
            for row in status[key]:
                row.pop("running_for_s", None)
        table = self.core.table("g")
        return (
            status["drains"],
            status["holds"],
            status["ramps"],
            status["shifts"],
            status["planned_failovers"],
            table.serving,
            table.draining,
            len(self.sink.events),
        )


def assert_share(actual: float, expected: float) -> None:
    assert abs(actual - expected) <= TOLERANCE, f"share {actual:.1f}% not within {TOLERANCE} of {expected}%"


# -- drain ----------------------------------------------------------------------------------------


def test_drain_stops_new_picks_at_once_and_completes_when_in_flight_work_ends():
    rig = Rig()
    inflight = rig.inflight
    for index in range(3):
        inflight.start(f"r{index}", "p1")
    inflight.start("r9", "p2")
    result = rig.switching.drain("p1", source="control")
    assert result["state"] == "draining" and result["in_flight"] == 3
    assert "p1" not in rig.shares() and rig.core.table("g").serving == ("p2",)
    started = rig.events(EventType.DRAIN_STARTED)
    assert (
        len(started) == 1 and started[0].details["in_flight"] == 3 and started[0].details["via"] == "control"
    )
    failover = rig.events(EventType.FAILOVER)[-1]
    assert failover.details["source"] == "drain" and failover.to_deployment == "p2"
    rig.clock.advance(2)
    inflight.end(("r0",), "p1")
    inflight.end(("r1", "other-key"), "p1")
    assert not rig.events(EventType.DRAIN_COMPLETED)
    inflight.end(("nobody",), "p1")  # an end signal for no attempt in flight changes nothing
    inflight.end(("r2",), "p1")
    completed = rig.events(EventType.DRAIN_COMPLETED)
    assert len(completed) == 1
    assert completed[0].details | {"duration_s": 2.0} == completed[0].details
    assert (completed[0].details["finished"], completed[0].details["cut"]) == (3, 0)
    assert rig.switching.status()["drains"][0]["state"] == "drained"
    # Drained stays out of rotation until undrained; a second drain is idempotent.
    again = rig.switching.drain("p1")
    assert again["changed"] is False and len(rig.events(EventType.DRAIN_STARTED)) == 1
    assert "p1" not in rig.shares()
    assert rig.switching.draining() == frozenset({"p1"})


def test_a_drain_times_out_and_counts_what_is_still_running_as_cut():
    rig = Rig()
    rig.inflight.start("slow-1", "p1")
    rig.inflight.start("slow-2", "p1")
    rig.switching.drain("p1", timeout_s=5)
    rig.inflight.end(("slow-1",), "p1")
    rig.tick(4.9)
    assert not rig.events(EventType.DRAIN_COMPLETED)
    rig.tick(0.2)
    (completed,) = rig.events(EventType.DRAIN_COMPLETED)
    assert (completed.details["finished"], completed.details["cut"], completed.details["timed_out"]) == (
        1,
        1,
        True,
    )
    assert "p1" not in rig.shares()  # the drain holds after its timeout


def test_a_lost_end_signal_expires_after_the_in_flight_ttl():
    rig = Rig({"drain": {"timeout_s": 600, "in_flight_ttl_s": 20}})
    rig.inflight.start("lost", "p1")
    rig.switching.drain("p1")
    rig.tick(19)
    assert rig.switching.in_flight_counts() == {"p1": 1}
    rig.tick(2)
    assert rig.switching.in_flight_counts() == {}
    (completed,) = rig.events(EventType.DRAIN_COMPLETED)
    assert (completed.details["expired"], completed.details["cut"], completed.details["finished"]) == (
        1,
        0,
        0,
    )
    assert rig.inflight.stats()["expired"] == 1


def test_a_drain_with_nothing_in_flight_completes_at_once_and_undrain_slow_starts():
    rig = Rig()
    rig.switching.drain("p2")
    (completed,) = rig.events(EventType.DRAIN_COMPLETED)
    assert completed.details["in_flight"] == 0 and completed.details["cut"] == 0
    result = rig.switching.undrain("p2", source="api")
    assert result["state"] == "slow start"
    assert [e.details["percent"] for e in rig.events(EventType.RAMP_STEP)] == [10.0]
    # weight x 0.1 next to p1's weight 1: p2 gets 0.1 / 1.1 of the tier
    assert_share(rig.shares().get("p2", 0.0), 100 * 0.1 / 1.1)
    assert rig.switching.ramp_factors() == {"p2": 0.1}
    rig.tick(5)
    assert_share(rig.shares().get("p2", 0.0), 100 * 0.5 / 1.5)
    rig.tick(5)
    assert_share(rig.shares().get("p2", 0.0), 50.0)
    assert [e.details["percent"] for e in rig.events(EventType.RAMP_STEP)] == [10.0, 50.0, 100.0]
    assert len(rig.events(EventType.RAMP_COMPLETED)) == 1 and rig.switching.ramp_factors() == {}
    assert [e.event_type for e in rig.events(EventType.UNDRAINED)] == ["undrained"]


def test_undrain_of_a_deployment_that_is_not_draining_is_a_no_op():
    rig = Rig()
    before = rig.snapshot()
    result = rig.switching.undrain("p1")
    assert result["changed"] is False and "not draining" in result["message"]
    assert rig.snapshot() == before


def test_drained_deployments_stay_out_even_in_panic_mode():
    rig = Rig()
    rig.switching.drain("p1")
    rig.fail("p2", "s1")
    table = rig.core.table("g")
    assert table.panic and "p1" not in set(rig.shares())


# -- planned failover and manual failback ---------------------------------------------------------


def test_planned_failover_drains_the_primary_tier_and_failback_ramps_it_back():
    rig = Rig()
    rig.inflight.start("in-flight", "p1")
    result = rig.switching.failover("g", source="control")
    assert (result["from_tier"], result["to_tier"], result["drained"]) == (1, 2, ["p1", "p2"])
    assert rig.shares() == {"s1": 100.0}
    failover = rig.events(EventType.FAILOVER)[-1]
    assert failover.details["source"] == "manual" and failover.details["to_tier"] == 2
    assert {e.deployment_id for e in rig.events(EventType.DRAIN_STARTED)} == {"p1", "p2"}
    # p2 had nothing in flight: drained at once; p1 waits for its attempt (never cut).
    assert [e.deployment_id for e in rig.events(EventType.DRAIN_COMPLETED)] == ["p2"]
    rig.inflight.end(("in-flight",), "p1")
    assert [e.details["cut"] for e in rig.events(EventType.DRAIN_COMPLETED)] == [0, 0]
    # Planned failover never fails back on its own, however long the primary is healthy.
    rig.tick(100)
    assert rig.shares() == {"s1": 100.0}
    assert rig.switching.failover("g")["changed"] is False  # idempotent

    back = rig.switching.failback("g")
    assert back["to"] == "tier:1" and back["percent"] == 10.0
    assert_share(rig.tier_share("p1", "p2"), 10.0)
    rig.tick(5)
    assert_share(rig.tier_share("p1", "p2"), 50.0)
    rig.tick(5)
    assert rig.tier_share("p1", "p2") == 100.0
    steps = rig.events(EventType.FAILBACK_STEP)
    assert [(e.details["step"], e.details["percent"]) for e in steps] == [(1, 10.0), (2, 50.0), (3, 100.0)]
    assert len(rig.events(EventType.FAILBACK_COMPLETED)) == 1
    assert rig.core.table("g").active_tier == 1 and rig.switching.status()["planned_failovers"] == []
    assert {e.details.get("source") for e in rig.events(EventType.FAILOVER)} <= SOURCES


# -- automatic failback ---------------------------------------------------------------------------


def primary_down_then_back(rig: Rig) -> None:
    rig.fail("p1", "p2")
    assert rig.shares() == {"s1": 100.0}
    rig.tick(1)
    rig.recover("p1", "p2")


def test_auto_failback_holds_down_then_ramps_in_the_configured_steps():
    rig = Rig()
    primary_down_then_back(rig)
    pending = rig.events(EventType.FAILBACK_PENDING)
    assert {e.deployment_id for e in pending} == {"p1", "p2"} and pending[0].details["mode"] == "auto"
    assert rig.shares() == {"s1": 100.0}  # healthy, but held down
    rig.tick(9.9)
    assert rig.shares() == {"s1": 100.0}
    rig.tick(0.1)
    measured = [rig.tier_share("p1", "p2")]
    rig.tick(5)
    measured.append(rig.tier_share("p1", "p2"))
    rig.tick(5)
    measured.append(rig.tier_share("p1", "p2"))
    for actual, expected in zip(measured, [10.0, 50.0, 100.0], strict=True):
        assert_share(actual, expected)
    steps = [(e.details["step"], e.details["percent"]) for e in rig.events(EventType.FAILBACK_STEP)]
    assert steps == [(1, 10.0), (2, 50.0), (3, 100.0)]
    (done,) = rig.events(EventType.FAILBACK_COMPLETED)
    assert done.details["duration_s"] == 10.0
    sources = [e.details.get("source") for e in rig.events(EventType.FAILOVER)]
    # The serving set changes twice: s1 -> s1 + tier 1 (the ramp starts) -> tier 1 (completed).
    assert sources[-2:] == ["failback", "failback"] and sources[:-2] == ["probe", "probe"]


def test_a_break_in_health_restarts_the_hold_down():
    rig = Rig()
    primary_down_then_back(rig)
    rig.tick(8)
    rig.fail("p1", "p2")
    rig.tick(1)
    rig.recover("p1", "p2")
    rig.tick(9)
    assert rig.shares() == {"s1": 100.0}  # 17 s since the first recovery, only 9 s without a break
    rig.tick(1)
    assert_share(rig.tier_share("p1", "p2"), 10.0)


def test_manual_failback_holds_the_standby_until_failback():
    rig = Rig({"failback": {"mode": "manual"}})
    primary_down_then_back(rig)
    (pending, _) = rig.events(EventType.FAILBACK_PENDING)
    assert pending.details["mode"] == "manual"
    rig.tick(1000)
    assert rig.shares() == {"s1": 100.0}
    assert [h["mode"] for h in rig.switching.status()["holds"]] == ["manual", "manual"]
    result = rig.switching.failback("g", source="control")
    assert result["changed"] is True
    assert_share(rig.tier_share("p1", "p2"), 10.0)
    assert rig.events(EventType.FAILBACK_STEP)[0].details["via"] == "control"


def test_a_group_can_override_the_failback_mode():
    rig = Rig({"groups": {"g": {"failback": "manual"}}})
    primary_down_then_back(rig)
    rig.tick(100)
    assert rig.shares() == {"s1": 100.0}


def test_errors_during_a_step_abort_the_ramp_and_eject_again():
    rig = Rig()
    primary_down_then_back(rig)
    rig.tick(10)
    assert_share(rig.tier_share("p1", "p2"), 10.0)
    rig.switching.on_failure("p1", Outcome.SERVER_ERROR)
    rig.switching.on_failure("p1", Outcome.OVERLOADED)  # a 429 is not the node failing
    rig.switching.on_failure("p1", Outcome.TIMEOUT)
    assert not rig.events(EventType.RAMP_ABORTED)
    rig.switching.on_failure("p1", Outcome.STREAM_CUT)
    (aborted,) = rig.events(EventType.RAMP_ABORTED)
    assert aborted.details | {"scope": "group", "step": 1, "percent": 10.0, "errors": 3} == aborted.details
    assert aborted.details["ejected"] == ["p1"]
    assert rig.core.health["p1"].state.value == "unhealthy"
    assert rig.core.health["p1"].reason.startswith("failback of tier:1 aborted")
    assert rig.shares() == {"s1": 100.0}  # p2 had no errors: held down again, not ejected
    assert [h["deployment_id"] for h in rig.switching.status()["holds"]] == ["p2"]
    assert rig.events(EventType.FAILOVER)[-1].details["source"] == "ramp"
    rig.tick(10)  # p2's fresh hold-down is over: it ramps alone
    assert_share(rig.shares().get("p2", 0.0), 10.0)


def test_an_ejection_during_the_ramp_aborts_it():
    rig = Rig()
    primary_down_then_back(rig)
    rig.tick(10)
    rig.fail("p2")
    (aborted,) = rig.events(EventType.RAMP_ABORTED)
    assert "p2 unhealthy" in aborted.reason and aborted.details["ejected"] == []
    assert rig.shares() == {"s1": 100.0}


def test_losing_the_standby_while_the_primary_is_held_brings_the_primary_back_at_once():
    rig = Rig()
    primary_down_then_back(rig)
    rig.fail("s1")
    assert rig.tier_share("p1", "p2") == 100.0 and not rig.core.table("g").panic
    (done,) = rig.events(EventType.FAILBACK_COMPLETED)
    assert done.details["immediate"] is True
    rig.recover("s1")
    assert rig.shares().get("s1", 0.0) == 0.0  # the primary is not held back again


def test_slow_start_of_a_deployment_recovering_inside_the_serving_tier():
    rig = Rig()
    rig.fail("p1")
    assert rig.shares() == {"p2": 100.0}
    rig.recover("p1")
    assert rig.switching.status()["holds"] == []  # its tier serves: no hold, a slow start
    assert_share(rig.shares().get("p1", 0.0), 100 * 0.1 / 1.1)
    assert rig.core.table("g").ramp == {"p1": 0.1}
    rig.switching.on_failure("p1", Outcome.SERVER_ERROR)
    rig.switching.on_failure("p1", Outcome.SERVER_ERROR)
    rig.switching.on_failure("p1", Outcome.SERVER_ERROR)
    (aborted,) = rig.events(EventType.RAMP_ABORTED)
    assert aborted.details["scope"] == "deployment" and rig.core.health["p1"].state.value == "unhealthy"


def test_slow_start_can_be_switched_off():
    rig = Rig({"failback": {"slow_start": False}})
    rig.fail("p1")
    rig.recover("p1")
    assert_share(rig.shares().get("p1", 0.0), 50.0)
    assert not rig.events(EventType.RAMP_STEP)


def test_a_single_step_ramp_brings_the_primary_back_at_once_after_hold_down():
    rig = Rig({"failback": {"ramp_steps": [100], "hold_down_s": 0}})
    primary_down_then_back(rig)
    rig.tick(0)
    assert rig.tier_share("p1", "p2") == 100.0
    assert len(rig.events(EventType.FAILBACK_COMPLETED)) == 1


# -- canary shift ---------------------------------------------------------------------------------


def test_a_shift_moves_traffic_in_steps_and_holds_the_target_once_complete():
    rig = Rig()
    result = rig.switching.shift("g", "s1", [5, 25, 50, 100], 60, source="control")
    assert (result["to"], result["percent"]) == ("s1", 5.0)
    measured = [rig.shares().get("s1", 0.0)]
    for _ in range(3):
        rig.tick(60)
        measured.append(rig.shares().get("s1", 0.0))
    for actual, expected in zip(measured, [5.0, 25.0, 50.0, 100.0], strict=True):
        assert_share(actual, expected)
    steps = [(e.details["step"], e.details["percent"]) for e in rig.events(EventType.SHIFT_STEP)]
    assert steps == [(1, 5.0), (2, 25.0), (3, 50.0), (4, 100.0)]
    assert len(rig.events(EventType.SHIFT_COMPLETED)) == 1
    assert rig.switching.status()["shifts"][0]["state"] == "completed"
    rig.tick(600)
    assert rig.shares() == {"s1": 100.0}  # the shift's target keeps the traffic
    assert rig.events(EventType.FAILOVER)[-1].details["source"] == "shift"
    # failback ramps the natural tier back from the shift's target
    rig.switching.failback("g")
    assert_share(rig.tier_share("p1", "p2"), 10.0)
    rig.tick(5)
    rig.tick(5)
    assert rig.tier_share("p1", "p2") == 100.0 and rig.switching.status()["shifts"] == []


def test_a_shift_rolls_back_on_errors():
    rig = Rig({"shift": {"abort_errors": 2}})
    rig.switching.shift("g", "tier:2", [5, 25, 50, 100], 60)
    rig.tick(60)
    assert_share(rig.shares().get("s1", 0.0), 25.0)
    rig.switching.on_failure("s1", Outcome.SERVER_ERROR)
    rig.switching.on_failure("s1", Outcome.SERVER_ERROR)
    (rolled,) = rig.events(EventType.SHIFT_ROLLED_BACK)
    assert rolled.details | {"step": 2, "percent": 25.0, "errors": 2, "to": "tier:2"} == rolled.details
    assert rig.shares().get("s1", 0.0) == 0.0
    assert rig.core.health["s1"].state.value == "healthy"  # rolled back, not ejected
    assert rig.events(EventType.FAILOVER)[-1].details["source"] == "shift"
    rig.tick(600)
    assert not rig.events(EventType.SHIFT_COMPLETED)


def test_failback_cancels_a_running_shift():
    rig = Rig()
    rig.switching.shift("g", "s1", [50, 100], 60)
    rig.switching.failback("g")
    assert rig.events(EventType.SHIFT_ROLLED_BACK) and rig.shares().get("s1", 0.0) == 0.0


def test_a_shift_to_a_deployment_inside_the_serving_tier():
    rig = Rig()
    rig.switching.shift("g", "p2", [80, 100], 60)
    assert_share(rig.shares().get("p2", 0.0), 80.0)
    assert rig.shares().get("s1", 0.0) == 0.0


# -- bad input: a clear OperatorError and nothing changed ---------------------------------------

BAD_CALLS = [
    ("drain", ("nope",), {}, "unknown deployment 'nope' (known: p1, p2, s1)"),
    ("drain", ("p1",), {"timeout_s": 0}, "timeout_s must be more than 0"),
    ("drain", ("p1",), {"timeout_s": -5}, "timeout_s must be more than 0"),
    ("undrain", ("nope",), {}, "unknown deployment 'nope'"),
    ("failover", ("nope",), {}, "unknown model group 'nope' (known: g)"),
    ("failback", ("nope",), {}, "unknown model group 'nope'"),
    ("shift", ("nope", "s1", [5, 100], 60), {}, "unknown model group 'nope'"),
    ("shift", ("g", "zz", [5, 100], 60), {}, "unknown shift target 'zz'"),
    ("shift", ("g", "tier:7", [5, 100], 60), {}, "has no tier 7"),
    ("shift", ("g", "s1", [50, 25, 100], 60), {}, "strictly increasing"),
    ("shift", ("g", "s1", [5, 5, 100], 60), {}, "strictly increasing"),
    ("shift", ("g", "s1", [5, 50], 60), {}, "the last step must be 100"),
    ("shift", ("g", "s1", [0, 100], 60), {}, "in (0, 100]"),
    ("shift", ("g", "s1", [50, 150], 60), {}, "in (0, 100]"),
    ("shift", ("g", "s1", [], 60), {}, "must not be empty"),
    ("shift", ("g", "s1", "5,100", 60), {}, "must be a list"),
    ("shift", ("g", "s1", [5, 100], 0), {}, "interval_s must be more than 0"),
    ("shift", ("g", "s1", [5, 100], -1), {}, "interval_s must be more than 0"),
    ("shift", ("g", "s1", [5, 100], math.nan), {}, "interval_s must be more than 0"),
    ("shift", ("g", "tier:1", [5, 100], 60), {}, "already serves all"),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "message"), BAD_CALLS)
def test_bad_input_raises_operator_error_and_changes_nothing(method, args, kwargs, message):
    rig = Rig()
    rig.switching.drain("p2")  # some state to keep
    before = rig.snapshot()
    with pytest.raises(OperatorError) as info:
        getattr(rig.switching, method)(*args, **kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)
    assert rig.snapshot() == before


def test_commands_refused_while_a_shift_runs_change_nothing():
    rig = Rig()
    rig.switching.shift("g", "s1", [5, 25, 100], 60)
    before = rig.snapshot()
    with pytest.raises(OperatorError, match="a shift is already running on 'g'"):
        rig.switching.shift("g", "p2", [50, 100], 30)
    with pytest.raises(OperatorError, match="a shift is already running on 'g'"):
        rig.switching.failover("g")
    assert rig.snapshot() == before


def test_failover_without_a_routable_standby_and_failback_to_a_dead_primary_are_refused():
    rig = Rig()
    rig.fail("s1")
    before = rig.snapshot()
    with pytest.raises(OperatorError, match="no routable standby behind tier 1"):
        rig.switching.failover("g")
    assert rig.snapshot() == before
    rig.recover("s1")
    rig.fail("p1", "p2")
    before = rig.snapshot()
    with pytest.raises(OperatorError, match="tier 1 has no routable deployment yet"):
        rig.switching.failback("g")
    assert rig.snapshot() == before
    rig.recover("p1")
    assert rig.switching.failback("g")["changed"] is True  # held primary released by hand


def test_failback_with_nothing_to_fail_back_is_a_no_op():
    rig = Rig()
    before = rig.snapshot()
    assert rig.switching.failback("g")["changed"] is False
    assert rig.snapshot() == before


def test_ramp_steps_setting_is_validated_with_its_key_path():
    from litellm_failover.settings import FailoverConfigError

    for steps, message in (([50, 10, 100], "strictly increasing"), ([10, 50], "last step must be 100")):
        with pytest.raises(FailoverConfigError) as info:
            parse_settings({"failback": {"ramp_steps": steps}})
        assert "failover_settings.failback.ramp_steps" in str(info.value) and message in str(info.value)
    with pytest.raises(FailoverConfigError, match=r"failover_settings\.failback\.step_interval_s"):
        parse_settings({"failback": {"step_interval_s": 0}})
    with pytest.raises(FailoverConfigError, match=r"failover_settings\.groups\.g\.failback"):
        parse_settings({"groups": {"g": {"failback": "sometimes"}}})


def test_a_planned_failover_overrules_a_running_failback_ramp():
    rig = Rig()
    primary_down_then_back(rig)
    rig.tick(10)
    assert_share(rig.tier_share("p1", "p2"), 10.0)
    result = rig.switching.failover("g")
    assert result["drained"] == ["p1", "p2"]
    (aborted,) = rig.events(EventType.RAMP_ABORTED)
    assert "superseded by a planned failover" in aborted.reason and aborted.details["ejected"] == []
    assert rig.shares() == {"s1": 100.0}
    assert rig.switching.status()["holds"] == [] and rig.switching.status()["ramps"] == []
    rig.tick(100)
    assert rig.shares() == {"s1": 100.0}


def test_undrain_of_a_whole_primary_tier_fails_it_back_through_the_ramp():
    rig = Rig()
    rig.switching.failover("g")
    assert rig.switching.undrain("p1")["state"] == "ramping (failback)"
    assert_share(rig.shares().get("p1", 0.0), 10.0)  # no hold-down: the operator decided
    assert rig.switching.status()["planned_failovers"][0]["drained"] == ["p2"]
    rig.tick(5)
    rig.tick(5)
    assert rig.shares() == {"p1": 100.0}
    assert rig.switching.undrain("p2")["state"] == "slow start"
    assert_share(rig.shares().get("p2", 0.0), 100 * 0.1 / 1.1)
    assert rig.switching.status()["planned_failovers"] == []


def test_a_shift_to_a_held_primary_releases_it_to_the_shift():
    rig = Rig({"failback": {"mode": "manual"}})
    primary_down_then_back(rig)
    rig.switching.shift("g", "tier:1", [30, 100], 60)
    assert_share(rig.tier_share("p1", "p2"), 30.0)
    assert rig.switching.status()["holds"] == []
    rig.tick(60)
    assert rig.tier_share("p1", "p2") == 100.0
    assert rig.switching.status()["shifts"] == []  # its target is the natural tier: nothing kept

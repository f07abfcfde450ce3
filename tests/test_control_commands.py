"""The command model and its rules, and applying a command to an ``OperatorTarget``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from control_support import RecordingTarget, settings

from litellm_failover.control.applier import SOURCE, CommandApplier
from litellm_failover.control.commands import CommandError, build_command, from_wire, parse_steps
from litellm_failover.control.dispatch import CommandResult, apply_command, summarize
from litellm_failover.fleet.messages import OperatorCommand, decode, encode, make


def test_steps_are_increasing_percentages_ending_at_100() -> None:
    assert parse_steps("5,25,50,100") == [5, 25, 50, 100]
    assert parse_steps(" 10%, 50% ,100 ") == [10, 50, 100]
    assert parse_steps([0.5, 100]) == [0.5, 100]
    assert parse_steps("100") == [100]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("5,50,25,100", "steps must increase (50 then 25 in 5,50,25,100)"),
        ("5,5,100", "steps must increase (5 then 5"),
        ("5,25,50", "the last step must be 100 (got 50 in 5,25,50)"),
        ("0,100", "above 0 and at most 100 (got '0')"),
        ("50,150", "above 0 and at most 100 (got '150')"),
        ("five,100", "'five' is not a number"),
        ("", "must list the steps"),
        ("5,,100", "'' is not a number"),
        ("nan,100", "above 0 and at most 100"),
    ],
)
def test_bad_steps_are_refused_naming_the_value(steps: str, message: str) -> None:
    with pytest.raises(CommandError, match=r"^--steps: ") as caught:
        parse_steps(steps)
    assert message in str(caught.value)


def test_shift_needs_a_positive_interval_and_a_target() -> None:
    ok = build_command("shift", "chat", {"to": "s1", "steps": "5,100", "interval_s": "5m"})
    assert ok.args == {"to": "s1", "steps": [5.0, 100.0], "interval_s": 300.0}
    assert ok.describe() == "shift chat --to s1 --steps 5,100 --interval 300"
    for interval, message in [
        (0, "--interval: must be more than 0 seconds (got 0)"),
        ("0", "--interval: must be more than 0 seconds (got '0')"),
        (-5, "--interval: must be more than 0 seconds"),
        ("soon", "--interval: not a duration (got 'soon'"),
        (float("inf"), "--interval: must be more than 0 seconds"),
    ]:
        with pytest.raises(CommandError) as caught:
            build_command("shift", "chat", {"to": "s1", "steps": "5,100", "interval_s": interval})
        assert message in str(caught.value)
    with pytest.raises(CommandError, match="shift: --to is required"):
        build_command("shift", "chat", {"steps": "5,100", "interval_s": 1})
    with pytest.raises(CommandError, match="--to: must not be empty"):
        build_command("shift", "chat", {"to": " ", "steps": "5,100", "interval_s": 1})


def test_targets_and_arguments_are_checked() -> None:
    with pytest.raises(CommandError, match="DEPLOYMENT_ID: must not be empty"):
        build_command("drain", "  ")
    with pytest.raises(CommandError, match="GROUP: must not contain control characters"):
        build_command("failover", "chat\n")
    with pytest.raises(CommandError, match="DEPLOYMENT_ID: at most 255 characters"):
        build_command("undrain", "x" * 256)
    with pytest.raises(CommandError, match="unknown command 'reboot'"):
        build_command("reboot", "p1")
    with pytest.raises(CommandError, match=r"undrain: unexpected arguments \['timeout_s'\]"):
        build_command("undrain", "p1", {"timeout_s": 3})
    with pytest.raises(CommandError, match="--timeout: must be more than 0 seconds"):
        build_command("drain", "p1", {"timeout_s": "0"})
    assert build_command("drain", "p1", {"timeout_s": "1500ms"}).args == {"timeout_s": 1.5}
    assert build_command("drain", "p1").args == {}
    assert build_command("status", "").target == ""


def test_a_command_survives_the_wire_and_is_checked_again_on_receipt() -> None:
    command = build_command(
        "shift", "chat", {"to": "s1", "steps": [5, 50, 100], "interval_s": 60}, issued_by="ops@host"
    )
    again = from_wire(json.loads(json.dumps(command.to_wire())))
    assert again == command
    # As a fleet message: the envelope carries it, and the receiver re-validates its content.
    payload = OperatorCommand(
        command_id=command.command_id,
        action="shift",
        target="chat",
        args={"to": "s1", "steps": [50, 5, 100], "interval_s": 60},  # tampered: not increasing
        issued_at=command.issued_at.timestamp(),
    )
    envelope = decode(encode(make("command", "ops@host", payload, node="n")))
    assert envelope.subject == f"command:{command.command_id}"
    with pytest.raises(CommandError, match="steps must increase"):
        from_wire(
            {
                "command_id": envelope.payload.command_id,
                "kind": envelope.payload.action,
                "target": envelope.payload.target,
                "args": envelope.payload.args,
                "issued_at": envelope.payload.issued_at,
            }
        )
    with pytest.raises(CommandError, match="issued_at: must be a time"):
        from_wire({"command_id": "x", "kind": "drain", "target": "p1", "issued_at": "yesterday"})


def test_each_kind_calls_the_target_with_its_arguments_and_source() -> None:
    target = RecordingTarget(settings("A"))
    commands = [
        build_command("drain", "p1", {"timeout_s": 30}),
        build_command("undrain", "p1"),
        build_command("failover", "chat"),
        build_command("failback", "chat"),
        build_command("shift", "chat", {"to": "s1", "steps": "5,25,50,100", "interval_s": 60}),
    ]
    results = [apply_command(target, command, instance_id="A", source=SOURCE) for command in commands]
    assert [result.outcome for result in results] == ["applied"] * 5
    assert target.calls == [
        ("drain", "p1", 30.0, "control"),
        ("undrain", "p1", "control"),
        ("failover", "chat", "control"),
        ("failback", "chat", "control"),
        ("shift", "chat", "s1", [5.0, 25.0, 50.0, 100.0], 60.0, "control"),
    ]
    assert results[0].details == {"deployment_id": "p1", "group": "chat", "state": "draining", "in_flight": 0}
    assert results[0].message == "deployment_id=p1 group=chat state=draining in_flight=0"
    assert results[2].message == "chat: failed over to tier 2"  # the target's own message wins
    assert all(result.instance_id == "A" for result in results)


def test_a_refusal_keeps_the_targets_message_and_state() -> None:
    target = RecordingTarget(settings("A"))
    refused = apply_command(target, build_command("drain", "nope"), instance_id="A", source=SOURCE)
    assert refused.outcome == "refused" and not refused.ok
    assert refused.message == "unknown deployment 'nope' (known: p1, p2, s1)"
    shift = build_command("shift", "chat", {"to": "s1", "steps": "50,100", "interval_s": 1})
    assert apply_command(target, shift, instance_id="A", source=SOURCE).ok
    again = apply_command(target, shift, instance_id="A", source=SOURCE)
    assert (again.outcome, again.message) == ("refused", "a shift is already running on 'chat'")
    assert target.draining == set() and len(target.shifts) == 1


def test_a_failing_target_is_reported_as_an_error_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(RecordingTarget):
        def failover(self, group: str, *, source: str = "api") -> dict:
            raise RuntimeError("routing table is gone")

    result = apply_command(
        Broken(settings("A")), build_command("failover", "chat"), instance_id="A", source="x"
    )
    assert (result.outcome, result.message) == (
        "error",
        "internal error: RuntimeError: routing table is gone",
    )
    assert "failover chat" in caplog.text  # logged with its traceback for whoever debugs it


def test_live_status_is_compact_and_names_an_unknown_group() -> None:
    target = RecordingTarget(settings("A"), names=("p1", "s1", "e1"))
    target.draining.add("p1")
    result = apply_command(target, build_command("status", ""), instance_id="A", source=SOURCE)
    assert result.ok and result.message == "2 groups, 3 deployments"
    chat = result.details["groups"]["chat"]
    assert chat["active_tier"] == 1
    assert chat["deployments"][0] == {
        "deployment_id": "p1",
        "tier": 1,
        "state": "healthy",
        "reason": chat["deployments"][0]["reason"],
        "effective_weight": chat["deployments"][0]["effective_weight"],
        "draining": True,
    }
    one = apply_command(target, build_command("status", "embed"), instance_id="A", source=SOURCE)
    assert list(one.details["groups"]) == ["embed"]
    unknown = apply_command(target, build_command("status", "nope"), instance_id="A", source=SOURCE)
    assert unknown.outcome == "refused" and "unknown model group 'nope'" in unknown.message


def test_results_round_trip_and_summaries_stay_short() -> None:
    result = CommandResult("A", "refused", "no", {"k": 1}, datetime(2025, 1, 1, tzinfo=UTC))
    assert CommandResult.from_wire(json.loads(json.dumps(result.to_wire()))) == result
    assert CommandResult.from_wire({"ok": True}).outcome == "applied"
    assert len(summarize({"message": "x" * 5000})) == 1000
    assert summarize({}) == "applied"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"args": ["p1"]}, "args: must be an object"),
        ({"args": "timeout"}, "args: must be an object"),
        ({"issued_at": 1e20}, "issued_at: must be a time"),
        ({"issued_at": float("nan")}, "issued_at: must be a time"),
        ({"issued_at": True}, "issued_at: must be a time"),
        ({"args": {"timeout_s": 1e300}}, "--timeout: must be between 0 and 604800"),
        ({"issued_by": "ops\nforged"}, "issued_by: must not contain control characters"),
    ],
)
def test_a_hostile_wire_command_is_a_command_error(data: dict, message: str) -> None:
    """Before: a list or a string as ``args``, or ``issued_at`` of 1e20, raised something other
    than ``CommandError`` (which stopped the path that read it), and 1e300 s was a drain timeout."""
    wire = {"command_id": "c1", "kind": "drain", "target": "p1", "issued_at": 1.8e9} | data
    with pytest.raises(CommandError, match=message):
        from_wire(wire)
    with pytest.raises(CommandError, match="command: must be an object"):
        from_wire(["drain", "p1"])  # type: ignore[arg-type]


def test_a_command_issued_in_the_future_is_refused_not_applied() -> None:
    """Before: a far-future ``issued_at`` never expired and won "the latest word" for ever."""
    target = RecordingTarget(settings("A"))
    applier = CommandApplier(target, "A", command_ttl_s=60, submit=None)
    now = datetime.now(UTC).timestamp()
    later = build_command("drain", "p1", issued_at=datetime.fromtimestamp(now + 3600, UTC), issued_by="x")
    result = applier.handle(later, "database", now)
    assert result is not None and result.outcome == "refused"
    assert result.message.startswith("invalid command: issued_at is in the future")
    skewed = build_command("drain", "p1", issued_at=datetime.fromtimestamp(now + 30, UTC), issued_by="x")
    assert applier.handle(skewed, "database", now).outcome == "applied"  # within the skew allowed
    assert target.calls == [("drain", "p1", None, SOURCE)]

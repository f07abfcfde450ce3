"""Operator commands through the database, on SQLite and on PostgreSQL (a schema per test).

A replica is a ``ControlPlane`` over a real ``StoreWriter`` (its engine, its audit events) on
this test's event loop; the CLI is the real ``litellm-failover`` entry point in a thread.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from control_support import RecordingTarget, run_cli, settings, sign_command, wide_terminal  # noqa: F401 (wide_terminal: autouse)
from sqlalchemy import inspect, select
from waiting import wait_until

from litellm_failover.control import ControlPlane, build_command, db_channel
from litellm_failover.control.applier import RESTORE_SOURCE
from litellm_failover.control.client import signed
from litellm_failover.settings import WriterSettings
from litellm_failover.store.engine import create_engine, reading_engine
from litellm_failover.store.migrate import current_revision, downgrade_database, upgrade_database
from litellm_failover.store.models import command_results_table, commands_table
from litellm_failover.store.queries import list_events
from litellm_failover.store.writer import StoreWriter

pytest_plugins = ["services", "store_fixtures"]  # store_url: SQLite and PostgreSQL

CONTROL_TABLES = {"failover_commands", "failover_command_results", "failover_control_replicas"}


@pytest.fixture
async def database(store_url: str) -> str:
    await upgrade_database(store_url)
    return store_url


Replica = tuple[ControlPlane, RecordingTarget, StoreWriter]


@pytest.fixture
async def replicas(database: str) -> AsyncIterator[Callable[..., Any]]:
    """``await replica("A")``: a started control plane on this test's database."""
    running: list[Replica] = []

    async def start(instance_id: str, names: tuple[str, ...] = ("p1", "p2", "s1"), **control: Any) -> Replica:
        fast = {"poll_interval_s": 0.05, "heartbeat_interval_s": 0.5}
        config = settings(instance_id, database_url=database, control={**fast, **control})
        target = RecordingTarget(config, names)
        writer = StoreWriter(database, WriterSettings(flush_interval_s=0.05))
        await writer.start()
        plane = ControlPlane(target, config, writer)
        await plane.start()
        running.append((plane, target, writer))
        return plane, target, writer

    yield start
    for plane, _, writer in running:
        await plane.stop()
        await writer.stop()


async def stop(replica: Replica) -> None:
    plane, _, writer = replica
    await plane.stop()
    await writer.stop()


async def command_rows(url: str) -> list[dict[str, Any]]:
    async with reading_engine(url) as engine, engine.connect() as connection:
        return [dict(row) for row in (await connection.execute(select(commands_table))).mappings()]


async def result_rows(url: str) -> list[dict[str, Any]]:
    async with reading_engine(url) as engine, engine.connect() as connection:
        query = select(command_results_table).order_by(command_results_table.c.instance_id)
        return [dict(row) for row in (await connection.execute(query)).mappings()]


async def test_migration_0003_adds_and_removes_the_control_tables(store_url: str) -> None:
    async def tables() -> set[str]:
        engine = create_engine(store_url, create_directory=False)
        try:
            async with engine.connect() as connection:
                return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
        finally:
            await engine.dispose()

    await upgrade_database(store_url, "0002")
    assert not CONTROL_TABLES & await tables()
    await upgrade_database(store_url, "0003")
    assert await current_revision(store_url) == "0003"
    assert CONTROL_TABLES <= await tables()
    await downgrade_database(store_url, "0002")
    assert not CONTROL_TABLES & await tables()
    assert {"failover_sessions", "failover_messages"} <= await tables()


async def test_migration_0004_adds_and_removes_the_signature_column(store_url: str) -> None:
    async def columns() -> set[str]:
        engine = create_engine(store_url, create_directory=False)
        try:
            async with engine.connect() as connection:
                found = await connection.run_sync(lambda sync: inspect(sync).get_columns("failover_commands"))
                return {column["name"] for column in found}
        finally:
            await engine.dispose()

    await upgrade_database(store_url, "0003")
    assert "signature" not in await columns()
    await upgrade_database(store_url, "0004_signed_commands")
    assert await current_revision(store_url) == "0004_signed_commands"
    assert "signature" in await columns()
    await downgrade_database(store_url, "0003")
    assert "signature" not in await columns() and "issued_by" in await columns()


async def test_drain_reaches_a_running_replica_and_is_audited(
    database: str, replicas: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    plane, target, writer = await replicas("proxy-a")
    code = await run_cli("drain", "p1", "--timeout", "45", "--url", database, "--wait", "5")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert target.calls == [("drain", "p1", 45.0, "control")]
    assert "drain p1 --timeout 45: sent through the database" in out.out
    assert "proxy-a  applied  deployment_id=p1 group=chat state=draining in_flight=0" in out.out
    assert "drain p1 --timeout 45: applied by 1 of 1 replicas" in out.out
    [row] = await result_rows(database)
    assert (row["instance_id"], row["ok"], row["outcome"]) == ("proxy-a", True, "applied")
    assert row["details"]["state"] == "draining"
    [command] = await command_rows(database)
    assert (command["kind"], command["target"], command["args"]) == ("drain", "p1", {"timeout_s": 45.0})
    assert "@" in command["issued_by"]  # user@host of whoever ran the CLI
    assert plane.status()["applied"] == 1

    # The audit trail says who asked, on which replica, and what happened.
    assert await writer.flush(5)
    [event] = await list_events(database, event_type="operator_command")
    assert (event["model_group"], event["deployment_id"], event["instance_id"]) == ("chat", "p1", "proxy-a")
    assert event["reason"].startswith(f"drain p1 --timeout 45 by {command['issued_by']}: applied")
    assert event["details"]["via"] == "database"


async def test_a_refusal_is_printed_with_the_replicas_message_and_exits_1(
    database: str, replicas: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _, target, _ = await replicas("proxy-a")
    code = await run_cli("undrain", "p2", "--url", database, "--json")
    out = capsys.readouterr()
    assert code == 1
    report = json.loads(out.out)
    assert report["exit_code"] == 1 and report["transport"] == "database"
    [result] = report["results"]
    assert (result["instance_id"], result["outcome"]) == ("proxy-a", "refused")
    assert result["message"] == "deployment 'p2' is not draining"
    assert target.calls == []

    code = await run_cli("failover", "nope", "--url", database)
    out = capsys.readouterr()
    assert code == 1
    assert "proxy-a  refused  unknown model group 'nope' (known: chat)" in out.out
    assert (
        "litellm-failover: failover nope: not applied by 1 of 1 answering replicas: proxy-a (refused)"
        in out.err
    )


async def test_bad_input_is_refused_before_anything_is_sent(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in [
        (
            ["shift", "chat", "--to", "s1", "--steps", "5,50,25,100", "--interval", "60"],
            "steps must increase",
        ),
        (
            ["shift", "chat", "--to", "s1", "--steps", "5,25,50", "--interval", "60"],
            "the last step must be 100",
        ),
        (
            ["shift", "chat", "--to", "s1", "--steps", "5,100", "--interval", "0"],
            "--interval: must be more than 0",
        ),
        (["drain", "p1", "--timeout", "-1"], "--timeout: must be more than 0"),
    ]:
        code = await run_cli(*argv, "--url", database)
        err = capsys.readouterr().err
        assert code == 2, argv
        assert message in err and "(nothing sent)" in err
    assert await command_rows(database) == []


async def test_no_replica_listening_is_a_clear_timeout(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_cli("failback", "chat", "--url", database, "--wait", "0.3")
    err = capsys.readouterr().err
    assert code == 3
    assert "failback chat: no replica acknowledged within 0.3s (no replica is listening there" in err
    assert "this database_url" in err
    assert len(await command_rows(database)) == 1  # sent: a replica starting now would not run it


async def test_a_silent_replica_is_named_after_the_wait(
    database: str, replicas: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    await replicas("proxy-a")
    now = datetime.now(UTC)
    await db_channel.heartbeat(database, "proxy-ghost", now, now, 60)  # listening, never answers
    code = await run_cli("failover", "chat", "--url", database, "--wait", "1")
    out = capsys.readouterr()
    assert code == 3
    assert "proxy-a      applied" in out.out and "proxy-ghost  no answer" in out.out
    assert "no answer within 1s from proxy-ghost (listening when it was sent)" in out.err


async def test_shift_and_restart_rules(
    database: str, replicas: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Commands are never replayed after a restart, but standing drains and failovers are."""
    first = await replicas("proxy-a")
    assert await run_cli("drain", "p1", "--url", database) == 0
    assert await run_cli("failover", "chat", "--url", database) == 0
    assert (
        await run_cli(
            "shift", "chat", "--to", "s1", "--steps", "5,25,50,100", "--interval", "60", "--url", database
        )
        == 0
    )
    assert await run_cli("drain", "typo", "--url", database) == 1  # refused: nothing stands
    assert first[1].shifts == {"chat": {"to": "s1", "steps": [5, 25, 50, 100], "interval_s": 60.0}}
    await stop(first)

    plane, target, _ = await replicas("proxy-a2")
    assert target.calls == [("drain", "p1", None, RESTORE_SOURCE), ("failover", "chat", RESTORE_SOURCE)]
    assert target.shifts == {}  # a shift is an event, not a state: not resumed
    assert [entry["command"] for entry in plane.status()["restored"]] == ["drain p1", "failover chat"]
    await plane.poll()
    assert len(target.calls) == 2  # the old commands are not applied again by polling either

    assert await run_cli("undrain", "p1", "--url", database) == 0
    assert await run_cli("failback", "chat", "--url", database) == 0
    assert target.draining == set() and target.failed_over == set()
    capsys.readouterr()
    _, later, _ = await replicas("proxy-a3")
    assert later.calls == []  # the latest word on p1 and chat was undrain/failback


async def test_an_old_command_expires_and_a_hand_written_bad_row_is_refused(
    database: str, replicas: Any
) -> None:
    plane, target, _ = await replicas("proxy-a", command_ttl_s=60)
    old = build_command("drain", "p1", issued_at=datetime.now(UTC) - timedelta(seconds=600), issued_by="ops")
    await db_channel.insert_command(database, sign_command(old))
    async with reading_engine(database) as engine, engine.begin() as connection:
        await connection.execute(
            commands_table.insert().values(
                command_id="bad-1",
                created_at=datetime.now(UTC),
                kind="shift",
                target="chat",
                args={"to": "s1", "steps": [50, 25], "interval_s": 1},
                issued_by="someone",
            )
        )

    async def answered() -> bool:
        return len(await result_rows(database)) == 2

    await wait_until(answered, 5, "both results")
    rows = {row["command_id"]: row for row in await result_rows(database)}
    assert rows[old.command_id]["outcome"] == "expired"
    assert "over control.command_ttl_s=60; not applied" in rows[old.command_id]["message"]
    assert rows["bad-1"]["outcome"] == "refused"
    assert rows["bad-1"]["message"].startswith("invalid command: --steps: steps must increase")
    assert target.calls == []
    assert plane.status()["expired"] == 1 and plane.status()["refused"] == 1


async def test_a_replica_that_stops_is_no_longer_waited_for(database: str, replicas: Any) -> None:
    replica = await replicas("proxy-a")
    assert await db_channel.live_replicas(database, datetime.now(UTC)) == ["proxy-a"]
    await stop(replica)
    assert await db_channel.live_replicas(database, datetime.now(UTC)) == []


async def test_live_status_through_the_database(
    database: str, replicas: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    await replicas("proxy-a", names=("p1", "s1", "e1"))
    code = await run_cli("status", "--live", "--url", database, "--json")
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["transport"] == "database"
    [result] = report["results"]
    assert result["message"] == "2 groups, 3 deployments"
    assert sorted(result["details"]["groups"]) == ["chat", "embed"]
    code = await run_cli("status", "--live", "--url", database, "--group", "nope")
    assert code == 1
    assert "unknown model group 'nope'" in capsys.readouterr().out


async def test_each_malformed_row_is_refused_alone_and_the_poll_goes_on(database: str, replicas: Any) -> None:
    """Rows anything could have written: ``args`` a list or a string, a ``created_at`` no
    ``datetime`` can hold. Each is refused with a result row; a valid command after them is applied."""
    from sqlalchemy import text

    plane, target, _ = await replicas("proxy-a")
    async with reading_engine(database) as engine, engine.begin() as connection:
        for command_id, args in (("bad-list", ["p1"]), ("bad-str", "timeout")):
            await connection.execute(
                commands_table.insert().values(
                    command_id=command_id, created_at=datetime.now(UTC), kind="drain", target="p1", args=args
                )
            )
        await connection.execute(
            commands_table.insert().values(
                command_id="bad-time", created_at=datetime.now(UTC), kind="drain", target="p1", args={}
            )
        )
        # SQLite keeps whatever it is given; PostgreSQL's nearest thing to 1e20 is 'infinity'.
        moment = "1e20" if database.startswith("sqlite") else "'infinity'"
        await connection.execute(
            text(f"UPDATE failover_commands SET created_at = {moment} WHERE command_id = 'bad-time'")
        )
    good = build_command("drain", "p2", issued_by="ops")
    await db_channel.insert_command(database, sign_command(good))

    async def answered() -> bool:
        return len(await result_rows(database)) == 4

    await wait_until(answered, 5, "four results")
    rows = {row["command_id"]: row for row in await result_rows(database)}
    for bad in ("bad-list", "bad-str", "bad-time"):
        assert rows[bad]["outcome"] == "refused", rows[bad]
        # Unsigned besides: refused as invalid, or (PostgreSQL reads 'infinity' as a time) unsigned.
        assert rows[bad]["message"].startswith(("invalid command: ", "not authenticated (unsigned)"))
    assert rows[good.command_id]["outcome"] == "applied"
    assert [call[1] for call in target.calls] == ["p2"]
    assert plane.status()["refused"] == 3 and plane.status()["applied"] == 1
    assert plane.status()["database"]["last_error"] is None


# -- authentication (issue 11 §1) --------------------------------------------------------------


async def test_unsigned_or_mis_signed_rows_are_refused_with_a_result_row_and_never_applied(
    database: str, replicas: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: anything with INSERT on failover_commands drained every replica."""
    from litellm_failover.control.signing import parse_keys

    plane, target, _ = await replicas("proxy-a")
    forged = build_command("drain", "p1", issued_by="attacker")  # no tag at all
    stranger = signed(build_command("drain", "p2", issued_by="attacker"), parse_keys("other:" + "x" * 32))
    wrong_secret = signed(
        build_command("failover", "chat", issued_by="x"), parse_keys("test-key:" + "y" * 32)
    )
    tampered = replace(sign_command(build_command("drain", "s1", issued_by="ops")), target="p1")
    good = sign_command(build_command("drain", "p2", issued_by="ops"))
    for command in (forged, stranger, wrong_secret, tampered, good):
        await db_channel.insert_command(database, command)

    async def answered() -> bool:
        return len(await result_rows(database)) == 5

    await wait_until(answered, 5, "five results")
    rows = {row["command_id"]: row for row in await result_rows(database)}
    expected = {
        forged.command_id: "unsigned",
        stranger.command_id: "unknown_key",
        wrong_secret.command_id: "bad_signature",
        tampered.command_id: "bad_signature",
    }
    for command_id, reason in expected.items():
        assert rows[command_id]["outcome"] == "refused"
        assert rows[command_id]["message"].startswith(f"not authenticated ({reason})")
    assert rows[good.command_id]["outcome"] == "applied"
    assert target.calls == [("drain", "p2", None, "control")]  # only the signed one acted on
    auth = plane.status()["authentication"]
    assert auth["mode"] == "signed" and auth["rejected"] == 4
    assert auth["rejected_by"] == {"database": {"unsigned": 1, "unknown_key": 1, "bad_signature": 2}}
    assert "x" * 32 not in caplog.text and "litellm-failover-test-signing-secret" not in caplog.text

    async def recorded() -> bool:
        return len(await list_events(database, event_type="message_rejected")) >= 3

    # One event per transport and reason per minute: the second bad_signature is only counted.
    await wait_until(recorded, 5, "three message_rejected events")
    events = await list_events(database, event_type="message_rejected")
    assert sorted(e["details"]["reason"] for e in events) == ["bad_signature", "unknown_key", "unsigned"]


async def test_a_forged_standing_drain_is_not_restored(database: str, replicas: Any) -> None:
    """Before: an unsigned drain row plus a forged "applied" result row drained every replica
    that started afterwards, for good."""
    from litellm_failover.control.dispatch import CommandResult

    forged = build_command("drain", "p1", issued_by="attacker")
    good = sign_command(build_command("failover", "chat", issued_by="ops"))
    for command in (forged, good):
        await db_channel.insert_command(database, command)
        await db_channel.write_results(
            database, [(command.command_id, CommandResult("old", "applied", "ok"))]
        )
    plane, target, _ = await replicas("proxy-b")
    assert target.calls == [("failover", "chat", RESTORE_SOURCE)]
    [refused] = [entry for entry in plane.status()["restored"] if entry["outcome"] == "refused"]
    assert refused["message"].startswith("not authenticated (unsigned)")
    assert plane.status()["authentication"]["rejected_by"] == {"standing": {"unsigned": 1}}


async def test_without_a_key_the_operator_channel_is_off_and_says_so(
    database: str, replicas: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("LITELLM_FAILOVER_SIGNING_KEYS")
    with caplog.at_level("WARNING", logger="litellm_failover.control"):
        plane, target, _ = await replicas("proxy-a")
    status = plane.status()
    assert status["enabled"] is False and status["running"] is False
    assert status["authentication"]["mode"] == "off"
    assert "LITELLM_FAILOVER_SIGNING_KEYS" in status["authentication"]["off_reason"]
    assert any("operator channel" in r.getMessage() and "OFF" in r.getMessage() for r in caplog.records)
    # The CLI will not send unsigned either, unless told to (exit 2, nothing sent).
    assert await run_cli("drain", "p1", "--url", database, "--wait", "0") == 2
    assert await command_rows(database) == []
    await db_channel.insert_command(database, build_command("drain", "p1", issued_by="x"))
    await plane.poll()
    assert target.calls == [] and await result_rows(database) == []


async def test_the_insecure_opt_in_accepts_unsigned_commands_and_says_so(
    database: str, replicas: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("LITELLM_FAILOVER_SIGNING_KEYS")
    with caplog.at_level("WARNING", logger="litellm_failover.control"):
        plane, target, _ = await replicas("proxy-a", insecure_unsigned=True)
    assert any("UNSIGNED" in r.getMessage() for r in caplog.records)
    assert plane.status()["authentication"]["mode"] == "insecure"
    assert await run_cli("drain", "p1", "--url", database, "--insecure-unsigned", "--wait", "5") == 0
    assert target.calls == [("drain", "p1", None, "control")]
    assert plane.status()["authentication"]["accepted_unsigned"] == 1


async def test_a_key_rotation_needs_no_downtime(
    database: str, replicas: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas list the new key second, then the CLI signs with it: both are accepted."""
    old, new = "k1:" + "o" * 24, "k2:" + "n" * 24
    monkeypatch.setenv("LITELLM_FAILOVER_SIGNING_KEYS", f"{old},{new}")
    plane, target, _ = await replicas("proxy-a")
    monkeypatch.setenv("LITELLM_FAILOVER_SIGNING_KEYS", old)
    assert await run_cli("drain", "p1", "--url", database, "--wait", "5") == 0
    monkeypatch.setenv("LITELLM_FAILOVER_SIGNING_KEYS", f"{new},{old}")
    assert await run_cli("drain", "p2", "--url", database, "--wait", "5") == 0
    assert [call[1] for call in target.calls] == ["p1", "p2"]
    assert plane.status()["authentication"]["key_ids"] == ["k1", "k2"]

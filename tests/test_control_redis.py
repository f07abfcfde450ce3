"""Operator commands through Redis: every replica applies them and acknowledges, on the local Redis.

Each replica here is a ``ControlPlane`` wired as the plugin wires it: a real ``FailoverCore`` with
its real fleet (``fleet_for``: the ``CoreApplier`` hands ``command`` messages to the plane), on a
channel of this test's own (its keys deleted afterwards). The CLI is the real entry point.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from control_support import KEYS, RecordingTarget, run_cli, settings, sign_command
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from waiting import free_port, wait_until

from litellm_failover.control import ControlPlane, redis_channel
from litellm_failover.control.applier import RESTORE_SOURCE
from litellm_failover.control.client import signed
from litellm_failover.control.commands import Command
from litellm_failover.fleet import Fleet, fleet_for

pytestmark = pytest.mark.redis
pytest_plugins = ["services"]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


Replica = tuple[ControlPlane, RecordingTarget, Fleet]


@pytest.fixture
async def replicas(redis_base_url: str, channel: str) -> AsyncIterator[Callable[..., Any]]:
    """``await replica("A")``: a started fleet and control plane (Redis only, no database)."""
    running: list[Replica] = []

    async def start(
        instance_id: str, names: tuple[str, ...] = ("p1", "p2", "s1"), redis_url: str | None = None
    ) -> Replica:
        config = settings(
            instance_id,
            redis_url=redis_url or redis_base_url,
            fleet={"channel": channel, "operation_timeout_s": 0.5, "reconnect_max_s": 0.5},
        )
        target = RecordingTarget(config, names)
        fleet = fleet_for(target.core, config)
        await fleet.start()
        assert await fleet.link.wait_connected(5)
        plane = ControlPlane(target, config, None, fleet)
        await plane.start()
        running.append((plane, target, fleet))
        return plane, target, fleet

    yield start
    for replica in running:
        await stop(replica)


async def stop(replica: Replica) -> None:
    plane, _, fleet = replica
    await plane.stop()
    await fleet.stop()


def cli(redis_url: str, channel: str, *argv: str) -> list[str]:
    return [*argv, "--redis-url", redis_url, "--channel", channel]


async def test_two_replicas_apply_and_acknowledge(
    redis_base_url: str, channel: str, replicas: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = await replicas("proxy-a"), await replicas("proxy-b")
    code = await run_cli(*cli(redis_base_url, channel, "drain", "p1", "--wait", "5"))
    out = capsys.readouterr()
    assert code == 0, out.err
    assert a[1].calls == b[1].calls == [("drain", "p1", None, "control")]
    assert f"drain p1: sent through Redis redis://127.0.0.1:6379/0 channel {channel}" in out.out
    assert "proxy-a  applied  deployment_id=p1 group=chat state=draining" in out.out
    assert "proxy-b  applied  deployment_id=p1 group=chat state=draining" in out.out
    assert "drain p1: applied by 2 of 2 replicas" in out.out
    assert a[2].status()["applied"] == b[2].status()["applied"] == 1  # through the fleet link

    client = Redis.from_url(redis_base_url)
    try:
        keys = sorted([k.decode() async for k in client.scan_iter(match=f"{channel}:ack:*")])
        assert [key.rsplit(":", 1)[1] for key in keys] == ["proxy-a", "proxy-b"]
        assert 0 < await client.pttl(keys[0]) <= 300_000  # control.command_ttl_s
        ack = json.loads(await client.get(keys[0]))
        assert (ack["instance_id"], ack["outcome"], ack["details"]["state"]) == (
            "proxy-a",
            "applied",
            "draining",
        )
        standing = await client.hgetall(redis_channel.standing_key(channel))
        assert json.loads(standing[b"deployment:p1"])["kind"] == "drain"
    finally:
        await client.aclose()

    code = await run_cli(
        *cli(
            redis_base_url,
            channel,
            "shift",
            "chat",
            "--to",
            "s1",
            "--steps",
            "10,100",
            "--interval",
            "30s",
            "--json",
        )
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["exit_code"] == 0 and report["transport"] == "redis"
    assert sorted(result["instance_id"] for result in report["results"]) == ["proxy-a", "proxy-b"]
    assert report["missing"] == [] and sorted(report["listening"]) == ["proxy-a", "proxy-b"]
    assert a[1].shifts == b[1].shifts == {"chat": {"to": "s1", "steps": [10.0, 100.0], "interval_s": 30.0}}


async def test_a_refusing_replica_fails_the_command_with_its_message(
    redis_base_url: str, channel: str, replicas: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    a = await replicas("proxy-a", names=("p1", "s1", "e1"))
    b = await replicas("proxy-b", names=("p1", "s1"))
    code = await run_cli(*cli(redis_base_url, channel, "drain", "e1"))
    out = capsys.readouterr()
    assert code == 1
    assert "proxy-a  applied" in out.out
    assert "proxy-b  refused  unknown deployment 'e1' (known: p1, s1)" in out.out
    assert (
        "litellm-failover: drain e1: not applied by 1 of 2 answering replicas: proxy-b (refused)" in out.err
    )
    assert a[1].draining == {"e1"} and b[1].draining == set()


async def test_nothing_listening_is_a_clear_timeout_and_urls_stay_secret(
    redis_base_url: str, channel: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_cli(*cli(redis_base_url, channel, "failover", "chat", "--wait", "0.3"))
    err = capsys.readouterr().err
    assert code == 3
    assert "failover chat: no replica acknowledged within 0.3s (no replica is listening there" in err
    assert "this redis_url and fleet.channel" in err

    down = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    code = await run_cli(*cli(down, channel, "failover", "chat"))
    captured = capsys.readouterr()
    assert code == 1
    assert "could not send through Redis redis://:***@127.0.0.1:" in captured.err
    assert "s3cret" not in captured.err + captured.out

    code = await run_cli(
        *cli(
            redis_base_url, channel, "shift", "chat", "--to", "s1", "--steps", "50,25,100", "--interval", "1"
        )
    )
    assert code == 2 and "(nothing sent)" in capsys.readouterr().err


async def test_a_silent_replica_is_named(
    redis_base_url: str, channel: str, replicas: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    await replicas("proxy-a")
    client = redis_channel.connect(redis_base_url, 2)
    try:
        await redis_channel.beat(client, channel, "proxy-ghost", 0.0, 30)  # listening, never answers
    finally:
        await client.aclose()
    code = await run_cli(*cli(redis_base_url, channel, "failback", "chat", "--wait", "1"))
    out = capsys.readouterr()
    assert code == 3
    assert "proxy-ghost  no answer" in out.out
    assert "failback chat: applied by 1, but no answer within 1s from proxy-ghost" in out.err


async def test_a_command_that_does_not_validate_is_refused_by_every_replica(
    redis_base_url: str, channel: str, replicas: Any
) -> None:
    a, b = await replicas("proxy-a"), await replicas("proxy-b")
    bad = Command(
        kind="shift", target="chat", args={"to": "s1", "steps": [50, 25], "interval_s": 0}, issued_by="x"
    )
    client = redis_channel.connect(redis_base_url, 2)
    try:
        issued = datetime.fromtimestamp(await redis_channel.server_time(client), UTC)
        bad = Command(bad.kind, bad.target, bad.args, issued_at=issued, issued_by="x")
        await redis_channel.publish_command(client, channel, sign_command(bad), 60, KEYS)

        async def both() -> bool:
            return len(await redis_channel.read_acks(client, channel, bad.command_id)) == 2

        await wait_until(both, 5, "two refusals")
        acks = await redis_channel.read_acks(client, channel, bad.command_id)
    finally:
        await client.aclose()
    assert [(ack.instance_id, ack.outcome) for ack in acks] == [
        ("proxy-a", "refused"),
        ("proxy-b", "refused"),
    ]
    assert acks[0].message.startswith("invalid command: --steps: steps must increase")
    assert a[1].calls == b[1].calls == []


async def test_a_restarted_replica_takes_over_standing_state_but_replays_nothing(
    redis_base_url: str, channel: str, replicas: Any
) -> None:
    first = await replicas("proxy-a")
    assert await run_cli(*cli(redis_base_url, channel, "drain", "p1")) == 0
    assert await run_cli(*cli(redis_base_url, channel, "failover", "chat")) == 0
    assert (
        await run_cli(
            *cli(
                redis_base_url,
                channel,
                "shift",
                "chat",
                "--to",
                "s1",
                "--steps",
                "50,100",
                "--interval",
                "60",
            )
        )
        == 0
    )
    await stop(first)

    # The shift's fleet key is still there and the new replica's fleet reads it at connect; the
    # control plane sees it was issued before its start and leaves it to history.
    plane, target, fleet = await replicas("proxy-a2")
    assert target.calls == [("drain", "p1", None, RESTORE_SOURCE), ("failover", "chat", RESTORE_SOURCE)]
    assert target.shifts == {}
    assert fleet.link.resync_keys >= 3
    assert [entry["via"] for entry in plane.status()["restored"]] == ["redis", "redis"]

    assert await run_cli(*cli(redis_base_url, channel, "undrain", "p1")) == 0
    assert target.draining == set()
    _, later, _ = await replicas("proxy-a3")
    assert later.calls == [("failover", "chat", RESTORE_SOURCE)]  # p1's latest word was undrain


async def test_live_status_asks_every_replica(
    redis_base_url: str, channel: str, replicas: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    a = await replicas("proxy-a")
    await replicas("proxy-b")
    a[1].draining.add("p1")  # as if drained on proxy-a only
    code = await run_cli("status", "--redis-url", redis_base_url, "--channel", channel, "--group", "chat")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "proxy-a (live)" in out.out and "proxy-b (live)" in out.out
    lines = [line for line in out.out.splitlines() if " p1 " in line]
    assert len(lines) == 2 and sum("draining" in line for line in lines) == 1
    assert "status chat: answered by 2 of 2 replicas" in out.out

    code = await run_cli("status", "--live", "--redis-url", redis_base_url, "--channel", channel, "--json")
    report = json.loads(capsys.readouterr().out)
    by_replica = {result["instance_id"]: result["details"]["groups"] for result in report["results"]}
    assert [d["deployment_id"] for d in by_replica["proxy-b"]["chat"]["deployments"]] == ["p1", "p2", "s1"]
    assert by_replica["proxy-a"]["chat"]["deployments"][0]["draining"] is True


async def test_a_replica_cut_off_from_redis_applies_the_command_when_it_is_back(
    redis_base_url: str, channel: str, replicas: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from services import TcpForwarder, with_port  # a plugin module: imported after pytest loaded it

    target = make_url(redis_base_url)
    relay = TcpForwarder(target.host or "127.0.0.1", target.port or 6379, free_port())
    await relay.start()
    try:
        a = await replicas("proxy-a")
        b = await replicas("proxy-b", redis_url=with_port(redis_base_url, relay.port))
        await relay.stop()  # proxy-b loses Redis; its heartbeat key lives on for a while
        await wait_until(lambda: not b[2].link.connected, 5, "proxy-b to notice")
        code = await run_cli(*cli(redis_base_url, channel, "drain", "p1", "--wait", "0.5"))
        assert code == 3
        assert "no answer within 0.5s from proxy-b" in capsys.readouterr().err
        assert a[1].draining == {"p1"} and b[1].draining == set()

        await relay.start()  # back: proxy-b reads the command from its key and answers late
        await wait_until(lambda: b[1].draining == {"p1"}, 10, "proxy-b to apply the missed drain")
        client = redis_channel.connect(redis_base_url, 2)
        try:

            async def acked() -> bool:
                return any(
                    ack.instance_id == "proxy-b"
                    for ack in await redis_channel.read_acks(client, channel, b[0].recent[-1]["command_id"])
                )

            await wait_until(acked, 5, "proxy-b's late acknowledgement")
        finally:
            await client.aclose()
        assert b[1].calls == [("drain", "p1", None, "control")]
    finally:
        await relay.stop()


async def test_each_standing_entry_is_judged_alone_at_restore(
    redis_base_url: str, channel: str, replicas: Any
) -> None:
    """Before: one entry that was not a command (a list, ``issued_at`` of 1e20, bad JSON) made
    the whole Redis restore fail, so the valid drain next to it was not taken over."""
    good = sign_command(Command(kind="drain", target="p1", issued_by="ops"))
    later = datetime.fromtimestamp(4e9, UTC)
    future = sign_command(Command(kind="failover", target="chat", issued_by="ops", issued_at=later)).to_wire()
    client = Redis.from_url(redis_base_url)
    try:
        await client.hset(
            redis_channel.standing_key(channel),
            mapping={
                "deployment:p1": json.dumps(good.to_wire()),
                "deployment:p2": json.dumps(["drain", "p2"]),
                "deployment:s1": json.dumps(good.to_wire() | {"target": "s1", "issued_at": 1e20}),
                "group:other": "{not json",
                "deployment:x": json.dumps(good.to_wire() | {"target": "s1", "args": "timeout"}),
                "group:chat": json.dumps(future),
            },
        )
    finally:
        await client.aclose()
    plane, target, _ = await replicas("proxy-a")
    assert target.calls == [("drain", "p1", None, RESTORE_SOURCE)]
    restored = plane.status()["restored"]
    assert [entry["outcome"] for entry in restored].count("refused") == 5
    assert all(e["message"].startswith("invalid command: ") for e in restored if e["outcome"] == "refused")
    assert plane.status()["refused"] == 5 and plane.status()["redis"]["last_error"] is None


# -- authentication (issue 11 §1) --------------------------------------------------------------


async def test_forged_command_messages_are_never_applied(
    redis_base_url: str, channel: str, replicas: Any
) -> None:
    """Before: anything that could PUBLISH on the channel drained every replica."""
    from litellm_failover.control.signing import parse_keys

    plane, target, fleet = await replicas("proxy-a")
    stranger = parse_keys("other:" + "z" * 32)
    client = redis_channel.connect(redis_base_url, 2)
    try:
        issued = datetime.fromtimestamp(await redis_channel.server_time(client), UTC)

        def drain(deployment: str) -> Command:
            return Command(kind="drain", target=deployment, issued_at=issued, issued_by="attacker")

        unsigned = drain("p1")
        await redis_channel.publish_command(client, channel, unsigned, 60, parse_keys(""))  # no tag at all
        # A message from a stranger's key; a valid envelope around an untagged command (one
        # replayed inside a new envelope by a holder of an old key, say): neither is applied.
        await redis_channel.publish_command(client, channel, signed(drain("p2"), stranger), 60, stranger)
        inner = drain("s1")
        await redis_channel.publish_command(client, channel, inner, 60, KEYS)
        good = sign_command(drain("p2"))
        await redis_channel.publish_command(client, channel, good, 60, KEYS)

        async def answered() -> bool:
            return bool(await redis_channel.read_acks(client, channel, good.command_id))

        await wait_until(answered, 5, "the signed command's acknowledgement")
        [refusal] = await redis_channel.read_acks(client, channel, inner.command_id)
        assert refusal.outcome == "refused" and refusal.message.startswith("not authenticated (unsigned)")
        assert await redis_channel.read_acks(client, channel, unsigned.command_id) == []  # never read
    finally:
        await client.aclose()
    assert target.calls == [("drain", "p2", None, "control")]
    # The untagged command inside a valid envelope was refused by the plane (not applicable here).
    assert fleet.status()["ignored_by_reason"] == {"unsigned": 1, "unknown_key": 1, "not_applicable": 1}
    assert plane.status()["authentication"]["rejected_by"] == {"redis": {"unsigned": 2, "unknown_key": 1}}


async def test_fleets_on_one_redis_are_isolated_by_default(redis_base_url: str) -> None:
    """Before: every fleet used the channel ``litellm_failover``; pub/sub ignores the database
    number, so a staging proxy's drains and ejections reached production."""
    from litellm_failover.fleet.naming import settings_channel

    def channel_of(database_url: str, redis_url: str = redis_base_url, **fleet: Any) -> str:
        return settings_channel(settings("x", database_url=database_url, redis_url=redis_url, fleet=fleet))

    prod, staging = "postgresql://app:pw@db/prod", "postgresql://app:pw@db/staging"
    assert channel_of(prod) != channel_of(staging)
    assert channel_of(prod).startswith("litellm_failover:db-")
    # Replicas of one deployment agree, whatever their password or driver name.
    assert channel_of(prod) == channel_of("postgresql+asyncpg://app:other@db/prod")
    base = make_url(redis_base_url)
    assert channel_of(prod, str(base.set(database="0"))) != channel_of(prod, str(base.set(database="1")))
    assert channel_of(prod, name="blue") == channel_of(staging, name="blue") == "litellm_failover:blue"
    assert channel_of(prod, channel="mine") == "mine"

"""Hostile input against a serving replica: random and malformed fleet messages on its Redis
channel and command rows in its PostgreSQL schema, while a real ``litellm.Router`` with the plugin
serves requests against fake vLLM servers.

Bounded (``MESSAGES`` messages, ``ROWS`` rows, a seeded generator) so that it is the same run each
time. Every generated message and row is invalid by construction (each carries at least one bad
field), so none may change anything: no loop dies (the fleet link and both command paths still
apply a valid message sent afterwards), no request fails, no deployment is ejected.

Besides, ``FORGED`` messages and ``FORGED_ROWS`` rows say something a replica would act on (eject
p1, drain p1, pin a session) but are not validly signed: no tag, a garbled tag, a stranger's key,
the right key id with the wrong secret, a field changed after signing, signed too long ago (a
replay) or in the future, and validly tagged envelopes around untagged commands. Half the
malformed messages carry a valid tag, so the schema's own checks are fuzzed behind the tag check.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import time
from datetime import UTC, datetime
from typing import Any

import litellm
import pytest
import test_router_failover
from redis.asyncio import Redis
from sqlalchemy import text
from test_fleet_router import model_list
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.control import build_command, db_channel, redis_channel
from litellm_failover.control.client import signed
from litellm_failover.control.commands import Command
from litellm_failover.control.signing import keys_from_env, parse_keys, sign
from litellm_failover.drill.loadgen import router_sender
from litellm_failover.fleet.messages import SCHEMA_VERSION
from litellm_failover.store.engine import reading_engine
from litellm_failover.store.migrate import upgrade_database
from litellm_failover.store.models import commands_table

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
pytest_plugins = ["services"]

servers = test_router_failover.servers  # in-process fake vLLM servers p1, p2, s1 (a fixture)

MESSAGES = 2_000
ROWS = 200
FORGED = 300
FORGED_ROWS = 60
REQUESTS = 60
KEYS = keys_from_env()  # the fleet's key (tests/conftest.py)
STRANGER = parse_keys("stranger:" + "s" * 32)
WRONG_SECRET = parse_keys(f"{KEYS.ids[0]}:" + "w" * 32)

HOSTILE_VALUES: list[Any] = [
    float("inf"),
    float("-inf"),
    float("nan"),
    -1,
    1e308,
    1e20,
    2**70,
    True,
    None,
    "",
    "x" * 5_000,
    "p1\x00",
    "a\nb",
    "\x1b[2J",
    [],
    {},
    [1, 2],
    "Infinity",
]
# Fields whose value alone makes each kind of message invalid (or, for remaining_s, too long).
POISON = {
    "eject": ("remaining_s", [float("inf"), float("nan"), -1, 1e308, 1e9, True, "30", None]),
    "recover": ("deployment_id", ["", "p1\n", "p" * 300, 1, None]),
    "pin": ("session_id", ["", "s\x00", "s" * 400, 7]),  # a pin key holds at most 320
    "command": ("issued_at", [float("inf"), 1e20, -5, True, "now", None]),
}


def _valid(kind: str, rng: random.Random) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eject": {"model_group": "chat", "deployment_id": "p1", "reason": "fuzz", "remaining_s": 30.0},
        "recover": {"model_group": "chat", "deployment_id": "p1", "reason": "fuzz"},
        "pin": {"session_id": "sess", "model_group": "chat", "deployment_id": "p1"},
        "command": {
            "command_id": f"fuzz-{rng.getrandbits(64):x}",
            "action": "drain",
            "target": "p1",
            "args": {},
            "issued_at": 0.0,
        },
    }[kind]
    return {
        "v": SCHEMA_VERSION,
        "kind": kind,
        "origin": "fuzzer",
        "node": "fuzz-node",
        "id": f"{rng.getrandbits(64):x}",
        "sent_at": 1.0e9,
        "payload": payload,
    }


def hostile_message(rng: random.Random) -> str | bytes:
    """One message that no replica may act on."""
    shape = rng.random()
    if shape < 0.05:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    kind = rng.choice(list(POISON))
    message = _valid(kind, rng)
    for _ in range(rng.randint(0, 3)):  # a few hostile values anywhere ...
        payload = message["payload"]
        where = payload if rng.random() < 0.7 and isinstance(payload, dict) and payload else message
        where[rng.choice(list(where))] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
    if isinstance(message["payload"], dict):  # ... and always the kind's poison, last
        field, bad = POISON[kind]
        message["payload"][field] = rng.choice(bad)
    if rng.random() < 0.05:
        message["kind"] = rng.choice(["reboot", "EJECT", "eject\x00"])
    if rng.random() < 0.5:  # validly tagged: the schema's checks must hold behind the tag's
        message["sig"] = sign(KEYS, "fleet", message, time.time())
    encoded = json.dumps(message)
    if shape > 0.9:
        return encoded[: rng.randint(0, len(encoded) - 1)]  # truncated JSON
    return encoded


FORGERIES = ("unsigned", "garbled", "stranger", "wrong_secret", "tampered", "old", "future", "inner")


def forged_message(rng: random.Random, index: int, now: float) -> str:
    """A message a replica would act on (eject p1, drain p1, a pin) without a valid tag."""
    forgery = FORGERIES[index % len(FORGERIES)]
    kind = rng.choice(["eject", "command", "pin"]) if forgery != "inner" else "command"
    message = _valid(kind, rng) | {"sent_at": now}
    if kind == "command":
        message["payload"]["issued_at"] = now + 5  # after the replica's start: it would apply
    if forgery == "inner":  # a valid envelope around an untagged (or stranger-tagged) command
        if rng.random() < 0.5:
            inner = Command(kind="drain", target="p1", issued_at=datetime.fromtimestamp(now + 5, UTC))
            message["payload"]["tag"] = signed(inner, STRANGER).tag
            message["payload"]["command_id"] = inner.command_id
        message["sig"] = sign(KEYS, "fleet", message, now)
        return json.dumps(message)
    keys, moment = {"stranger": STRANGER, "wrong_secret": WRONG_SECRET}.get(forgery, KEYS), now
    moment += {"old": -7200.0, "future": 7200.0}.get(forgery, 0.0)
    if forgery != "unsigned":
        message["sig"] = sign(keys, "fleet", message, moment)
    if forgery == "garbled":
        flipped = message["sig"][:-1] + ("1" if message["sig"].endswith("0") else "0")
        message["sig"] = rng.choice(["v1:x", "", 7, ["v1"], "v1:" + "k" * 300, flipped])
    if forgery == "tampered":
        message["origin"] = "someone-else"
    return json.dumps(message)


def forged_row(index: int) -> dict[str, Any]:
    """A valid drain of p1 in ``failover_commands``, not validly signed."""
    command = build_command("drain", "p1", command_id=f"forged-row-{index}", issued_by="fuzzer")
    tag = {
        0: "",
        1: signed(command, STRANGER).tag,
        2: signed(command, WRONG_SECRET).tag,
        3: signed(build_command("drain", "p2", command_id=command.command_id, issued_by="fuzzer"), KEYS).tag,
        4: "v1:garbage",
    }[index % 5]
    return {
        "command_id": command.command_id,
        "created_at": command.issued_at,
        "kind": "drain",
        "target": "p1",
        "args": {},
        "issued_by": "fuzzer",
        "signature": tag or None,
    }


def hostile_row(rng: random.Random, index: int) -> dict[str, Any]:
    """Column values for one ``failover_commands`` row that is not a valid command."""
    kind, target, args = "drain", "p1", {}
    match index % 5:
        case 0:
            args = rng.choice([["p1"], "timeout", 7, [{"timeout_s": 1}]])
        case 1:
            kind = rng.choice(["reboot", "drain\n", "x" * 30])
        case 2:
            # (no NUL: PostgreSQL text holds none)
            target = rng.choice(["p1\x01", "p1\nforged log line", "\x1b[2J", "t" * 250 + "\t"])
        case 3:
            args = {"timeout_s": rng.choice([-3, "soon", [1], 1e300, 0, True])}
        case 4:  # JSON columns hold no NaN or Infinity (PostgreSQL refuses them)
            args = {"unexpected": copy.deepcopy(rng.choice([v for v in HOSTILE_VALUES[3:] if v != "p1\x00"]))}
    return {
        "command_id": f"row-{index}",
        "created_at": datetime.now(UTC),
        "kind": kind,
        "target": target,
        "args": args,
        "issued_by": "fuzzer",
    }


async def test_hostile_messages_and_rows_change_nothing_and_stop_nothing(
    servers, channel: str, redis_base_url: str, postgres_schema_url: str
) -> None:
    await upgrade_database(postgres_schema_url)
    settings = {
        "instance_id": "B",
        "database_url": postgres_schema_url,
        "health": {"interval_s": 30.0},
        "redis_url": redis_base_url,
        "fleet": {"channel": channel, "operation_timeout_s": 0.5, "reconnect_max_s": 0.5},
        "control": {"poll_interval_s": 0.05},
    }
    router = litellm.Router(model_list=copy.deepcopy(model_list(servers, ("p1", "s1"))), num_retries=0)
    plugin = attach(router, settings)
    rng, row_rng = random.Random(11), random.Random(12)  # one each: the two tasks interleave
    client = Redis.from_url(redis_base_url)
    try:
        async with plugin:
            assert plugin.status()["fleet"]["connected"]
            send = router_sender(router, "chat", num_retries=0)

            async def requests() -> list[Any]:
                results = []
                for index in range(REQUESTS):
                    results.append(await send(index, index % 2 == 1))
                    await asyncio.sleep(0.01)
                return results

            async def messages() -> None:
                for _ in range(MESSAGES // 100):
                    pipe = client.pipeline(transaction=False)
                    for _ in range(100):
                        pipe.publish(channel, hostile_message(rng))
                    await pipe.execute()
                    await asyncio.sleep(0.01)
                now = await redis_channel.server_time(client)
                pipe = client.pipeline(transaction=False)
                for index in range(FORGED):
                    pipe.publish(channel, forged_message(rng, index, now))
                await pipe.execute()

            async def rows() -> None:
                async with reading_engine(postgres_schema_url) as engine:
                    for index in range(ROWS):
                        async with engine.begin() as connection:
                            await connection.execute(
                                commands_table.insert().values(**hostile_row(row_rng, index))
                            )
                    for index in range(FORGED_ROWS):
                        async with engine.begin() as connection:
                            await connection.execute(commands_table.insert().values(**forged_row(index)))
                    async with engine.begin() as connection:  # a time no datetime can hold
                        await connection.execute(
                            text(
                                "UPDATE failover_commands SET created_at = 'infinity' "
                                "WHERE command_id = 'row-7'"
                            )
                        )

            served, _, _ = await asyncio.gather(requests(), messages(), rows())
            assert [r.error for r in served if not r.ok] == []

            inner = FORGED // len(FORGERIES)  # valid envelopes whose command the plane refuses
            await wait_until(
                lambda: plugin.status()["fleet"]["ignored"] >= MESSAGES + FORGED, 10, "every message judged"
            )
            refused = ROWS + FORGED_ROWS + inner
            await wait_until(
                lambda: plugin.status()["control"]["refused"] >= refused, 10, "every row refused"
            )
            control = plugin.status()["control"]
            assert control["refused"] == refused and control["applied"] == 0 and control["running"]
            assert control["database"]["last_error"] is None
            rejected = control["authentication"]["rejected_by"]
            assert set(rejected["redis"]) == {
                "unsigned",
                "malformed_tag",
                "unknown_key",
                "bad_signature",
                "too_old",
                "future",
            }
            assert set(rejected["database"]) == {"unsigned", "malformed_tag", "unknown_key", "bad_signature"}
            assert sum(rejected["database"].values()) == FORGED_ROWS
            states = [e for e in plugin.core.recent_events if e.event_type == "state_change"]
            assert states == []  # nothing ejected, recovered or moved by any of it
            assert {
                d["deployment_id"]: d["state"] for d in plugin.status()["groups"]["chat"]["deployments"]
            } == {
                "p1": "healthy",
                "s1": "healthy",
            }
            fleet = plugin.status()["fleet"]
            assert fleet["applied"] == 0 and fleet["connected"]

            # Still listening on all three paths: a valid message on each is applied.
            status_row = signed(build_command("status", "", issued_by="ops"), KEYS)
            await db_channel.insert_command(postgres_schema_url, status_row)
            moment = datetime.fromtimestamp(await redis_channel.server_time(client), UTC)
            over_redis = signed(Command(kind="status", target="", issued_at=moment, issued_by="ops"), KEYS)
            await redis_channel.publish_command(client, channel, over_redis, 60, KEYS)
            ejection = _valid("eject", rng) | {"sent_at": moment.timestamp(), "origin": "A"}
            await client.publish(
                channel, json.dumps(ejection | {"sig": sign(KEYS, "fleet", ejection, time.time())})
            )

            async def answered() -> bool:
                rows = await db_channel.read_results(postgres_schema_url, status_row.command_id)
                acks = await redis_channel.read_acks(client, channel, over_redis.command_id)
                return bool(rows) and bool(acks)

            await wait_until(answered, 10, "the valid commands answered")
            [row] = await db_channel.read_results(postgres_schema_url, status_row.command_id)
            [ack] = await redis_channel.read_acks(client, channel, over_redis.command_id)
            assert row.outcome == "applied" and ack.outcome == "applied"
            await wait_until(
                lambda: plugin.core.health["p1"].state.value == "unhealthy", 5, "the valid ejection"
            )
            assert (await send(REQUESTS, False)).ok
    finally:
        await client.aclose()

"""Commands through Redis: the fleet's channel in, acknowledgement keys out.

A command is a fleet message of kind ``command`` (``litellm_failover.fleet.messages``): published
on the fleet's channel and kept as a state key for ``fleet.key_ttl_s``, so every replica's fleet
link delivers it, a replica that was reconnecting meanwhile reads it from the key, and the
fleet's checks (schema version, duplicates) apply to it as to any message. Each replica answers
with a key of its own, ``<channel>:ack:<command_id>:<instance_id>`` (a JSON ``CommandResult``)
that expires after ``control.command_ttl_s``; the CLI reads those.

Two more keys make the CLI's answer precise: ``<channel>:control:replica:<instance_id>``, each
listening replica's heartbeat (expiring after three missed beats), says whose acknowledgement to
wait for; the hash ``<channel>:control:standing`` holds, per deployment and per group, the latest
drain/undrain and failover/failback that some replica applied, which a replica starting later
takes over (see ``ControlPlane``). The CLI writes it, in the order the operator issued commands.

``issued_at`` of a command sent this way is the Redis server's clock (``TIME``), and replicas
read their start time from it too: "issued before I started" never depends on hosts' clocks.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url

from litellm_failover.control.commands import MAX_TARGET, STANDING, Command, from_wire
from litellm_failover.control.dispatch import CommandResult
from litellm_failover.control.signing import KeyRing, sign
from litellm_failover.fleet.messages import OperatorCommand, body, encode, make
from litellm_failover.fleet.sync import _glob_escape
from litellm_failover.store.engine import redact

logger = logging.getLogger("litellm_failover.control")

_SCAN_COUNT = 1000


def ack_prefix(channel: str, command_id: str) -> str:
    return f"{channel}:ack:{command_id}:"


def replica_prefix(channel: str) -> str:
    return f"{channel}:control:replica:"


def standing_key(channel: str) -> str:
    return f"{channel}:control:standing"


def command_key(channel: str, command_id: str) -> str:
    """The fleet state key the command is kept under (``<channel>:state:<subject>``)."""
    return f"{channel}:state:command:{command_id}"


def connect(url: str, timeout_s: float, *, client_name: str | None = None) -> Redis:
    """A client whose every call gives up after ``timeout_s``; a malformed URL is a ValueError
    whose message carries no password."""
    try:
        parse_url(url)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid Redis URL: {redact(str(exc), url)}") from None
    return Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, client_name=client_name
    )


async def server_time(client: Redis) -> float:
    """The Redis server's clock, in epoch seconds."""
    seconds, micros = await client.time()
    return float(seconds) + float(micros) / 1e6


async def _scan(client: Redis, prefix: str) -> list[bytes]:
    pattern = _glob_escape(prefix) + "*"
    return [key async for key in client.scan_iter(match=pattern, count=_SCAN_COUNT)]


async def _values(client: Redis, prefix: str) -> list[dict[str, Any]]:
    keys = await _scan(client, prefix)
    found: list[dict[str, Any]] = []
    for value in (await client.mget(keys)) if keys else []:
        if value is None:
            continue  # expired between SCAN and MGET
        try:
            data = json.loads(value)
        except ValueError:
            continue
        if isinstance(data, dict):
            found.append(data)
    return found


# -- the CLI's side ----------------------------------------------------------------------------


async def publish_command(
    client: Redis, channel: str, command: Command, key_ttl_s: float, keys: KeyRing
) -> None:
    """Send the command to every replica: its state key, then the message (one round trip). The
    envelope is tagged as every fleet message is (the command inside carries its own tag)."""
    payload = OperatorCommand(
        command_id=command.command_id,
        action=command.kind,
        target=command.target,
        args=command.args,
        issued_at=command.issued_at.timestamp(),
        issued_by=command.issued_by,
        tag=command.tag,
    )
    envelope = make("command", command.issued_by or "cli", payload, node=f"cli-{uuid.uuid4().hex}")
    message = encode(envelope, sign(keys, "fleet", body(envelope), time.time()) if keys else "")
    pipe = client.pipeline(transaction=False)
    pipe.set(command_key(channel, command.command_id), message, px=max(1, int(key_ttl_s * 1000)))
    pipe.publish(channel, message)
    await pipe.execute()


async def read_acks(client: Redis, channel: str, command_id: str) -> list[CommandResult]:
    results = [
        CommandResult.from_wire(data) for data in await _values(client, ack_prefix(channel, command_id))
    ]
    return sorted(results, key=lambda result: result.instance_id)


async def live_replicas(client: Redis, channel: str) -> list[str]:
    found = await _values(client, replica_prefix(channel))
    return sorted({str(data["instance_id"]) for data in found if data.get("instance_id")})


async def record_standing(client: Redis, channel: str, command: Command) -> None:
    """Remember the command as the latest word on its deployment or group (an undrain or a
    failback is kept too: it is what ends an older drain for a replica starting later)."""
    scope = STANDING.get(command.kind)
    if scope is None:
        return
    await client.hset(standing_key(channel), f"{scope}:{command.target}", json.dumps(command.to_wire()))


# -- the replica's side ------------------------------------------------------------------------


async def write_ack(
    client: Redis, channel: str, command_id: str, result: CommandResult, ttl_s: float
) -> None:
    key = ack_prefix(channel, command_id) + result.instance_id
    await client.set(key, json.dumps(result.to_wire()), px=max(1, int(ttl_s * 1000)))


async def beat(client: Redis, channel: str, instance_id: str, started_at: float, ttl_s: float) -> None:
    value = json.dumps({"instance_id": instance_id, "started_at": started_at})
    await client.set(replica_prefix(channel) + instance_id, value, px=max(1, int(ttl_s * 1000)))


async def leave(client: Redis, channel: str, instance_id: str) -> None:
    await client.delete(replica_prefix(channel) + instance_id)


async def standing_commands(client: Redis, channel: str) -> tuple[list[Command], list[tuple[str, str]]]:
    """The latest command per deployment and per group that the CLI recorded, oldest first, and
    the entries that are not valid commands as ``(field, why)``: each entry is judged alone, so
    one that anything else wrote into the hash never keeps the others from being restored."""
    raw = await client.hgetall(standing_key(channel))
    commands: list[Command] = []
    refused: list[tuple[str, str]] = []
    for field, value in raw.items():
        name = field.decode(errors="replace") if isinstance(field, bytes) else str(field)
        try:
            commands.append(from_wire(json.loads(value)))
        except (ValueError, TypeError, OverflowError) as exc:  # CommandError, bad JSON, bad time
            refused.append((name[:MAX_TARGET], f"invalid command: {exc}"))
    return sorted(commands, key=lambda command: command.issued_at), refused


async def clear_control(url: str, channel: str) -> int:
    """Delete a channel's acknowledgements, heartbeats, standing state and command keys; the
    number deleted. For tests and for an operator resetting a fleet's standing drains."""
    client = connect(url, 5.0)
    try:
        keys = [
            *await _scan(client, f"{channel}:ack:"),
            *await _scan(client, replica_prefix(channel)),
            *await _scan(client, f"{channel}:state:command:"),
        ]
        keys.append(standing_key(channel).encode())
        return int(await client.delete(*keys))
    finally:
        await client.aclose()

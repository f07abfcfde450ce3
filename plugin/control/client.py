"""The sending end: deliver a command through Redis or the database and collect the answers.

Used by the CLI, and usable from an operator's own scripts. ``send_via_redis`` and
``send_via_database`` both return a ``Delivery``: the replicas that were listening when the
command was sent, the answers that came back within ``wait_s``, and the exit code the CLI uses.
The wait ends early once every listening replica has answered; with none listening it runs to
the end, since an answer from a replica whose heartbeat was late is still worth showing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from litellm_failover.control import db_channel
from litellm_failover.control.commands import STANDING, Command
from litellm_failover.control.dispatch import CommandResult
from litellm_failover.control.optional import redis_channel
from litellm_failover.control.signing import KeyRing, sign
from litellm_failover.settings import ControlSettings
from litellm_failover.store.engine import reading_engine, redact_url

EXIT_OK = 0
EXIT_REFUSED = 1  # some replica refused it (or it expired, or failed there); also: cannot send
EXIT_USAGE = 2  # bad input: nothing was sent
EXIT_NO_ANSWER = 3  # no refusal, but a listening replica (or every replica) did not answer in time

POLL_S = 0.1
KEY_TTL_S = ControlSettings().command_ttl_s  # how long a command's fleet key lives for reconnecting replicas


@dataclass(frozen=True, slots=True)
class Delivery:
    command: Command
    transport: Literal["redis", "database"]
    where: str  # the redacted URL (and channel): safe to print
    listening: list[str]  # replicas whose heartbeat was live when the command was sent
    results: list[CommandResult] = field(default_factory=list)
    waited_s: float = 0.0
    wait_s: float = 0.0

    @property
    def missing(self) -> list[str]:
        answered = {result.instance_id for result in self.results}
        return [instance for instance in self.listening if instance not in answered]

    @property
    def applied(self) -> list[CommandResult]:
        return [result for result in self.results if result.ok]

    @property
    def exit_code(self) -> int:
        if self.wait_s <= 0:
            return EXIT_OK  # asked not to wait: sending was the whole job
        if any(not result.ok for result in self.results):
            return EXIT_REFUSED
        if not self.results or self.missing:
            return EXIT_NO_ANSWER
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command.to_wire() | {"issued_at": self.command.issued_at.isoformat()},
            "transport": self.transport,
            "where": self.where,
            "listening": self.listening,
            "results": [result.to_wire() for result in self.results],
            "missing": self.missing,
            "waited_s": round(self.waited_s, 3),
            "exit_code": self.exit_code,
        }


async def _collect(
    read: Any, listening: list[str], wait_s: float, poll_s: float
) -> tuple[list[CommandResult], float]:
    """Poll ``read()`` until every listening replica answered or ``wait_s`` ran out."""
    start = time.monotonic()
    results: list[CommandResult] = []
    while True:
        results = await read()
        answered = {result.instance_id for result in results}
        elapsed = time.monotonic() - start
        if (listening and answered.issuperset(listening)) or elapsed >= wait_s:
            return results, elapsed
        await asyncio.sleep(min(poll_s, max(0.0, wait_s - elapsed)))


def signed(command: Command, keys: KeyRing) -> Command:
    """The command with its tag (``control.signing``); unchanged without keys (replicas accept it
    only with ``control.insecure_unsigned``)."""
    if not keys:
        return command
    return replace(command, tag=sign(keys, "command", command.signed_body(), time.time()))


async def send_via_database(
    url: str, command: Command, *, wait_s: float, keys: KeyRing, poll_s: float = POLL_S
) -> Delivery:
    """Sign and insert the command and wait for result rows. Errors (no such database, no
    tables) raise."""
    command = signed(command, keys)
    async with reading_engine(url) as engine:
        listening = await db_channel.live_replicas(engine, datetime.now(UTC))
        await db_channel.insert_command(engine, command)
        delivery = Delivery(command, "database", redact_url(url), listening, wait_s=wait_s)
        if wait_s <= 0:
            return delivery
        results, waited = await _collect(
            lambda: db_channel.read_results(engine, command.command_id), listening, wait_s, poll_s
        )
    return replace(delivery, results=results, waited_s=waited)


async def send_via_redis(
    url: str,
    channel: str,
    command: Command,
    *,
    wait_s: float,
    keys: KeyRing,
    timeout_s: float = 5.0,
    poll_s: float = POLL_S,
) -> Delivery:
    """Sign and publish the command on the fleet's channel and wait for acknowledgement keys.
    The command's ``issued_at`` becomes the Redis server's time. Errors (Redis down) raise."""
    link = redis_channel()  # only here: redis-py is the ``redis`` extra
    client = link.connect(url, timeout_s)
    try:
        issued = datetime.fromtimestamp(await link.server_time(client), UTC)
        command = signed(replace(command, issued_at=issued), keys)
        listening = await link.live_replicas(client, channel)
        await link.publish_command(client, channel, command, KEY_TTL_S, keys)
        delivery = Delivery(
            command, "redis", f"{redact_url(url)} channel {channel}", listening, wait_s=wait_s
        )
        if wait_s <= 0:
            if command.kind in STANDING:
                await link.record_standing(client, channel, command)
            return delivery
        results, waited = await _collect(
            lambda: link.read_acks(client, channel, command.command_id), listening, wait_s, poll_s
        )
        if command.kind in STANDING and any(result.ok for result in results):
            await link.record_standing(client, channel, command)
    finally:
        await client.aclose()
    return replace(delivery, results=results, waited_s=waited)

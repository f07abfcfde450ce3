"""``ControlPlane``: one replica's end of the operator commands (drain, shift, ...).

It listens on both transports it has: the fleet's Redis channel when the plugin has a fleet
(``redis_url`` set), and the database's ``failover_commands`` table whenever the plugin has a
store. Which one a command comes through is the CLI's choice (``--redis-url`` or ``--url``); a
replica applies each command once (by ``command_id``) whichever way it arrives, and answers the
same way it came: an acknowledgement key in Redis, a row in ``failover_command_results``.

Restarts. A command is an event, applied by the replicas running when it was issued; a replica
never replays commands issued before it started (a restart must not re-run a shift or write a
second ``drain_started`` for an old drain). But a drain or a planned failover is also a standing
decision: the operator took p1 out until they say otherwise, and a replica that restarts, or
joins the fleet later, must not send it traffic again. So at start (``control.restore_on_start``)
a replica takes over the standing state: per deployment the latest applied drain/undrain, per
group the latest applied failover/failback; where that is a drain or a failover it applies it
(``source="control:restore"``). A shift is not standing: it is not resumed after a restart.

Nothing here is on the request path: polls and heartbeats run as background workers (the
plugin's one shape, ``litellm_failover.worker``), acknowledgements as tasks, every database and
Redis call is bounded (``control.guard``), and a database or Redis that is away is logged
(throttled), shown in ``status()``, and retried on the next round. The plugin is seen only
through ``OperatorTarget`` (``control.dispatch``): what a command can ask of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.control import db_channel
from litellm_failover.control.applier import CommandApplier
from litellm_failover.control.commands import Command, from_wire
from litellm_failover.control.dispatch import CommandResult, OperatorTarget
from litellm_failover.control.gate import AuthGate, Transport
from litellm_failover.control.guard import DATABASE_TIMEOUT_S, Guard
from litellm_failover.control.optional import redis_channel
from litellm_failover.fleet.messages import Envelope, OperatorCommand
from litellm_failover.fleet.naming import settings_channel
from litellm_failover.worker import Worker

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from litellm_failover.fleet.fleet import Fleet
    from litellm_failover.settings import FailoverSettings
    from litellm_failover.store.writer import StoreWriter


logger = logging.getLogger("litellm_failover.control")

_PENDING_RESULTS = 1_000  # results waiting for the database; the oldest are dropped beyond this
_ACK_ATTEMPTS = 3
_BEATS_PER_TTL = 3  # a replica is "listening" until it has missed this many heartbeats


class ControlPlane:
    """``ControlPlane(plugin, settings, writer, fleet)``; ``await start()`` after the writer and
    the fleet have started (it reads its start position and the standing state from them), and
    ``await stop()`` before they stop.

    ``target``: the plugin, as an ``OperatorTarget``. ``writer`` is the plugin's ``StoreWriter``
    (its engine once connected, and its event sink for the audit trail) or an ``AsyncEngine``;
    None: no database path. ``fleet``: the plugin's ``Fleet`` (its applier gets a
    ``command_listener``); None: no Redis path.
    """

    def __init__(
        self,
        target: OperatorTarget,
        settings: FailoverSettings,
        writer: StoreWriter | AsyncEngine | None = None,
        fleet: Fleet | None = None,
        *,
        instance_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings.control
        self.instance_id = instance_id or target.instance_id or settings.instance_id or ""
        if not self.instance_id:
            raise ValueError("ControlPlane needs an instance_id (the target's, the settings' or its own)")
        self.clock = clock
        self._writer = writer
        self.fleet = fleet
        self._redis_url = settings.redis_url
        self._timeout = settings.fleet.operation_timeout_s
        if fleet is not None:
            if not self._redis_url:
                raise ValueError("ControlPlane with a fleet needs failover_settings.redis_url")
            if not hasattr(fleet.applier, "command_listener"):
                raise TypeError(
                    f"the fleet's applier {type(fleet.applier).__name__} takes no command_listener"
                )
        self.channel = fleet.link.channel if fleet is not None else settings_channel(settings)
        # One gate per plugin: the fleet's when there is one (its link carries Redis commands).
        self.gate = fleet.gate if fleet is not None else AuthGate.from_settings(settings, self.instance_id)
        submit = getattr(writer, "submit_event", None)  # an AsyncEngine has no audit trail
        if self.gate.submit is None:
            self.gate.submit = submit
        self._redis: Redis | None = None
        self._redis_offset = 0.0  # Redis server clock minus ours
        self._running = False
        self._guard = Guard(self._redis_url, self._timeout)
        self._heartbeat = Worker("failover:control:heartbeat", logger)
        self._poller = Worker("failover:control:poll", logger)
        self._started_local = 0.0
        self._started_redis = 0.0
        self._floor: int | None = None  # commands with ids up to this were issued before our start
        self._high = 0
        self._pending: deque[tuple[str, CommandResult]] = deque(maxlen=_PENDING_RESULTS)
        self._early: list[Envelope] | None = []  # fleet commands held until the restore is done
        self._acks: set[asyncio.Task[None]] = set()
        self._applier = CommandApplier(target, self.instance_id, self.settings.command_ttl_s, submit)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._running or not self.settings.enabled:
            return
        self.gate.announce("operator channel (drain, failover, shift, chaos)")
        if not self.gate.enabled:
            return  # off without a key: status() says so
        self._running = True
        self._started_local = self.clock()
        if self.fleet is not None:
            assert self._redis_url is not None
            self._redis = redis_channel().connect(
                self._redis_url,
                self._timeout,
                client_name=f"litellm-failover-control:{self.instance_id[:64]}",
            )
            moment = await self._guard.redis(redis_channel().server_time(self._redis))
            if moment is not None:
                self._redis_offset = moment - self.clock()
            self.fleet.applier.command_listener = self._on_fleet_command  # type: ignore[attr-defined]
        self._started_redis = self._started_local + self._redis_offset
        engine = self._engine()
        if engine is not None:
            self._floor = await self._guard.database(db_channel.start_position(engine))
            self._high = self._floor or 0
        if self.settings.restore_on_start:
            await self._restore()
        early, self._early = self._early, None
        for envelope in early or []:
            self._on_fleet_command(envelope)  # arrived while restoring: applied after it, in order
        await self._beat()  # listening from now on: a CLI run right after start waits for us
        beat, poll = self.settings.heartbeat_interval_s, self.settings.poll_interval_s
        self._heartbeat.start(lambda: self._heartbeat.every(beat, self._beat, "control: background round"))
        if self._writer is not None:
            self._poller.start(lambda: self._poller.every(poll, self.poll, "control: background round"))

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self._early = []
        if (
            self.fleet is not None
            and getattr(self.fleet.applier, "command_listener", None) == self._on_fleet_command
        ):
            self.fleet.applier.command_listener = None  # type: ignore[attr-defined]
        for worker in (self._heartbeat, self._poller):
            # A round is not waited for: cancelled at once; one whose cancellation was lost
            # ends at its next step (the loop ends on ``stopping``), within its calls' bounds.
            await worker.stop(grace_s=0.0, cancel_wait_s=DATABASE_TIMEOUT_S + self._timeout)
        if self._acks:
            await asyncio.wait(set(self._acks), timeout=self._timeout * _ACK_ATTEMPTS)
        engine = self._engine()
        if engine is not None:
            await self._guard.database(self._flush_results(engine))
            await self._guard.database(db_channel.leave(engine, self.instance_id))
        if self._redis is not None:
            await self._guard.redis(redis_channel().leave(self._redis, self.channel, self.instance_id))
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await self._redis.aclose()
            self._redis = None

    async def __aenter__(self) -> ControlPlane:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- the database path ----------------------------------------------------------------

    async def poll(self) -> None:
        """One round: apply the commands issued since the last one and write their results."""
        engine = self._engine()
        if engine is None or not self._running:
            return
        await self._guard.database(self._poll(engine))

    async def _poll(self, engine: AsyncEngine) -> None:
        if self._floor is None:
            # The database was away at our start: what was issued before it is not ours to run.
            before = datetime.fromtimestamp(self._started_local, UTC)
            self._floor = await db_channel.start_position(engine, before=before)
            self._high = max(self._high, self._floor)
        rows = await db_channel.fetch_commands(engine, max(self._floor, self._high - db_channel.LOOKBACK))
        for row in rows:
            self._high = max(self._high, row.seq)
            if row.seq <= self._floor or self._applier.seen(row.command_id):
                continue
            if row.command is None:
                result = self._applier.refuse(row.command_id, row.error or "invalid command")
            elif (why := self._authenticate(row.command, "database")) is not None:
                result = self._applier.refuse(row.command_id, why)
            else:
                result = self._applier.handle(row.command, "database", self.clock())
            if result is not None:
                self._pending.append((row.command_id, result))
        await self._flush_results(engine)

    async def _flush_results(self, engine: AsyncEngine) -> None:
        if self._pending:
            batch = list(self._pending)
            await db_channel.write_results(engine, batch)
            for _ in batch:
                self._pending.popleft()

    # -- the Redis path -------------------------------------------------------------------

    def _on_fleet_command(self, envelope: Envelope) -> bool:
        """The fleet's ``on_command``: runs on the event loop, applies at once, acks in the
        background. True when applied (the fleet counts the rest as not applicable)."""
        payload = envelope.payload
        if not self._running or self._redis is None or not isinstance(payload, OperatorCommand):
            return False
        if self._early is not None:
            self._early.append(envelope)
            return False
        try:
            command = from_wire(
                {
                    "command_id": payload.command_id,
                    "kind": payload.action,
                    "target": payload.target,
                    "args": payload.args,
                    "issued_at": payload.issued_at,
                    "issued_by": payload.issued_by,
                    "tag": payload.tag,
                }
            )
        except (ValueError, TypeError, OverflowError) as exc:  # CommandError, or args no kind takes
            if self._applier.seen(payload.command_id):
                return False
            self._ack(payload.command_id, self._applier.refuse(payload.command_id, f"invalid command: {exc}"))
            return False
        if payload.issued_at < self._started_redis:
            return False  # issued before this replica started (read back from its state key)
        if (why := self._authenticate(command, "redis")) is not None:
            if not self._applier.seen(command.command_id):
                self._ack(command.command_id, self._applier.refuse(command.command_id, why))
            return False
        result = self._applier.handle(command, "redis", self.clock() + self._redis_offset)
        if result is None:
            return False
        self._ack(command.command_id, result)
        return result.ok

    def _ack(self, command_id: str, result: CommandResult) -> None:
        task = asyncio.get_running_loop().create_task(self._write_ack(command_id, result))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _write_ack(self, command_id: str, result: CommandResult) -> None:
        for attempt in range(_ACK_ATTEMPTS):
            if self._redis is None:
                return
            done = await self._guard.redis(
                redis_channel().write_ack(
                    self._redis, self.channel, command_id, result, self.settings.command_ttl_s
                )
            )
            if done is not None or attempt + 1 == _ACK_ATTEMPTS:
                return
            await asyncio.sleep(self._timeout * (attempt + 1))

    # -- applying -------------------------------------------------------------------------

    def _authenticate(self, command: Command, transport: Transport) -> str | None:
        """None when the command's tag is valid (or unsigned commands are allowed); else the
        refusal's message. A standing command is old by design: only its MAC counts, not its age."""
        max_age = None if transport == "standing" else self.settings.command_ttl_s + self.gate.max_skew_s
        what = f"command {command.describe()[:120]!r} by {command.issued_by[:80]!r}"
        error = self.gate.check(
            "command", transport, command.signed_body(), command.tag, max_age_s=max_age, what=what
        )
        return None if error is None else f"not authenticated ({error.reason}): {error.detail}; not applied"

    def _authentic(self, commands: list[Command] | None, via: str) -> list[Command] | None:
        """The standing commands whose tags are valid; the others are refused, not restored."""
        if commands is None:
            return None
        kept: list[Command] = []
        for command in commands:
            why = self._authenticate(command, "standing")
            if why is None:
                kept.append(command)
            else:
                self._applier.refuse_standing(command.describe(), via, why)
        return kept

    async def _restore(self) -> None:
        """Take over the standing drains and planned failovers (see the module docstring)."""
        sources: list[tuple[str, list[Command] | None]] = []
        engine = self._engine()
        if engine is not None:
            found = await self._guard.database(db_channel.standing_commands(engine))
            sources.append(("database", self._authentic(found, "database")))
        if self._redis is not None:
            found = await self._guard.redis(redis_channel().standing_commands(self._redis, self.channel))
            commands, refused = found if isinstance(found, tuple) else (None, [])
            for entry, why in refused:
                self._applier.refuse_standing(entry, "redis", why)
            sources.append(("redis", self._authentic(commands, "redis")))
        self._applier.restore(sources, self.clock() + self._redis_offset)

    # -- background -----------------------------------------------------------------------

    async def _beat(self) -> None:
        ttl = self.settings.heartbeat_interval_s * _BEATS_PER_TTL
        engine = self._engine()
        if engine is not None:
            now = datetime.fromtimestamp(self.clock(), UTC)
            started = datetime.fromtimestamp(self._started_local, UTC)
            await self._guard.database(db_channel.heartbeat(engine, self.instance_id, started, now, ttl))
        if self._redis is not None:
            await self._guard.redis(
                redis_channel().beat(self._redis, self.channel, self.instance_id, self._started_redis, ttl)
            )

    def _engine(self) -> AsyncEngine | None:
        if isinstance(self._writer, AsyncEngine):
            return self._writer
        return getattr(self._writer, "engine", None)  # None until the writer has connected

    # -- inspection -----------------------------------------------------------------------

    @property
    def recent(self) -> deque[dict[str, Any]]:
        """The last commands this replica handled, newest last (``status()["recent"]``)."""
        return self._applier.recent

    def status(self) -> dict[str, Any]:
        outcomes = self._applier.outcomes
        transports = (["redis"] if self.fleet is not None else []) + (
            ["database"] if self._writer is not None else []
        )
        return {
            "enabled": self.settings.enabled and self.gate.enabled,
            "authentication": self.gate.status(),
            "running": self._running,
            "instance_id": self.instance_id,
            "transports": transports,
            "applied": outcomes["applied"],
            "refused": outcomes["refused"],
            "expired": outcomes["expired"],
            "errors": outcomes["error"],
            "recent": list(self._applier.recent),
            "restored": list(self._applier.restored),
            "database": {
                "listening": self._writer is not None,
                "connected": self._engine() is not None and self._guard.errors["database"] is None,
                "position": self._high,
                "pending_results": len(self._pending),
                "last_error": self._guard.errors["database"],
            },
            "redis": {
                "listening": self._redis is not None,
                "channel": self.channel,
                "last_error": self._guard.errors["redis"],
            },
            "workers": {"heartbeat": self._heartbeat.health(), "poll": self._poller.health()},
        }

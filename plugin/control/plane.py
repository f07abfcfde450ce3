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

Nothing here is on the request path: polls, heartbeats and acknowledgements run as background
tasks, every Redis call is bounded, and a database or Redis that is away is logged (throttled),
shown in ``status()``, and retried on the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.control import db_channel, redis_channel
from litellm_failover.control.commands import DEPLOYMENT_KINDS, STANDING, Command, CommandError, from_wire
from litellm_failover.control.dispatch import CommandResult, apply_command
from litellm_failover.events import FailoverEvent
from litellm_failover.fleet.messages import Envelope, OperatorCommand
from litellm_failover.store.engine import describe_error, redact
from litellm_failover.wakeups import RateLimit

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from litellm_failover.fleet.fleet import Fleet
    from litellm_failover.settings import FailoverSettings
    from litellm_failover.store.writer import StoreWriter

logger = logging.getLogger("litellm_failover.control")

SOURCE = "control"
"""The ``source`` the plugin's operations are called with for a command from the CLI."""
RESTORE_SOURCE = "control:restore"
"""... and for standing state taken over at start."""
OPERATOR_COMMAND_EVENT = "operator_command"

_SEEN_IDS = 10_000
_PENDING_RESULTS = 1_000  # results waiting for the database; the oldest are dropped beyond this
_RECENT = 20
_ACK_ATTEMPTS = 3
_WARN_INTERVAL_S = 30.0
_DATABASE_TIMEOUT_S = 10.0  # one poll, heartbeat or result write; the next round tries again
_BEATS_PER_TTL = 3  # a replica is "listening" until it has missed this many heartbeats


class ControlPlane:
    """``ControlPlane(plugin, settings, writer, fleet)``; ``await start()`` after the writer and
    the fleet have started (it reads its start position and the standing state from them), and
    ``await stop()`` before they stop.

    ``target`` is an ``OperatorTarget`` (the plugin). ``writer`` is the plugin's ``StoreWriter``
    (its engine once connected, and its event sink for the audit trail) or an ``AsyncEngine``;
    None: no database path. ``fleet``: the plugin's ``Fleet`` (its applier gets a
    ``command_listener``); None: no Redis path.
    """

    def __init__(
        self,
        target: Any,
        settings: FailoverSettings,
        writer: StoreWriter | AsyncEngine | None = None,
        fleet: Fleet | None = None,
        *,
        instance_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.settings = settings.control
        self.instance_id = instance_id or getattr(target, "instance_id", None) or settings.instance_id or ""
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
        self.channel = fleet.link.channel if fleet is not None else settings.fleet.channel
        self._redis: Redis | None = None
        self._redis_offset = 0.0  # Redis server clock minus ours
        self._running = False
        self._started_local = 0.0
        self._started_redis = 0.0
        self._floor: int | None = None  # commands with ids up to this were issued before our start
        self._high = 0
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._pending: deque[tuple[str, CommandResult]] = deque(maxlen=_PENDING_RESULTS)
        self._tasks: list[asyncio.Task[None]] = []
        self._early: list[Envelope] | None = []  # fleet commands held until the restore is done
        self._acks: set[asyncio.Task[None]] = set()
        self.outcomes: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=_RECENT)
        self.restored: list[dict[str, Any]] = []
        self.errors: dict[str, str | None] = {"database": None, "redis": None}  # the last, if failing
        self._warnings = {"database": RateLimit(_WARN_INTERVAL_S), "redis": RateLimit(_WARN_INTERVAL_S)}

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._running or not self.settings.enabled:
            return
        self._running = True
        self._started_local = self.clock()
        if self.fleet is not None:
            assert self._redis_url is not None
            self._redis = redis_channel.connect(
                self._redis_url,
                self._timeout,
                client_name=f"litellm-failover-control:{self.instance_id[:64]}",
            )
            moment = await self._on_redis(redis_channel.server_time(self._redis))
            if moment is not None:
                self._redis_offset = moment - self.clock()
            self.fleet.applier.command_listener = self._on_fleet_command  # type: ignore[attr-defined]
        self._started_redis = self._started_local + self._redis_offset
        engine = self._engine()
        if engine is not None:
            self._floor = await self._on_database(db_channel.start_position(engine))
            self._high = self._floor or 0
        if self.settings.restore_on_start:
            await self._restore()
        early, self._early = self._early, None
        for envelope in early or []:
            self._on_fleet_command(envelope)  # arrived while restoring: applied after it, in order
        await self._beat()  # listening from now on: a CLI run right after start waits for us
        beat = self._every(self.settings.heartbeat_interval_s, self._beat)
        self._tasks = [asyncio.create_task(beat, name="failover:control:heartbeat")]
        if self._writer is not None:
            poll = self._every(self.settings.poll_interval_s, self.poll)
            self._tasks.append(asyncio.create_task(poll, name="failover:control:poll"))

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
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._acks:
            await asyncio.wait(set(self._acks), timeout=self._timeout * _ACK_ATTEMPTS)
        engine = self._engine()
        if engine is not None:
            await self._on_database(self._flush_results(engine))
            await self._on_database(db_channel.leave(engine, self.instance_id))
        if self._redis is not None:
            await self._on_redis(redis_channel.leave(self._redis, self.channel, self.instance_id))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.aclose(), self._timeout)
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
        await self._on_database(self._poll(engine))

    async def _poll(self, engine: AsyncEngine) -> None:
        if self._floor is None:
            # The database was away at our start: what was issued before it is not ours to run.
            before = datetime.fromtimestamp(self._started_local, UTC)
            self._floor = await db_channel.start_position(engine, before=before)
            self._high = max(self._high, self._floor)
        rows = await db_channel.fetch_commands(engine, max(self._floor, self._high - db_channel.LOOKBACK))
        for row in rows:
            self._high = max(self._high, row.seq)
            if row.seq <= self._floor or row.command_id in self._seen:
                continue
            if row.command is None:
                self._remember(row.command_id)
                result = CommandResult(self.instance_id, "refused", row.error or "invalid command")
                self.outcomes[result.outcome] += 1
            else:
                result = self._handle(row.command, "database", self.clock())
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
                }
            )
        except CommandError as exc:
            if payload.command_id in self._seen:
                return False
            self._remember(payload.command_id)
            self.outcomes["refused"] += 1
            self._ack(
                payload.command_id, CommandResult(self.instance_id, "refused", f"invalid command: {exc}")
            )
            return False
        if payload.issued_at < self._started_redis:
            return False  # issued before this replica started (read back from its state key)
        result = self._handle(command, "redis", self.clock() + self._redis_offset)
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
            done = await self._on_redis(
                redis_channel.write_ack(
                    self._redis, self.channel, command_id, result, self.settings.command_ttl_s
                )
            )
            if done is not None or attempt + 1 == _ACK_ATTEMPTS:
                return
            await asyncio.sleep(self._timeout * (attempt + 1))

    # -- applying -------------------------------------------------------------------------

    def _handle(self, command: Command, via: str, now: float) -> CommandResult | None:
        """Apply a command once (None if it was seen already), unless it is too old."""
        if command.command_id in self._seen:
            return None
        self._remember(command.command_id)
        age = now - command.issued_at.timestamp()
        if age > self.settings.command_ttl_s:
            result = CommandResult(
                self.instance_id,
                "expired",
                f"expired: issued {age:.0f}s ago, over control.command_ttl_s="
                f"{self.settings.command_ttl_s:g}; not applied",
            )
        else:
            result = apply_command(self.target, command, instance_id=self.instance_id, source=SOURCE)
        self.outcomes[result.outcome] += 1
        self.recent.append(
            {
                "command_id": command.command_id,
                "command": command.describe(),
                "issued_by": command.issued_by,
                "via": via,
                "outcome": result.outcome,
                "message": result.message,
                "at": result.applied_at.isoformat(),
            }
        )
        self._audit(command, result, via)
        log = logger.info if result.ok else logger.warning
        log(
            "control: %s by %s (via %s): %s: %s",
            command.describe(),
            command.issued_by,
            via,
            result.outcome,
            result.message,
        )
        return result

    def _audit(self, command: Command, result: CommandResult, via: str, *, restored: bool = False) -> None:
        """One ``operator_command`` event per replica and command: who asked for what, and what
        this replica did (the plugin's own drain/failover events say how it went)."""
        submit = getattr(self._writer, "submit_event", None)
        if submit is None:
            return
        group = command.target
        if command.kind in DEPLOYMENT_KINDS:
            group = str(result.details.get("group") or result.details.get("model_group") or "")
        prefix = "restored at start: " if restored else ""
        submit(
            FailoverEvent(
                event_type=OPERATOR_COMMAND_EVENT,
                model_group=group,
                deployment_id=(command.target or None) if command.kind in DEPLOYMENT_KINDS else None,
                reason=f"{prefix}{command.describe()} by {command.issued_by or 'unknown'}: "
                f"{result.outcome}: {result.message}",
                instance_id=self.instance_id,
                details={
                    "command_id": command.command_id,
                    "kind": command.kind,
                    "target": command.target,
                    "args": command.args,
                    "issued_by": command.issued_by,
                    "issued_at": command.issued_at.isoformat(),
                    "via": via,
                    "outcome": result.outcome,
                    "restored": restored,
                },
            )
        )

    async def _restore(self) -> None:
        """Take over the standing drains and planned failovers (see the module docstring)."""
        latest: dict[tuple[str, str], tuple[Command, str]] = {}
        sources: list[tuple[str, list[Command] | None]] = []
        engine = self._engine()
        if engine is not None:
            sources.append(("database", await self._on_database(db_channel.standing_commands(engine))))
        if self._redis is not None:
            sources.append(
                ("redis", await self._on_redis(redis_channel.standing_commands(self._redis, self.channel)))
            )
        for via, commands in sources:
            for command in commands or []:
                key = (STANDING[command.kind], command.target)
                known = latest.get(key)
                if known is None or command.issued_at > known[0].issued_at:
                    latest[key] = (command, via)
        for command, via in sorted(latest.values(), key=lambda item: item[0].issued_at):
            self._remember(command.command_id)
            if command.kind not in ("drain", "failover"):
                continue  # the latest word was undrain/failback: nothing stands
            result = apply_command(self.target, command, instance_id=self.instance_id, source=RESTORE_SOURCE)
            self.restored.append(
                {"command": command.describe(), "command_id": command.command_id, "via": via}
                | {"outcome": result.outcome, "message": result.message}
            )
            self._audit(command, result, via, restored=True)
            if result.ok:
                logger.info("control: restored %s (issued by %s)", command.describe(), command.issued_by)
            else:
                logger.warning("control: could not restore %s: %s", command.describe(), result.message)

    # -- background -----------------------------------------------------------------------

    async def _every(self, interval_s: float, action: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while self._running:  # ``stop`` also cancels: this ends a round whose cancel was lost
            await asyncio.sleep(interval_s)
            try:
                await action()
            except Exception:  # a bug must not end the loop: log it and go on
                logger.exception("control: background round failed")

    async def _beat(self) -> None:
        ttl = self.settings.heartbeat_interval_s * _BEATS_PER_TTL
        engine = self._engine()
        if engine is not None:
            now = datetime.fromtimestamp(self.clock(), UTC)
            started = datetime.fromtimestamp(self._started_local, UTC)
            await self._on_database(db_channel.heartbeat(engine, self.instance_id, started, now, ttl))
        if self._redis is not None:
            await self._on_redis(
                redis_channel.beat(self._redis, self.channel, self.instance_id, self._started_redis, ttl)
            )

    def _engine(self) -> AsyncEngine | None:
        if isinstance(self._writer, AsyncEngine):
            return self._writer
        return getattr(self._writer, "engine", None)  # None until the writer has connected

    async def _on_database(self, work: Coroutine[Any, Any, Any]) -> Any:
        return await self._guarded("database", work, _DATABASE_TIMEOUT_S)

    async def _on_redis(self, work: Coroutine[Any, Any, Any]) -> Any:
        return await self._guarded("redis", work, self._timeout)

    async def _guarded(self, what: str, work: Coroutine[Any, Any, Any], limit_s: float) -> Any:
        """Run one database or Redis call, bounded; on failure note it (credential-free), warn
        (throttled) and return None, so the caller tries again next round. None results come
        back as True, so None always means "failed"."""
        try:
            # Not ``wait_for``: on Python 3.11 it can swallow a cancellation that arrives just as
            # the call completes, and ``stop`` would then wait forever for a loop that went on.
            async with asyncio.timeout(limit_s):
                result = await work
        except Exception as exc:
            if what == "database":
                error = describe_error(exc)
            else:
                text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                error = redact(text[:300], self._redis_url)
            self.errors[what] = error
            if (held := self._warnings[what].due()) is not None:
                more = f" ({held} similar errors not logged)" if held else ""
                logger.warning("control: %s unavailable (%s); retrying%s", what, error, more)
            return None
        self.errors[what] = None
        return result if result is not None else True

    def _remember(self, command_id: str) -> None:
        self._seen[command_id] = None
        if len(self._seen) > _SEEN_IDS:
            self._seen.popitem(last=False)

    # -- inspection -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        transports = (["redis"] if self.fleet is not None else []) + (
            ["database"] if self._writer is not None else []
        )
        return {
            "enabled": self.settings.enabled,
            "running": self._running,
            "instance_id": self.instance_id,
            "transports": transports,
            "applied": self.outcomes["applied"],
            "refused": self.outcomes["refused"],
            "expired": self.outcomes["expired"],
            "errors": self.outcomes["error"],
            "recent": list(self.recent),
            "restored": list(self.restored),
            "database": {
                "listening": self._writer is not None,
                "connected": self._engine() is not None and self.errors["database"] is None,
                "position": self._high,
                "pending_results": len(self._pending),
                "last_error": self.errors["database"],
            },
            "redis": {
                "listening": self._redis is not None,
                "channel": self.channel,
                "last_error": self.errors["redis"],
            },
        }

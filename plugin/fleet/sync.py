"""One replica's Redis link: a bounded publish queue out, messages in, reconnects and resyncs.

Why this shape:

- The hot path must never wait for Redis. ``enqueue`` is synchronous and O(1); one background
  task sends what is queued (a ``SET key value PX ttl`` and a ``PUBLISH`` per message, pipelined).
  The queue is bounded: when Redis is away for long, the oldest messages are dropped (and
  counted), because the newest say most about the deployments now.
- Pub/sub alone loses what was said while a replica was away, so every message is also written
  as a state key with a TTL. On every (re)connect the link subscribes first and then reads the
  keys, so nothing said in between is missed; a message seen twice is the receiver's to discard.
- Every Redis call is bounded by ``operation_timeout_s``; the link owns its reconnect loop (with
  exponential backoff and jitter up to ``reconnect_max_s``, the plugin's one worker shape in
  ``litellm_failover.worker``) instead of redis-py's silent retries, so the replica's status can
  say when it is cut off.
- The URL may carry a password: only its redacted form reaches logs and status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from litellm_failover.events import utcnow
from litellm_failover.settings import FailoverConfigError, FleetSettings
from litellm_failover.store.engine import redact, redact_url
from litellm_failover.wakeups import RateLimit
from litellm_failover.worker import Backoff, Worker

logger = logging.getLogger("litellm_failover.fleet")

MAX_QUEUE = 10_000  # messages held while Redis is away; older ones are dropped beyond this
BATCH = 200  # messages per pipeline round trip
MAX_RESYNC_KEYS = 200_000  # state keys read on a (re)connect; the rest is left to their TTL
_SCAN_COUNT = 500
_RECEIVE_POLL_S = 1.0
_PING_INTERVAL_S = 2.0  # an idle link checks Redis this often, so a silent loss shows in status
_HEALTH_CHECK_S = 5  # redis-py pings the subscribed connection when it has been idle this long
_FIRST_BACKOFF_S = 0.1
_ERROR_LOG_INTERVAL_S = 60.0

Receiver = Callable[[bytes | str, str], None]  # (raw message, "pubsub" | "keys")


def _glob_escape(text: str) -> str:
    """A literal for a Redis MATCH pattern (a channel name may contain * ? [ ])."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


async def clear_state(url: str, channel: str, timeout: float = 5.0) -> int:  # noqa: ASYNC109
    """Delete a fleet's state keys (``<channel>:state:*``); the number deleted. For tests, benches
    and an operator starting a fleet afresh; replicas hold what they already applied."""
    client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        pattern = _glob_escape(f"{channel}:state:") + "*"
        keys = [key async for key in client.scan_iter(match=pattern, count=_SCAN_COUNT)]
        return int(await client.delete(*keys)) if keys else 0
    finally:
        await client.aclose()


class RedisLink:
    """Use ``await start()`` / ``await stop()`` on the event loop that will call ``enqueue``."""

    def __init__(
        self, url: str, settings: FleetSettings, receive: Receiver, *, client_name: str = ""
    ) -> None:
        self.safe_url = redact_url(url)
        try:
            parse_url(url)  # a malformed URL is a configuration error: refuse now, not in a task
        except (ValueError, TypeError) as exc:
            message = redact(str(exc), url)
            raise FailoverConfigError(
                f"invalid configuration: failover_settings.redis_url: {message} (got {self.safe_url!r})"
            ) from None
        self._url = url
        self.settings = settings
        if not settings.channel:
            raise ValueError("RedisLink needs a resolved fleet channel (litellm_failover.fleet.naming)")
        self.channel = settings.channel
        self.key_prefix = f"{settings.channel}:state:"
        self._receive = receive
        self._client_name = client_name
        self._queue: deque[tuple[str | None, str]] = deque(maxlen=MAX_QUEUE)
        self._worker = Worker(
            "failover:fleet", logger, Backoff(first_s=_FIRST_BACKOFF_S, max_s=settings.reconnect_max_s)
        )
        self._connected_event: asyncio.Event | None = None
        self.connected = False
        self.published = 0
        self.dropped = 0
        self.connects = 0
        self.resyncs = 0
        self.resync_keys = 0
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self._error_log = RateLimit(_ERROR_LOG_INTERVAL_S)

    def key(self, subject: str | None) -> str | None:
        return None if subject is None else self.key_prefix + subject

    # -- hot path -------------------------------------------------------------------------

    def enqueue(self, key: str | None, value: str) -> bool:
        """Queue one message (and its state key, if any). Never blocks, never raises; False when
        the queue was full and the oldest message was dropped to make room."""
        full = len(self._queue) == self._queue.maxlen
        if full:
            self.dropped += 1
        self._queue.append((key, value))
        # From any thread (LiteLLM may run a logging hook in a worker thread); before start,
        # nothing to wake: start() wakes the publisher if anything is queued.
        self._worker.wake()
        return not full

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the link and wait (bounded) for its first connection attempt, so a replica that
        starts with Redis up has read the fleet's state before it serves; with Redis down it
        goes on at once on local state."""
        if self._worker.started:
            return
        self._connected_event = asyncio.Event()
        self._worker.start(self._run)
        if self._queue:
            self._worker.wake()
        await self._worker.wait_attempted(self.settings.operation_timeout_s * 4)

    async def stop(self) -> None:
        """Send what is queued (bounded by the operation timeout), then close; it may start again."""
        if not self._worker.started:
            return
        # Cancelled after the grace, the task still closes its connections, each bounded.
        limit = self.settings.operation_timeout_s * 2
        try:
            await self._worker.stop(grace_s=limit, cancel_wait_s=limit)
        finally:
            self.connected = False

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109 (a bounded wait is the point)
        if self._connected_event is None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._connected_event.wait()
        return self.connected

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "url": self.safe_url,
            "channel": self.channel,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
            "published": self.published,
            "queued": len(self._queue),
            "dropped": self.dropped,
            "connects": self.connects,
            "resyncs": self.resyncs,
            "resync_keys": self.resync_keys,
            "worker": self._worker.health(),
        }

    # -- the connection loop ----------------------------------------------------------------

    async def _run(self) -> None:
        worker = self._worker
        while not worker.stopping:
            client = self._client()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await self._open(client, pubsub)
                await self._serve(client, pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # RedisError, OSError, TimeoutError, or a bug: stay alive
                self._failed(exc)
            finally:
                self._set_connected(False)
                worker.attempted()
                await self._close(client, pubsub)
            if worker.stopping:
                return
            await worker.retry_pause()  # after failures since the last connection; stop() ends it

    def _client(self) -> Redis:
        timeout = self.settings.operation_timeout_s
        return Redis.from_url(
            self._url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # this loop reconnects, visibly; no hidden retries
            health_check_interval=_HEALTH_CHECK_S,
            client_name=self._client_name or None,
        )

    async def _call(self, awaitable: Any) -> Any:
        async with asyncio.timeout(self.settings.operation_timeout_s):
            return await awaitable

    async def _open(self, client: Redis, pubsub: PubSub) -> None:
        await self._call(client.ping())
        # Subscribe before reading the keys: whatever is published meanwhile waits on the
        # subscription and is read after them, so nothing falls between the two.
        await self._call(pubsub.subscribe(self.channel))
        await self._resync(client)
        self.connects += 1
        if self.connects > 1 or self.last_error is not None:
            logger.info("fleet: connected to Redis %s again; state resynchronised", self.safe_url)
        self._error_log.reset()
        self._worker.succeeded()
        self._set_connected(True)
        self._worker.attempted()

    async def _resync(self, client: Redis) -> None:
        pattern = _glob_escape(self.key_prefix) + "*"
        keys: list[bytes] = []
        cursor = 0
        while True:
            cursor, found = await self._call(client.scan(cursor=cursor, match=pattern, count=_SCAN_COUNT))
            keys.extend(found)
            if cursor == 0 or len(keys) >= MAX_RESYNC_KEYS:
                break
        read = 0
        for start in range(0, min(len(keys), MAX_RESYNC_KEYS), _SCAN_COUNT):
            values = await self._call(client.mget(keys[start : start + _SCAN_COUNT]))
            for value in values:
                if value is not None:  # expired between SCAN and MGET
                    read += 1
                    self._deliver(value, "keys")
        self.resyncs += 1
        self.resync_keys = read

    async def _serve(self, client: Redis, pubsub: PubSub) -> None:
        """Receive and publish until one of them fails (or the link stops)."""
        tasks = [
            asyncio.create_task(self._receive_loop(pubsub), name="failover:fleet:receive"),
            asyncio.create_task(self._publish_loop(client), name="failover:fleet:publish"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise the failure that ended the session
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _receive_loop(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_RECEIVE_POLL_S)
            if message is not None and message.get("type") == "message":
                self._deliver(message["data"], "pubsub")

    async def _publish_loop(self, client: Redis) -> None:
        worker = self._worker
        assert worker.wakeup is not None
        ttl_ms = max(1, int(self.settings.key_ttl_s * 1000))
        last_contact = time.monotonic()
        while True:
            if not self._queue:
                if worker.stopping:
                    return
                worker.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_PING_INTERVAL_S):
                        await worker.wakeup.wait()
                if not self._queue:
                    if time.monotonic() - last_contact >= _PING_INTERVAL_S and not worker.stopping:
                        await self._call(client.ping())
                        last_contact = time.monotonic()
                    continue
            batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            pipe = client.pipeline(transaction=False)
            for key, value in batch:
                if key is not None:
                    pipe.set(key, value, px=ttl_ms)
                pipe.publish(self.channel, value)
            try:
                await self._call(pipe.execute())
            except BaseException:
                # Not sent (or not known to be): keep them for the next connection. A message
                # that did get through before the failure arrives twice, which receivers discard.
                assert self._queue.maxlen is not None
                self.dropped += max(0, len(self._queue) + len(batch) - self._queue.maxlen)
                self._queue.extendleft(reversed(batch))  # a full queue loses its newest here
                raise
            self.published += len(batch)
            last_contact = time.monotonic()

    # -- helpers --------------------------------------------------------------------------

    def _deliver(self, raw: bytes | str, source: str) -> None:
        try:
            self._receive(raw, source)
        except Exception:  # the receiver must not end the link; it is also guarded there
            logger.exception("fleet: handling a message failed")

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        if self._connected_event is not None:
            if connected:
                self._connected_event.set()
            else:
                self._connected_event.clear()

    def _failed(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, TimeoutError):
            text = f"no answer within {self.settings.operation_timeout_s:g}s (TimeoutError)"
        self.last_error = redact(text[:300], self._url)
        self.last_error_at = utcnow()
        self._worker.failed(exc)
        if not isinstance(exc, (RedisError, OSError, TimeoutError)):
            logger.exception("fleet: unexpected error on the Redis link", exc_info=exc)
        elif (held := self._error_log.due()) is not None:
            logger.warning(
                "fleet: Redis %s unreachable (%s); routing on local state, retrying%s",
                self.safe_url,
                self.last_error,
                f" ({held} similar errors not logged)" if held else "",
            )

    async def _close(self, client: Redis, pubsub: PubSub) -> None:
        timeout = self.settings.operation_timeout_s
        for closing in (pubsub.aclose(), client.aclose()):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await closing

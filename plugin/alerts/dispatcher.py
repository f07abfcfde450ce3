"""``Alerter``: events in on the hot path, notifications out in the background.

The core calls ``on_event`` for every event it emits, on the request path. That call only
filters, applies the dedup/rate-limit policy and appends to a bounded queue: synchronous, O(1),
no I/O, never raising. One background task hands each queued alert to every destination
(apprise URLs and JSON webhooks; ``alerts.sender``: each destination retried on its own with
exponential backoff); an alert a destination never took is recorded as an ``alert_failed`` event
through ``emit``. The task's start, stop and backoff are the plugin's one worker shape
(``litellm_failover.worker``).

Why this shape: a notification service that is slow or down must never delay routing, and a
flood of events must never grow memory without bound; what is lost is counted (``stats()``)
and logged, at most once per interval. Like the store writer, ``stop()`` flushes what it can
within a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import aiohttp

from litellm_failover.alerts.delivery import AppriseTarget, Target, WebhookTarget, build_targets
from litellm_failover.alerts.message import AlertMessage, build_message
from litellm_failover.alerts.policy import ALERT_FAILED, Admission, AlertPolicy
from litellm_failover.alerts.sender import Sender, SendResult
from litellm_failover.events import FailoverEvent
from litellm_failover.wakeups import RateLimit
from litellm_failover.worker import Backoff, Worker

if TYPE_CHECKING:
    from litellm_failover.settings import AlertSettings

logger = logging.getLogger("litellm_failover.alerts")

APPRISE_THREADS = 4  # apprise's blocking sends run here, never in the loop's default executor
_CANCEL_WAIT_S = 1.0  # after stop()'s deadline, for the cancelled deliveries to unwind
_DROP_LOG_INTERVAL_S = 10.0
_ERROR_LOG_INTERVAL_S = 60.0


class Alerter:
    """Deduplicated, rate-limited, retried notifications of the core's events.

    Wire it with ``core.listeners.append(alerter.on_event)`` and run it inside
    ``await start()`` / ``await stop()``. ``on_event`` may be called before ``start`` (alerts
    wait) and from other threads; the asyncio methods belong to the loop that called ``start``.
    With no destination configured it does nothing at all.
    """

    def __init__(
        self,
        settings: AlertSettings,
        *,
        instance_id: str,
        emit: Callable[[FailoverEvent], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._instance_id = instance_id
        self._emit = emit
        self._clock = clock
        self._targets: list[Target] = build_targets(settings)
        self._policy = AlertPolicy(settings, clock)
        self._lock = threading.Lock()  # held for O(1) bookkeeping only, never across I/O
        self._queue: deque[Admission] = deque()
        self._outstanding = 0  # admitted and not finished: queued, sending or waiting to retry
        self._admitted = 0
        self._dropped = 0

        self._worker = Worker(
            "litellm-failover-alerts",
            logger,
            Backoff(first_s=settings.retry_backoff_s, max_s=settings.retry_backoff_max_s),
        )
        self._sender = Sender(settings, self._worker)
        self._session: aiohttp.ClientSession | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._progress: asyncio.Condition | None = None
        self._stopped = False
        self._drop_log = RateLimit(_DROP_LOG_INTERVAL_S)
        self._bug_log = RateLimit(_ERROR_LOG_INTERVAL_S)

    @property
    def enabled(self) -> bool:
        return bool(self._targets)

    # ------------------------------------------------------------------ hot path

    def on_event(self, event: FailoverEvent) -> None:
        """The core's listener: admit ``event`` as an alert or not. Never blocks, never raises."""
        try:
            if not self._targets or event.event_type == ALERT_FAILED:
                return  # an alert about a failed alert could fail too: no loops
            if not self._policy.wants(event.event_type):
                return
            with self._lock:
                if self._stopped or self._outstanding >= self._settings.max_queue:
                    self._dropped += 1
                    admission = None
                    dropped = True
                else:
                    dropped = False
                    admission = self._policy.admit(event)
                    if admission is not None:
                        self._queue.append(admission)
                        self._outstanding += 1
                        self._admitted += 1
            if dropped:
                self._log_drop(event)
            elif admission is not None:
                self._worker.wake()
        except Exception:  # a bug here must not reach the request path
            if self._bug_log.allow():
                logger.exception("alerting: handling a %s event failed", getattr(event, "event_type", "?"))

    def _log_drop(self, event: FailoverEvent) -> None:
        if not self._drop_log.allow():
            return
        held, self._drop_log.suppressed = self._drop_log.suppressed, 0
        why = "the alerter is stopped" if self._stopped else f"{self._outstanding} alerts already waiting"
        logger.warning(
            "alerting: dropped a %s alert for group %s (%s); %d dropped so far%s",
            event.event_type,
            event.model_group,
            why,
            self._dropped,
            f" ({held} since the last warning)" if held else "",
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._worker.started or not self._targets:
            return
        if self._stopped:
            raise RuntimeError("Alerter cannot be restarted after stop(); create a new one")
        self._progress = asyncio.Condition()
        self._sender.start()
        webhooks = [t for t in self._targets if isinstance(t, WebhookTarget)]
        if webhooks:
            self._session = aiohttp.ClientSession()
            for target in webhooks:
                target.session = self._session
        notifiers = [t for t in self._targets if isinstance(t, AppriseTarget)]
        if notifiers:
            self._executor = ThreadPoolExecutor(
                APPRISE_THREADS, thread_name_prefix="litellm-failover-apprise"
            )
            for target in notifiers:
                target.executor = self._executor
        self._worker.start(
            self._run,
            crash_message=lambda: f"alerting stopped unexpectedly; {self._outstanding} alert(s) undelivered",
        )
        self._worker.wake()  # alerts admitted before start

    async def flush(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109 (public API)
        """Wait until nothing is queued or in delivery (retries included); False on timeout."""
        if self._outstanding == 0:
            return True
        if self._progress is None or not self._worker.running:
            return False
        progress = self._progress

        async def idle() -> None:
            async with progress:
                await progress.wait_for(lambda: self._outstanding == 0)

        try:
            async with asyncio.timeout(timeout):
                await idle()
        except TimeoutError:
            return self._outstanding == 0
        return True

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (public API)
        """Deliver what is queued (retries come fast now) until ``timeout``; then give up on the
        rest, counted as dropped and logged. New events are refused from the first moment."""
        if self._stopped:
            return
        with self._lock:
            self._stopped = True
        await self._worker.finish(timeout)
        left = self._outstanding
        await self._worker.cancel(_CANCEL_WAIT_S)  # what did not finish in time: the deliveries too
        if left:
            with self._lock:
                self._dropped += left
            logger.warning(
                "alerting stopped with %d alert(s) undelivered (last error: %s)",
                left,
                self._sender.last_error or "not sent in time",
            )
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self._executor is not None:
            # Never wait here for a hanging service: its thread ends at apprise's socket timeout.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def __aenter__(self) -> Alerter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def stats(self) -> dict[str, Any]:
        """Counters for status pages and metrics. Destinations appear as key path and scheme
        (webhooks: scheme and host), never with a token; ``sent``/``failed`` count deliveries
        (one alert to one destination), ``admitted`` counts alerts."""
        last_error_at = self._sender.last_error_at
        return {
            "enabled": bool(self._targets),
            "running": self._worker.running,
            "targets": [t.name for t in self._targets],
            "admitted": self._admitted,
            "sent": self._sender.sent,
            "failed": self._sender.failed,
            "retries": self._sender.retries,
            "suppressed_dedup": self._policy.suppressed_dedup,
            "suppressed_rate": self._policy.suppressed_rate,
            "dropped": self._dropped,
            "queued": self._outstanding,
            "last_error": self._sender.last_error,
            "last_error_at": last_error_at.isoformat() if last_error_at else None,
            "worker": self._worker.health(),
        }

    # ------------------------------------------------------------------ background task

    async def _run(self) -> None:
        worker = self._worker
        assert worker.wakeup is not None
        while True:
            worker.wakeup.clear()
            with self._lock:
                ready = list(self._queue)
                self._queue.clear()
                if not worker.stopping:
                    # Rate-limited alerts whose group's window has room again, as digests.
                    digests = self._policy.take_digests()
                    ready += digests
                    self._outstanding += len(digests)
                    self._admitted += len(digests)
                due = self._policy.next_digest_at()
            for admission in ready:
                task = worker.spawn(self._deliver(admission), name="litellm-failover-alert")
                task.add_done_callback(lambda _: worker.wake())
            if worker.stopping and not worker.children and not self._queue:
                return
            wait = None if due is None or worker.stopping else max(due - self._clock(), 0.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await worker.wakeup.wait()

    async def _deliver(self, admission: Admission) -> None:
        try:
            message = build_message(admission, self._instance_id)
            results = await asyncio.gather(*(self._send(t, message, admission) for t in self._targets))
            if not any(results):
                with self._lock:
                    self._policy.forget(admission.key)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("alerting: delivering a %s alert failed", admission.event.event_type)
        finally:
            with self._lock:
                self._outstanding -= 1
            if self._progress is not None:
                async with self._progress:
                    self._progress.notify_all()

    async def _send(self, target: Target, message: AlertMessage, admission: Admission) -> bool:
        """True if ``target`` took the alert; else an ``alert_failed`` event says so at once."""
        result = await self._sender.send(target, message)
        if not result.delivered:
            self._give_up(target, admission, result)
        return result.delivered

    def _give_up(self, target: Target, admission: Admission, result: SendResult) -> None:
        attempts, error = result.attempts, result.error
        event = admission.event
        reason = (
            f"{event.event_type} alert for group {event.model_group} not delivered to {target.name} "
            f"after {attempts} attempt(s): {error}"
        )
        logger.warning("alerting: %s", reason)
        try:
            self._emit(
                FailoverEvent(
                    event_type=ALERT_FAILED,
                    model_group=event.model_group,
                    deployment_id=event.deployment_id,
                    reason=reason,
                    instance_id=self._instance_id,
                    details={
                        "alert_type": event.event_type,
                        "alert_event_id": event.event_id,
                        "target": target.name,
                        "target_kind": target.kind,
                        "attempts": attempts,
                        "error": error,
                    },
                )
            )
        except Exception:
            logger.exception("alerting: recording an alert_failed event failed")

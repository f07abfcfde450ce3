"""Answer elsewhere, at once, the requests waiting on a deployment the plugin gave up on.

Two triggers, one action (``interrupt``: the attempt fails with a timeout, LiteLLM's failure hook
reports it, so the request path excludes the deployment for that request, and LiteLLM retries
it on another deployment within its own retry and fallback accounting):

- ``on_event`` (a ``FailoverCore`` listener): a deployment was ejected because it stopped
  answering (failed probes, another replica's ejection, or traffic: refused or reset
  connections, timeouts, cut streams). Every attempt on it that has delivered nothing is
  rescued. A 5xx streak does not trigger it: such a node answers, and fast.
- ``first_token_due`` (a timer per stream attempt, ``FirstTokenClock``): no first token within
  the limit. The timeout counts toward outlier detection like any timeout, so a node that stalls
  every prefill is ejected, which rescues the rest.

Amplification guard: the original attempt is failed, not copied (its connection closes and the
engine frees the request), at most ``max_per_ejection`` attempts per ejection (the rest wait out
their own timeout, as without the plugin), and at most ``max_per_s`` rescues a second (a token
bucket holding one second's worth): beyond it rescues queue, in order, and go as the rate allows,
so a burst of retries reaches the other deployments spread out rather than all at once. Every rescue is a
``request_rescued`` event (and a counter); ``stats`` goes into ``status``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.rescue.attempts import Attempt, AttemptRegistry
from litellm_failover.rescue.interrupt import AttemptInterrupted, capture, interrupt, rescuable
from litellm_failover.routing_table import RoutingTable
from litellm_failover.settings import RescueSettings
from litellm_failover.streams.first_token import FirstTokenClock

logger = logging.getLogger("litellm_failover")

EJECTED = "ejected"
FIRST_TOKEN = "first_token_timeout"
CAUSES = (EJECTED, FIRST_TOKEN)

_MAX_QUEUED = 10_000  # rescues waiting for the rate to allow them; beyond, held back
_BUSY_RETRY_S = 0.01  # an attempt not interruptible this instant is tried again after this
_BUSY_FOR_S = 2.0  # and given up (counted as missed) after this
_UNSEEN = object()  # ``_interrupt``: no waiter of the attempt's seen yet
_ROUTABLE = frozenset({"healthy", "degraded"})
_STOPPED_ANSWERING = frozenset({"connect_error", "timeout", "stream_cut"})  # traffic outcomes


class FirstTokenTimeout(AttemptInterrupted):
    """No first token within the stream's first-token timeout."""


class DeploymentEjected(AttemptInterrupted):
    """The attempt's deployment was ejected for not answering."""


def stopped_answering(event: FailoverEvent) -> bool:
    """A ``state_change`` into ``unhealthy`` whose cause is a node that does not answer."""
    details = event.details
    if event.event_type != EventType.STATE_CHANGE.value or details.get("to_state") != "unhealthy":
        return False
    if details.get("from_state") not in _ROUTABLE:
        return False  # recovering: nothing was sent to it but probes and ramp traffic
    source = details.get("source")
    if source in ("probe", "fleet"):
        return True
    return source == "traffic" and details.get("outcome") in _STOPPED_ANSWERING


class Rescuer:
    def __init__(
        self,
        settings: RescueSettings,
        first_token: FirstTokenClock,
        *,
        emit: Callable[[FailoverEvent], None],
        instance_id: str,
        clock: Callable[[], float],
        tables: Callable[[str], RoutingTable | None] = lambda group: None,
        excluded: Callable[[str], frozenset[str]] = lambda request_id: frozenset(),
        max_attempts: int = 100_000,
    ) -> None:
        self.settings = settings
        self._tables = tables  # the group's current routing table
        self._excluded = excluded  # the deployments that failed a request already
        self.first_token = first_token
        self.attempts = AttemptRegistry(max_attempts=max_attempts, clock=clock)
        self._emit = emit
        self._instance_id = instance_id
        self._clock = clock
        self._tokens = settings.max_per_s
        self._refilled_at = clock()
        self.rescued: Counter[str] = Counter()
        self.held_back: Counter[str] = Counter()  # not rescued, by why (see ``stats``)
        self.delayed = 0  # rescued later than asked, to keep to ``max_per_s``
        self._queue: deque[tuple[Attempt, str, AttemptInterrupted, dict[str, Any]]] = deque()
        self._queue_timer: asyncio.TimerHandle | None = None
        self.missed = 0  # interrupt found the attempt past its first byte (or unreachable)
        self.untracked = 0  # picks whose attempt could not be captured (another LiteLLM layout)

    # -- the request path's side ---------------------------------------------------------

    def started(self, request_id: str, deployment_id: str, group: str, stream: bool) -> None:
        """Routing picked ``deployment_id`` for an attempt; runs inside the attempt's task."""
        if not self.settings.enabled:
            return
        handle = capture(deployment_id)
        if handle is None:
            self.untracked += 1
            return
        attempt = Attempt(request_id, deployment_id, group, stream, handle, self._clock())
        if stream:
            limit = self.first_token.limit(group)
            loop = handle.task.get_loop()  # the running loop, without asking for it (a system call)
            attempt.timer = loop.call_later(limit, self.first_token_due, attempt, limit)
        self.attempts.add(attempt)

    def ended(self, request_keys: tuple[str, ...], deployment_id: str, first_token_s: float | None) -> None:
        """The attempt's end signal; for a stream that succeeded, its time to first token."""
        attempt = self.attempts.end(request_keys, deployment_id)
        if attempt is not None and attempt.stream and first_token_s is not None:
            self.first_token.observe(attempt.group, first_token_s)

    # -- triggers -------------------------------------------------------------------------

    def on_event(self, event: FailoverEvent) -> None:
        """``FailoverCore`` listener. Runs the rescue on the next loop turn: not inside the
        core's transition, whose table swap comes after its events."""
        if not self.settings.enabled or event.deployment_id is None or not stopped_answering(event):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop, no attempts in flight
        loop.call_soon(self.rescue_deployment, event.deployment_id, event.reason)

    def rescue_deployment(self, deployment_id: str, reason: str) -> int:
        """Fail the attempts on ``deployment_id`` that have delivered nothing; returns how many."""
        done = 0
        for attempt in self.attempts.on(deployment_id):
            if not rescuable(attempt.handle):
                self.attempts.discard(attempt)  # a stream past its first byte: the resumer's
                continue
            if done >= self.settings.max_per_ejection:
                self.held_back["per_ejection"] += 1
                continue
            error = DeploymentEjected(f"deployment {deployment_id} was ejected; attempt retried elsewhere")
            if self._rescue(attempt, EJECTED, error, reason=reason):
                done += 1
        return done

    def first_token_due(self, attempt: Attempt, limit_s: float) -> None:
        attempt.timer = None
        if self.attempts.get(attempt.request_id, attempt.deployment_id) is not attempt:
            return  # ended already
        if not rescuable(attempt.handle):
            self.attempts.discard(attempt)  # its first token came: the stream is the client's
            return
        error = FirstTokenTimeout(f"no first token from {attempt.deployment_id} within {limit_s:g}s")
        self._rescue(attempt, FIRST_TOKEN, error, limit_s=round(limit_s, 3))

    # -- the action -----------------------------------------------------------------------

    def _rescue(self, attempt: Attempt, cause: str, error: AttemptInterrupted, **details: Any) -> bool:
        """Rescue now, or, past the per-second rate, as soon as the rate allows (in order)."""
        if not self._alternative(attempt):
            # Failing it would turn a slow answer into an error: nowhere else to retry it.
            self.held_back["no_alternative"] += 1
            return False
        if self._queue or not self._take_token():
            if len(self._queue) >= _MAX_QUEUED:
                self.held_back["queue_full"] += 1
                return False
            self.delayed += 1
            self._queue.append((attempt, cause, error, details))
            self._arm_queue()
            return True
        self._start(attempt, cause, error, details)
        return True

    def _alternative(self, attempt: Attempt) -> bool:
        """Whether the group's current table has a deployment this request could be retried on."""
        table = self._tables(attempt.group)
        if table is None:
            return False
        excluded = self._excluded(attempt.request_id) | {attempt.deployment_id}
        return any(deployment not in excluded for deployment in table.weights)

    def _start(
        self, attempt: Attempt, cause: str, error: AttemptInterrupted, details: dict[str, Any]
    ) -> None:
        self.attempts.discard(attempt)
        self._interrupt(attempt, cause, error, details, self._clock() + _BUSY_FOR_S)

    def _arm_queue(self) -> None:
        if self._queue_timer is not None or not self._queue:
            return
        wait = max(0.0, (1 - self._tokens) / self.settings.max_per_s)
        self._queue_timer = asyncio.get_running_loop().call_later(wait, self._drain_queue)

    def _drain_queue(self) -> None:
        self._queue_timer = None
        while self._queue:
            attempt, cause, error, details = self._queue[0]
            if self.attempts.get(attempt.request_id, attempt.deployment_id) is not attempt:
                self._queue.popleft()  # it ended while it waited for its turn
                continue
            if not self._take_token():
                break
            self._queue.popleft()
            self._start(attempt, cause, error, details)
        self._arm_queue()

    def _interrupt(
        self,
        attempt: Attempt,
        cause: str,
        error: AttemptInterrupted,
        details: dict[str, Any],
        until: float,
        seen: object = _UNSEEN,
    ) -> None:
        waiter = getattr(attempt.handle.task, "_fut_waiter", None)
        if waiter is not seen and self._clock() < until:
            # Fail only a future the attempt already waited on a loop turn ago. The step that
            # made it wait may have scheduled its result (asyncio's transport wakes a new
            # connection's waiter with ``call_soon``); that runs before this next turn, and
            # ``interrupt`` then finds the future done. Failing it first made asyncio log an
            # ``InvalidStateError`` when the scheduled result came.
            asyncio.get_running_loop().call_soon(
                self._interrupt, attempt, cause, error, details, until, waiter
            )
            return
        done = interrupt(attempt.handle, error)
        if done is None and self._clock() < until:
            # Not safely interruptible this instant (e.g. LiteLLM building the call in a thread):
            # the attempt has sent nothing yet; try again on a later loop turn.
            asyncio.get_running_loop().call_later(
                _BUSY_RETRY_S, self._interrupt, attempt, cause, error, details, until
            )
            return
        if not done:
            self.missed += 1
            return
        self.rescued[cause] += 1
        waited = self._clock() - attempt.started_at
        logger.info(
            "rescued request %s from %s after %.3fs (%s)",
            attempt.request_id,
            attempt.deployment_id,
            waited,
            cause,
        )
        self._emit(
            FailoverEvent(
                event_type=EventType.REQUEST_RESCUED.value,
                model_group=attempt.group,
                deployment_id=attempt.deployment_id,
                from_deployment=attempt.deployment_id,
                reason=str(error),
                request_id=attempt.request_id,
                instance_id=self._instance_id,
                details={
                    "cause": cause,
                    "stream": attempt.stream,
                    "waited_ms": round(waited * 1000, 1),
                    **details,
                },
            )
        )

    def _take_token(self) -> bool:
        now = self._clock()
        rate = self.settings.max_per_s
        self._tokens = min(rate, self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    # -- upkeep ---------------------------------------------------------------------------

    def prune(self) -> None:
        self.attempts.prune()

    def stats(self) -> Mapping[str, Any]:
        return {
            "enabled": self.settings.enabled,
            "rescued": {cause: self.rescued[cause] for cause in CAUSES},
            "held_back": {
                cap: self.held_back[cap] for cap in ("per_ejection", "no_alternative", "queue_full")
            },
            "delayed": self.delayed,
            "queued": len(self._queue),
            "missed": self.missed,
            "untracked": self.untracked,
            "tracked": len(self.attempts),
            "first_token": {
                "fixed_s": self.first_token.fixed_s,
                "groups": self.first_token.stats(),
            },
        }

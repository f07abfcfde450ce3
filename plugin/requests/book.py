"""``RequestBook``: one record per client request, and the in-flight counts drains wait for.

A record holds what the plugin knows about one request while it runs, under the id
``identity.route_key`` gives it:

- what routing picked (its first and latest pick) and which deployments failed it, so a retry
  never lands on one that failed it (``excluded``); known to routing from its first pick until
  it succeeds (``finish``), which is what the outcome hooks check (``knows``): LiteLLM hands
  every Router's outcomes to every callback, and a second Router's plugin in the same process
  must not count them;
- its attempts in flight, per deployment: an attempt starts when routing picks a deployment for
  it (``start``) and ends at the first end signal LiteLLM gives for that (request, deployment)
  (``end``): the success log event (for a stream, once it has ended), the per-attempt failure
  hook, or the request-level failure event. A second end of the same attempt finds nothing;
- its session (``SessionRequest``), from the first pick until its answer is recorded;
- its answer as the client got it (``keep_answer``), captured before LiteLLM's logging may
  redact it (``turn_off_message_logging``), held only while its session waits for that answer
  and dropped when the answer is recorded (``take_answer``) or the record expires.

The per-deployment in-flight counts are a view of these records, kept current as attempts start
and end: ``count``, ``counts`` (a copy made in one C call, which a metrics scrape in another
thread may take), ``stats`` and ``listener`` (called with a deployment whose count fell: the
last attempt of a draining deployment completes its drain).

One expiry. An attempt can end without any hook firing (a client that disconnects from the
proxy mid-request, a task cancelled by a timeout LiteLLM does not report), and a request can be
abandoned before its answer. Records are kept in the order they were last picked for; a record
untouched for ``ttl_s`` (``drain.in_flight_ttl_s``) is forgotten whole, its attempts counted in
``expired`` so a lost end signal never holds a drain past the TTL. Being the one horizon, the TTL
also bounds how long a request's exclusions and session are kept, so, as drains already need, it
should exceed the longest request. Expiry pops from the front:
amortised O(1) per pick, never a scan. It runs on every write and from the plugin's refresh
loop (``expire``). The book is bounded (``max_requests``); beyond it the oldest records expire
early, counted the same way.

Everything but ``counts`` runs on the plugin's event loop.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Routing:
    """What routing picked for a request and which deployments failed it, until it succeeds."""

    first_pick: str | None = None
    last_pick: str | None = None
    picked_at: float = 0.0
    # The deployments that failed the request, in the order they failed it (a dict keeps it):
    # when every one has, the retry goes to the one that failed it longest ago (``failed_order``).
    # None until one does: most requests never fail, and a pick allocates nothing it won't use.
    failed: dict[str, None] | None = None
    # The deployments whose attempt LiteLLM gave up on before their failure hook ran (see
    # ``RequestBook.start``): excluded like ``failed``, not counted. None until there is one.
    superseded: set[str] | None = None


@dataclass(slots=True)
class RequestRecord:
    """What the book knows about one client request."""

    touched_at: float
    routing: Routing | None = None  # None: not routed here, or succeeded (the hooks ignore it)
    in_flight: dict[str, int] = field(default_factory=dict)  # deployment -> attempts
    session: object | None = None  # the sessions' ``SessionRequest``, until its answer
    answer: object | None = None  # the answer as the client got it, until it is recorded

    @property
    def idle(self) -> bool:
        """Nothing left to remember: the record can go."""
        return self.routing is None and self.session is None and self.answer is None and not self.in_flight


class RequestBook:
    def __init__(
        self,
        *,
        ttl_s: float,
        max_requests: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_requests = max_requests
        self.clock = clock
        self._records: OrderedDict[str, RequestRecord] = OrderedDict()
        # No record can expire before this (see ``_touch``): the oldest touch, plus the TTL.
        self._next_expiry = float("-inf")
        self._counts: dict[str, int] = {}
        self._sessions = 0
        self._answers = 0
        self.started = 0
        self.ended = 0
        self.expired: Counter[str] = Counter()
        self.listener: Callable[[str], None] | None = None  # called with a deployment whose count fell

    # -- identity -------------------------------------------------------------------------

    def resolve(self, keys: tuple[str, ...]) -> str | None:
        """The first of a hook's candidate ids (``identity.hook_keys``) that routing knows, else
        the first."""
        records = self._records
        for key in keys:
            record = records.get(key)
            if record is not None and record.routing is not None:
                return key
        return keys[0] if keys else None

    def knows(self, keys: tuple[str, ...]) -> bool:
        """Whether this book routed the request (see the module docstring). A request with no id
        at all cannot be told apart and counts."""
        if not keys:
            return True
        records = self._records
        return any((record := records.get(key)) is not None and record.routing is not None for key in keys)

    # -- routing --------------------------------------------------------------------------

    def excluded(self, request_id: str | None) -> frozenset[str]:
        """The deployments that failed this request."""
        record = self._records.get(request_id) if request_id is not None else None  # ``get``, on every pick
        routing = None if record is None else record.routing
        if routing is None or not (routing.failed or routing.superseded):
            return frozenset()
        return frozenset(routing.failed or ()).union(routing.superseded or ())

    def start(self, request_id: str | None, deployment_id: str) -> None:
        """Routing picked ``deployment_id`` for an attempt of the request: a pick, and an attempt
        in flight. A request without an id cannot be matched to its end signals and is not
        tracked (LiteLLM gives every request a call id or a trace id)."""
        if request_id is None:
            return
        records = self._records
        if request_id not in records:
            # A request's first pick (most picks): its record made whole in one go.
            now = self.clock()
            records[request_id] = RequestRecord(
                now, Routing(deployment_id, deployment_id, now), {deployment_id: 1}
            )
            if now >= self._next_expiry or len(records) > self.max_requests:
                self._expire(now)
        else:
            self._pick_again(request_id, deployment_id)
        self._counts[deployment_id] = self._counts.get(deployment_id, 0) + 1
        self.started += 1

    def _pick_again(self, request_id: str, deployment_id: str) -> None:
        record = self.record_pick(request_id, deployment_id)
        in_flight = record.in_flight
        if in_flight and record.routing is not None:
            # LiteLLM picks again for a request only once its attempt failed, and its failure
            # hooks may run after this pick (they are tasks of their own): until they do, the
            # attempts still in flight elsewhere are known to have failed, so a continuation
            # chosen meanwhile must not go back to them. Kept apart from ``failed``, which the
            # hooks fill and which counts each failure once toward outlier detection.
            others = {d for d in in_flight if d != deployment_id}
            if others:
                routing = record.routing
                routing.superseded = others if routing.superseded is None else routing.superseded | others
        in_flight[deployment_id] = in_flight.get(deployment_id, 0) + 1

    def record_pick(self, request_id: str, deployment_id: str) -> RequestRecord:
        """A pick with no attempt for the book to track (a stream's continuation, which its
        resuming stream follows itself)."""
        record = self._touch(request_id)
        routing = record.routing
        if routing is None:
            record.routing = Routing(deployment_id, deployment_id, record.touched_at)
        else:
            routing.last_pick, routing.picked_at = deployment_id, record.touched_at
        return record

    def record_failure(self, request_id: str | None, deployment_id: str) -> bool:
        """Remember that ``deployment_id`` failed the request; False if it was already known
        (LiteLLM may report one failure through two hooks)."""
        if request_id is None:
            return True
        routing = self.get(request_id)
        if routing is None:
            routing = self._touch(request_id).routing = Routing()
        failed = routing.failed
        if failed is None:
            failed = routing.failed = {}
        if deployment_id in failed:
            # Failed it again (a retry every other one had failed too): now the latest, so the
            # next such retry goes to another. Two hooks reporting one failure move it once.
            del failed[deployment_id]
            failed[deployment_id] = None
            return False
        failed[deployment_id] = None
        return True

    def failed_order(self, request_id: str | None) -> tuple[str, ...]:
        """The deployments that failed this request, the one that failed it longest ago first."""
        routing = self.get(request_id)
        if routing is None:
            return ()
        # A superseded attempt failed before any whose hook has run since.
        failed = routing.failed or {}
        early = tuple(sorted((routing.superseded or set()).difference(failed)))
        return early + tuple(failed)

    def finish(self, request_id: str | None) -> Routing | None:
        """The request succeeded: routing forgets it (its attempts in flight and its session
        stay until they end). Returns what routing knew."""
        if request_id is None:
            return None
        record = self._records.get(request_id)
        if record is None or record.routing is None:
            return None
        routing, record.routing = record.routing, None
        self._drop_if_idle(request_id, record)
        return routing

    def get(self, request_id: str | None) -> Routing | None:
        """What routing knows of the request, while it runs."""
        if request_id is None:
            return None
        record = self._records.get(request_id)
        return None if record is None else record.routing

    # -- attempts in flight ---------------------------------------------------------------

    def end(self, request_keys: tuple[str, ...], deployment_id: str) -> bool:
        """An end signal for the attempt on ``deployment_id`` of the request named by any of
        ``request_keys``; False if none was in flight."""
        for request_id in request_keys:
            record = self._records.get(request_id)
            if record is None:
                continue
            attempts = record.in_flight.get(deployment_id)
            if attempts is None:
                continue
            if attempts > 1:
                record.in_flight[deployment_id] = attempts - 1
            else:
                del record.in_flight[deployment_id]
            self.ended += 1
            self._decrement(deployment_id)
            self._drop_if_idle(request_id, record)
            return True
        return False

    def forget_deployment(self, deployment_id: str) -> int:
        """A deployment deleted from LiteLLM: its attempts in flight are no longer waited for (a
        drain of it would otherwise never end). The number of attempts dropped."""
        dropped = 0
        for request_id, record in list(self._records.items()):
            dropped += record.in_flight.pop(deployment_id, 0)
            self._drop_if_idle(request_id, record)
        if self._counts.pop(deployment_id, None) is not None and self.listener is not None:
            self.listener(deployment_id)
        return dropped

    def count(self, deployment_id: str) -> int:
        return self._counts.get(deployment_id, 0)

    def counts(self) -> dict[str, int]:
        return self._counts.copy()

    def stats(self) -> dict[str, object]:
        return {
            "in_flight": sum(self._counts.values()),
            "started": self.started,
            "ended": self.ended,
            "expired": sum(self.expired.values()),
            "ttl_s": self.ttl_s,
        }

    # -- sessions -------------------------------------------------------------------------

    def session(self, request_id: str | None) -> object | None:
        record = self._records.get(request_id) if request_id is not None else None
        return None if record is None else record.session

    def keep_session(self, request_id: str, session: object) -> None:
        record = self._touch(request_id)
        if record.session is None:
            self._sessions += 1
        record.session = session

    def take_session(self, keys: tuple[str, ...]) -> object | None:
        """The session of the request named by the first of ``keys`` that has one, forgotten."""
        for key in keys:
            record = self._records.get(key)
            if record is None or record.session is None:
                continue
            session, record.session = record.session, None
            self._sessions -= 1
            self._drop_if_idle(key, record)
            return session
        return None

    def sessions_pending(self) -> int:
        """Requests whose session waits for its answer."""
        return self._sessions

    # -- answers --------------------------------------------------------------------------

    def waits_for_answer(self, keys: tuple[str, ...]) -> str | None:
        """The id of the request named by ``keys`` whose session waits for its answer, if any:
        an answer is worth keeping for that request only."""
        for key in keys:
            record = self._records.get(key)
            if record is not None and record.session is not None:
                return key
        return None

    def keep_answer(self, keys: tuple[str, ...], answer: object) -> bool:
        """Hold the answer the client got until the request's session records it; False (and
        nothing kept) when no session waits for it (none, or already recorded). The record is
        not touched: the answer lives no longer than the request it belongs to."""
        key = self.waits_for_answer(keys)
        if key is None:
            return False
        record = self._records[key]
        if record.answer is None:
            self._answers += 1
        record.answer = answer
        return True

    def take_answer(self, keys: tuple[str, ...]) -> object | None:
        """The answer held for the request named by the first of ``keys`` that has one, forgotten."""
        for key in keys:
            record = self._records.get(key)
            if record is None or record.answer is None:
                continue
            answer, record.answer = record.answer, None
            self._answers -= 1
            self._drop_if_idle(key, record)
            return answer
        return None

    def answers_held(self) -> int:
        """Answers captured and not yet recorded (each dropped at its record's expiry at the latest)."""
        return self._answers

    # -- expiry ---------------------------------------------------------------------------

    def expire(self) -> None:
        """Forget requests untouched for ``ttl_s`` (also done on every write)."""
        self._expire(self.clock())

    def __len__(self) -> int:
        return len(self._records)

    def _touch(self, request_id: str) -> RequestRecord:
        now = self.clock()
        records = self._records
        record = records.get(request_id)
        if record is None:
            record = records[request_id] = RequestRecord(now)
        else:
            record.touched_at = now
            records.move_to_end(request_id)
        # Touches only move times forward, so nothing expires before ``_next_expiry``: the
        # front of the book is looked at only when something may be due, not on every write.
        if now >= self._next_expiry or len(records) > self.max_requests:
            self._expire(now)
        return record

    def _expire(self, now: float) -> None:
        cutoff = now - self.ttl_s
        records = self._records
        while records:
            request_id, record = next(iter(records.items()))
            if record.touched_at >= cutoff and len(records) <= self.max_requests:
                self._next_expiry = record.touched_at + self.ttl_s
                return
            del records[request_id]
            if record.session is not None:
                self._sessions -= 1
            if record.answer is not None:
                self._answers -= 1
            for deployment_id, attempts in record.in_flight.items():
                self.expired[deployment_id] += attempts
                for _ in range(attempts):
                    self._decrement(deployment_id)
        self._next_expiry = now + self.ttl_s  # empty: a record touched from now on is due after

    def _drop_if_idle(self, request_id: str, record: RequestRecord) -> None:
        if record.idle and self._records.get(request_id) is record:
            del self._records[request_id]

    def _decrement(self, deployment_id: str) -> None:
        left = self._counts.get(deployment_id, 0) - 1
        if left > 0:
            self._counts[deployment_id] = left
        else:
            self._counts.pop(deployment_id, None)
        if self.listener is not None:
            self.listener(deployment_id)

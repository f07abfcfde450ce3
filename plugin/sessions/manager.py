"""Sessions inside the plugin: identification, affinity, recording and continuity, wired together.

The request path (``litellm_failover.requests.RequestPath``) calls three things per request:

- ``track`` from ``route`` (hot path, synchronous, no I/O): who the request's session is, kept
  in the request's record in the request book (``RequestBook.keep_session``, under the one
  request id rule of ``litellm_failover.requests.identity``), so the success hook knows what
  route saw, whatever shape LiteLLM's logging kwargs take.
- ``preferred`` from ``route``: the deployment the request should stick to, if any (the creator
  of its ``previous_response_id``, else its session's pin), or None to route normally; the rule
  is ``litellm_failover.sessions.affinity``'s.
- ``answered`` from the success log hook (off the request path): re-pin, events, rows
  (``litellm_failover.sessions.answers``).

And ``prepare_stateful`` before ``route`` for a request with ``previous_response_id`` whose
creator is down: the one place a request may wait for the database (bounded), because without
the rebuilt conversation it would fail.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.events import FailoverEvent
from litellm_failover.requests.identity import hook_keys, route_key
from litellm_failover.routing_table import RoutingTable
from litellm_failover.sessions.affinity import creator_usable, pin_problem
from litellm_failover.sessions.answers import rebuilt_event, repinned_event, turn_for
from litellm_failover.sessions.continuity import RebuildFailed, rebuild
from litellm_failover.sessions.identity import SessionId, identify, split_pin_key
from litellm_failover.sessions.pins import PinStore
from litellm_failover.sessions.recorder import ConversationSink, Recorder
from litellm_failover.sessions.request import SessionRequest
from litellm_failover.sessions.responses import ResponseIndex
from litellm_failover.sessions.tasks import TaskSet
from litellm_failover.sessions.warmup import Warmer, keeps_prefix_cache
from litellm_failover.settings import SessionSettings
from litellm_failover.snapshot import CoreSnapshot

logger = logging.getLogger("litellm_failover")

REFUSED_KEPT = 1_000
LOOKUP_CONCURRENCY = 16
LOOKUP_TIMEOUT_S = 2.0


class Store(ConversationSink, Protocol):
    """What sessions need of the store writer."""

    @property
    def engine(self) -> AsyncEngine | None: ...

    async def flush(self, timeout: float | None = None) -> bool: ...  # noqa: ASYNC109


class SessionCore(Protocol):
    """What sessions read of the core: its published snapshot for affinity, and where events go."""

    instance_id: str

    @property
    def snapshot(self) -> CoreSnapshot: ...

    def emit(self, event: FailoverEvent) -> None: ...


class SessionBook(Protocol):
    """Where a request's ``SessionRequest`` is kept between its pick and its answer
    (``litellm_failover.requests.RequestBook``)."""

    def session(self, request_id: str | None) -> object | None: ...

    def keep_session(self, request_id: str, session: object) -> None: ...

    def take_session(self, keys: tuple[str, ...]) -> object | None: ...

    def sessions_pending(self) -> int: ...


class SessionManager:
    def __init__(
        self,
        settings: SessionSettings,
        core: SessionCore,
        store: Store,
        deployments: Mapping[str, Mapping[str, Any]],
        *,
        book: SessionBook,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.settings = settings
        self.core = core
        self.store = store
        self.book = book
        self.pins = PinStore(settings.max_pins)
        self.recorder = Recorder(settings, store, remembered=settings.max_pins)
        self.responses = ResponseIndex(lambda: self.store.engine, settings.max_pins)
        self._refused: OrderedDict[Any, None] = OrderedDict()
        self._lookups: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._background = TaskSet()
        self.counters = {
            "invalid_session_ids": 0,
            "repinned": 0,
            "pins_learned": 0,
            "lookups_skipped": 0,
            "rebuilds": 0,
            "rebuild_failures": 0,
            "unplaced_turns": 0,
        }
        # Proactive moves after a failover; the plugin subscribes it to the core's events.
        # ``deployments`` is the plugin's live map (deployments added and deleted at run time).
        self.warmer: Warmer | None = None
        if settings.enabled and settings.warmup:
            self.warmer = Warmer(
                deployments=deployments,
                self_hosted=self._self_hosted,
                pick=self._pick_for_warmup,
                pinned_to=self.pins.pinned_to,
                repin=self._repin,
                engine=lambda: self.store.engine,
                redact=redact,
            )

    # -- hot path -------------------------------------------------------------------------

    def check(self, kwargs: Mapping[str, Any]) -> SessionId | None:
        """Validate the request's session id (the proxy's pre-call hook); raises SessionIdError."""
        if not self.settings.enabled:
            return None
        try:
            return identify(kwargs, use_user_field=self.settings.use_user_field)
        except ValueError:
            # LiteLLM may ask for a pick more than once per request (tiers by ``order``): count
            # the request once, by its trace id.
            trace = kwargs.get("litellm_trace_id")
            if trace is None or trace not in self._refused:
                self.counters["invalid_session_ids"] += 1
                if trace is not None:
                    self._refused[trace] = None
                    if len(self._refused) > REFUSED_KEPT:
                        self._refused.popitem(last=False)
            raise

    def track(
        self, group: str, kwargs: Mapping[str, Any], messages: Any, key: str | None = None
    ) -> SessionRequest | None:
        """The request's session state, created on its first attempt; None for a plain request.
        ``key``: the request's ``route_key``, where the caller has it already (every pick)."""
        if key is None:
            key = route_key(kwargs)
        known = self.book.session(key)
        if known is not None:
            return known  # type: ignore[return-value]
        session = self.check(kwargs)
        responses_call = messages is None and "input" in kwargs
        if session is None and not responses_call:
            return None
        request = SessionRequest.from_kwargs(group, session, kwargs, messages)
        if key is not None:
            self.book.keep_session(key, request)
        return request

    def preferred(
        self,
        request: SessionRequest,
        table: RoutingTable,
        exclude: frozenset[str],
        offered: Mapping[str, Any] | None,
    ) -> str | None:
        """The deployment this request sticks to, or None to route normally.

        ``offered`` is what LiteLLM left to choose from (None: every deployment of the group).
        """
        if request.previous is not None and request.rebuilt is None:
            creator = request.previous.deployment_id
            if creator is not None and creator_usable(
                self.core.snapshot.deployments, creator, request.group, table, exclude, offered
            ):
                return creator
        key = request.pin_key
        if key is None:
            return None
        pinned = self.pins.get(key, request.group)
        if pinned is None:
            request.miss = True
            return None
        reason = pin_problem(self.core.snapshot.deployments, pinned, table, exclude, offered)
        if reason is None:
            return pinned
        request.pinned, request.unpinned_reason = pinned, reason
        return None

    def picked(self, request: SessionRequest, deployment_id: str) -> None:
        """The first pick of a session pins it; a miss also asks the store, in the background."""
        key = request.pin_key
        if key is None or self.pins.peek(key, request.group) is not None:
            return
        self.pins.pin(key, request.group, deployment_id)
        if request.miss:
            request.provisional = deployment_id
            self._learn_pin(key, request.group, deployment_id)

    # -- Responses API continuity ---------------------------------------------------------

    async def prepare_stateful(
        self,
        group: str,
        kwargs: dict[str, Any],
        messages: Any,
        table: RoutingTable,
        exclude: frozenset[str],
        offered: Mapping[str, Any] | None,
    ) -> SessionRequest | None:
        """Rebuild the conversation of a request whose ``previous_response_id`` creator is down."""
        request = self.track(group, kwargs, messages)
        if request is None or request.previous is None:
            return request
        if request.rebuilt is not None:
            self._apply_rebuild(request, kwargs)  # a retry may start from the original kwargs
            return request
        creator = request.previous.deployment_id
        if creator is None or creator_usable(
            self.core.snapshot.deployments, creator, group, table, exclude, offered
        ):
            return request
        if request.rebuild_tried or not (self.settings.enabled and self.settings.store_messages):
            return request
        request.rebuild_tried = True
        try:
            caller, where = request.caller, self.responses.locator(request.caller)
            rebuilt = await rebuild(
                self.store.engine,
                request.previous.raw_id,
                caller=caller,
                locate=where,
                flush=self.store.flush,
            )
        except RebuildFailed as exc:
            self.counters["rebuild_failures"] += 1
            logger.warning(
                "cannot rebuild the conversation of response %s (its deployment %s is down): %s",
                request.previous.raw_id,
                creator,
                exc,
            )
            return request
        request.rebuilt, request.rebuilt_from = rebuilt, creator
        self.counters["rebuilds"] += 1
        self._apply_rebuild(request, kwargs)
        return request

    def _apply_rebuild(self, request: SessionRequest, kwargs: dict[str, Any]) -> None:
        assert request.rebuilt is not None
        request.apply_rebuild(kwargs)

    # -- answers (off the request path) ---------------------------------------------------

    async def answered(
        self, deployment_id: str, kwargs: Mapping[str, Any], response: Any, answer: Any = None
    ) -> None:
        """``answer``: the answer's items as the client got them, when the request path captured
        them (``answers.turn_for``)."""
        request = self.book.take_session(hook_keys(kwargs))
        if not isinstance(request, SessionRequest):
            return
        key = request.pin_key
        if key is not None and self.settings.enabled:
            lookup = self._lookups.get((key, request.group))
            if lookup is not None:  # the store's pin first: this turn's own row would overwrite it
                await asyncio.wait({lookup}, timeout=LOOKUP_TIMEOUT_S)
            pinned = self.pins.peek(key, request.group)
            # A miss answered where it was provisionally sent keeps a pin learned meanwhile.
            if pinned != deployment_id and not (pinned and request.provisional == deployment_id):
                self.pins.pin(key, request.group, deployment_id)
                if pinned is not None:
                    reason = request.unpinned_reason if request.pinned == pinned else None
                    self._emit_repinned(
                        key,
                        request.group,
                        pinned,
                        deployment_id,
                        reason or f"the request failed on {pinned}",
                        request.trace_id,
                    )
        if request.rebuilt is not None:
            self.core.emit(rebuilt_event(request, deployment_id, request.trace_id, self.core.instance_id))
        if self.settings.enabled and self.settings.store_messages:
            try:
                await self._record(request, deployment_id, kwargs, response, answer)
            except Exception:  # never let a malformed answer break LiteLLM's logging task
                logger.exception("recording a session turn failed")

    async def _record(
        self,
        request: SessionRequest,
        deployment_id: str,
        kwargs: Mapping[str, Any],
        response: Any,
        answer: Any,
    ) -> None:
        place = self.responses.place
        turn = await turn_for(request, deployment_id, kwargs, response, place, self.counters, answer)
        if turn is None or not turn.answer_items:
            return
        # A named session's pin; a Responses conversation is "pinned" where its state lives.
        key = request.pin_key
        pinned = self.pins.peek(key, request.group) if key is not None else deployment_id
        tip = self.recorder.record(turn, pinned)
        if turn.response_id is not None:
            self.responses.remember(turn.response_id, turn.caller, (turn.session_id, turn.answer_seq, tip))

    # -- pins learned and moved -----------------------------------------------------------

    def _learn_pin(self, pin_key: str, group: str, provisional: str) -> None:
        """Ask the store for a pin this process does not know (a restart, an evicted pin).

        The request that missed has already been routed; if the store names another deployment
        and nothing re-pinned the session meanwhile, its next turn goes there.
        """
        key = (pin_key, group)
        caller, session_id = split_pin_key(pin_key)
        if key in self._lookups or self.store.engine is None or len(self._lookups) >= LOOKUP_CONCURRENCY:
            self.counters["lookups_skipped"] += 1
            return

        async def lookup() -> None:
            from litellm_failover.store.conversations import load_session

            engine = self.store.engine
            if engine is None:
                return
            try:
                async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                    rows = await load_session(engine, session_id, caller=caller)
            except Exception:
                return
            stored = next((r.pinned_deployment for r in rows if r.model_group == group), None)
            if (
                stored
                and stored != provisional
                and self.pins.peek(pin_key, group) == provisional
                and stored in self.core.snapshot.groups.get(group, ())
            ):
                self.pins.apply_remote(pin_key, group, stored)
                self.counters["pins_learned"] += 1

        task = self._background.spawn(lookup(), "failover:pin-lookup")
        if task is not None:
            self._lookups[key] = task
            task.add_done_callback(lambda _: self._lookups.pop(key, None))

    def _repin(self, session_id: str, group: str, old: str, new: str, reason: str) -> None:
        self.pins.pin(session_id, group, new)
        self._emit_repinned(session_id, group, old, new, reason, None)

    def _pick_for_warmup(self, group: str) -> str | None:
        table = self.core.snapshot.tables.get(group)
        return table.pick() if table is not None else None

    def _self_hosted(self, deployment_id: str) -> bool:
        """From the deployment's current spec: one added, or changed to another endpoint kind,
        after start is judged as it is now; a deleted one is not a target."""
        view = self.core.snapshot.deployments.get(deployment_id)
        return view is not None and keeps_prefix_cache(view.spec)

    # -- helpers --------------------------------------------------------------------------

    def _emit_repinned(
        self, session_id: str, group: str, old: str, new: str, reason: str, request_id: Any
    ) -> None:
        self.counters["repinned"] += 1
        self.core.emit(repinned_event(session_id, group, old, new, reason, request_id, self.core.instance_id))

    async def stop(self) -> None:
        if self.warmer is not None:
            await self.warmer.stop()
        await self._background.stop()

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "enabled": self.settings.enabled,
            "store_messages": self.settings.store_messages,
            "pins": len(self.pins),
            "pins_evicted": self.pins.evicted,
            "pending_requests": self.book.sessions_pending(),
            **self.counters,
            **self.recorder.stats(),
        }
        if self.warmer is not None:
            stats.update(self.warmer.stats())
        return stats

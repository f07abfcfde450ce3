"""Sessions inside the plugin: identification, affinity, recording and continuity, wired together.

The plugin calls three things per request:

- ``track`` from ``route`` (hot path, synchronous, no I/O): who the request's session is, kept
  per request in a bounded map, so the success hook knows what route saw, whatever shape
  LiteLLM's logging kwargs take. The key is ``request_key``: LiteLLM's ``litellm_call_id`` where
  the route kwargs carry it (the proxy, where the success hook's ``litellm_trace_id`` is not the
  one routing saw), else ``litellm_trace_id`` (the Router, where it is the same throughout).
- ``preferred`` from ``route``: the deployment the request should stick to, if any (the creator
  of its ``previous_response_id``, else its session's pin), or None to route normally.
- ``answered`` from the success log hook (off the request path): re-pin, events, rows.

And ``prepare_stateful`` before ``route`` for a request with ``previous_response_id`` whose
creator is down: the one place a request may wait for the database (bounded), because without
the rebuilt conversation it would fail.

Affinity rule: a pin is honoured only while its deployment is in the group's serving set (the
active tier's routable members, ``RoutingTable.serving``), has weight, was offered by LiteLLM and
has not failed this request. A session is never kept on an ejected node, nor on a standby once
its primary tier serves again: affinity must not defeat failback. A Responses API request goes
to the creator of its ``previous_response_id`` whenever that deployment is routable at all
(any tier), because anywhere else its conversation must first be rebuilt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.attempts import request_key
from litellm_failover.core import FailoverCore
from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.routing_table import RoutingTable
from litellm_failover.sessions.content import chat_answer, chat_items, responses_answer, responses_items
from litellm_failover.sessions.continuity import (
    RebuildFailed,
    Rebuilt,
    ResponseRef,
    current_input,
    parse_response_id,
    rebuild,
)
from litellm_failover.sessions.identity import SessionId, identify
from litellm_failover.sessions.pins import PinStore
from litellm_failover.sessions.recorder import ConversationSink, Recorder, Turn, Usage
from litellm_failover.sessions.tasks import TaskSet
from litellm_failover.sessions.warmup import Warmer
from litellm_failover.settings import SessionSettings

logger = logging.getLogger("litellm_failover")

PENDING_TTL_S = 600.0
PENDING_MAX = 100_000
REFUSED_KEPT = 1_000
LOOKUP_CONCURRENCY = 16
LOOKUP_TIMEOUT_S = 2.0
PLACE_TIMEOUT_S = 2.0
_CHAT_CALLS = frozenset({"acompletion", "completion"})
_RESPONSES_CALLS = frozenset({"aresponses", "responses"})


class Store(ConversationSink, Protocol):
    """What sessions need of the store writer."""

    @property
    def engine(self) -> AsyncEngine | None: ...

    async def flush(self, timeout: float | None = None) -> bool: ...  # noqa: ASYNC109


@dataclass(slots=True)
class SessionRequest:
    """What ``route`` learned about one client request, for its later attempts and its answer."""

    group: str
    session: SessionId | None  # None: a Responses conversation named by its first response
    messages: Any
    response_input: Any
    instructions: Any
    previous: ResponseRef | None
    store: bool
    created_at: float
    trace_id: str | None = None  # for events: the id the ledger and the other events use
    miss: bool = False  # no pin in memory when first routed
    pinned: str | None = None  # the pin that was not honoured, if one was not
    unpinned_reason: str | None = None
    rebuild_tried: bool = False
    rebuilt: Rebuilt | None = None
    rebuilt_from: str | None = None


class SessionManager:
    def __init__(
        self,
        settings: SessionSettings,
        core: FailoverCore,
        store: Store,
        deployments: Mapping[str, Mapping[str, Any]],
        *,
        self_hosted: frozenset[str] = frozenset(),
        redact: Callable[[str], str] = str,
    ) -> None:
        self.settings = settings
        self.core = core
        self.store = store
        self.pins = PinStore(settings.max_pins)
        self.recorder = Recorder(settings, store, remembered=settings.max_pins)
        self._pending: OrderedDict[str, SessionRequest] = OrderedDict()
        self._responses: OrderedDict[str, tuple[str, int]] = OrderedDict()  # raw id -> (session, seq)
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
        self.warmer: Warmer | None = None
        if settings.enabled and settings.warmup:
            self.warmer = Warmer(
                deployments=deployments,
                self_hosted=self_hosted,
                pick=self._pick_for_warmup,
                pinned_to=self.pins.pinned_to,
                repin=self._repin,
                engine=lambda: self.store.engine,
                redact=redact,
            )
            core.listeners.append(self.warmer.on_event)

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

    def track(self, group: str, kwargs: Mapping[str, Any], messages: Any) -> SessionRequest | None:
        """The request's session state, created on its first attempt; None for a plain request."""
        key = request_key(kwargs)
        if key is not None:
            known = self._pending.get(key)
            if known is not None:
                return known
        session = self.check(kwargs)
        previous = kwargs.get("previous_response_id")
        responses_call = messages is None and "input" in kwargs
        if session is None and not responses_call:
            return None
        request = SessionRequest(
            group=group,
            session=session,
            messages=messages if messages is not None else kwargs.get("messages"),
            response_input=kwargs.get("input"),
            instructions=kwargs.get("instructions"),
            previous=parse_response_id(previous) if isinstance(previous, str) and previous else None,
            store=kwargs.get("store") is not False,
            created_at=time.monotonic(),
            trace_id=str(kwargs["litellm_trace_id"]) if kwargs.get("litellm_trace_id") else None,
        )
        if key is not None:
            self._remember_request(key, request)
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
            if creator is not None and self._creator_usable(creator, request.group, table, exclude, offered):
                return creator
        if request.session is None:
            return None
        pinned = self.pins.get(request.session.value, request.group)
        if pinned is None:
            request.miss = True
            return None
        reason = self._pin_problem(pinned, table, exclude, offered)
        if reason is None:
            return pinned
        request.pinned, request.unpinned_reason = pinned, reason
        return None

    def picked(self, request: SessionRequest, deployment_id: str) -> None:
        """The first pick of a session pins it; a miss also asks the store, in the background."""
        session = request.session
        if session is None or self.pins.peek(session.value, request.group) is not None:
            return
        self.pins.pin(session.value, request.group, deployment_id)
        if request.miss:
            self._learn_pin(session.value, request.group, deployment_id)

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
        if creator is None or self._creator_usable(creator, group, table, exclude, offered):
            return request
        if request.rebuild_tried or not (self.settings.enabled and self.settings.store_messages):
            return request
        request.rebuild_tried = True
        try:
            rebuilt = await rebuild(
                self.store.engine, request.previous.raw_id, locate=self._locate, flush=self._flush
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
        kwargs.pop("previous_response_id", None)
        kwargs["input"] = [*request.rebuilt.history, *current_input(request.response_input)]

    async def _flush(self, timeout: float) -> bool:  # noqa: ASYNC109 (bounded by the caller)
        return await self.store.flush(timeout=timeout)

    async def _locate(self, raw_id: str) -> tuple[str, int] | None:
        known = self._responses.get(raw_id)
        if known is not None:
            return known
        engine = self.store.engine
        if engine is None:
            return None
        from litellm_failover.store.conversations import find_response

        return await find_response(engine, raw_id)

    # -- answers (off the request path) ---------------------------------------------------

    async def answered(self, deployment_id: str, kwargs: Mapping[str, Any], response: Any) -> None:
        request = None
        for key in (kwargs.get("litellm_call_id"), kwargs.get("litellm_trace_id")):
            if key and request is None:
                request = self._pending.pop(str(key), None)
        if request is None:
            return
        session = request.session
        if session is not None and self.settings.enabled:
            pinned = self.pins.peek(session.value, request.group)
            if pinned != deployment_id:
                self.pins.pin(session.value, request.group, deployment_id)
                if pinned is not None:
                    reason = request.unpinned_reason if request.pinned == pinned else None
                    self._emit_repinned(
                        session.value,
                        request.group,
                        pinned,
                        deployment_id,
                        reason or f"the request failed on {pinned}",
                        request.trace_id,
                    )
        if request.rebuilt is not None:
            self._emit_rebuilt(request, deployment_id, request.trace_id)
        if self.settings.enabled and self.settings.store_messages:
            try:
                await self._record(request, deployment_id, kwargs, response)
            except Exception:  # never let a malformed answer break LiteLLM's logging task
                logger.exception("recording a session turn failed")

    async def _record(
        self, request: SessionRequest, deployment_id: str, kwargs: Mapping[str, Any], response: Any
    ) -> None:
        call_type = str(kwargs.get("call_type") or "")
        usage = _usage(response)
        if call_type in _CHAT_CALLS and request.session is not None:
            turn = Turn(
                session_id=request.session.value,
                model_group=request.group,
                start_seq=0,
                request_items=chat_items(request.messages),
                answer_items=chat_answer(response),
                deployment_id=deployment_id,
                usage=usage,
            )
        elif call_type in _RESPONSES_CALLS:
            turn = await self._responses_turn(request, deployment_id, response, usage)
        else:
            return
        if turn is None or not turn.answer_items:
            return
        # A named session's pin; a Responses conversation is "pinned" where its state lives.
        pinned = self.pins.peek(turn.session_id, request.group) if request.session else deployment_id
        self.recorder.record(turn, pinned)
        if turn.response_id is not None:
            self._remember_response(turn.response_id, turn.session_id, turn.answer_seq)

    async def _responses_turn(
        self, request: SessionRequest, deployment_id: str, response: Any, usage: Usage
    ) -> Turn | None:
        response_id = getattr(response, "id", None)
        raw_id = parse_response_id(response_id).raw_id if isinstance(response_id, str) else None
        if request.session is None and (not request.store or raw_id is None):
            return None  # the client asked the provider not to keep it: neither does the plugin
        session_id = request.session.value if request.session else None
        start = 0
        if request.previous is not None:
            where = await self._place(request)
            if where is None or (session_id is not None and where[0] != session_id):
                self.counters["unplaced_turns"] += 1
                return None
            session_id, start = where[0], where[1] + 1
        instructions = request.instructions if request.previous is None else None
        return Turn(
            session_id=session_id or str(raw_id),  # a new conversation is named by its first response
            model_group=request.group,
            start_seq=start,
            request_items=responses_items(request.response_input, instructions),
            answer_items=responses_answer(response),
            deployment_id=deployment_id,
            response_id=raw_id,
            usage=usage,
        )

    async def _place(self, request: SessionRequest) -> tuple[str, int] | None:
        assert request.previous is not None
        if request.rebuilt is not None:
            return request.rebuilt.session_id, request.rebuilt.seq
        try:
            async with asyncio.timeout(PLACE_TIMEOUT_S):
                return await self._locate(request.previous.raw_id)
        except Exception:
            return None

    # -- pins learned and moved -----------------------------------------------------------

    def _learn_pin(self, session_id: str, group: str, provisional: str) -> None:
        """Ask the store for a pin this process does not know (a restart, an evicted pin).

        The request that missed has already been routed; if the store names another deployment
        and nothing re-pinned the session meanwhile, its next turn goes there.
        """
        key = (session_id, group)
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
                    rows = await load_session(engine, session_id)
            except Exception:
                return
            stored = next((r.pinned_deployment for r in rows if r.model_group == group), None)
            if (
                stored
                and stored != provisional
                and self.pins.peek(session_id, group) == provisional
                and stored in self.core.snapshot.groups.get(group, ())
            ):
                self.pins.apply_remote(session_id, group, stored)
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

    # -- helpers --------------------------------------------------------------------------

    def _creator_usable(
        self,
        creator: str,
        group: str,
        table: RoutingTable,
        exclude: frozenset[str],
        offered: Mapping[str, Any] | None,
    ) -> bool:
        record = self.core.snapshot.deployments.get(creator)
        if record is None or record.group != group or creator in exclude:
            return False
        if offered is not None and creator not in offered:
            return False
        if creator in table.draining:
            return False  # drained: no new requests, as if down (its conversation is rebuilt)
        return record.routable or table.panic

    def _pin_problem(
        self,
        pinned: str,
        table: RoutingTable,
        exclude: frozenset[str],
        offered: Mapping[str, Any] | None,
    ) -> str | None:
        """Why the pin can't be honoured for this attempt, or None if it can."""
        if pinned in exclude:
            return f"{pinned} failed this request"
        if pinned not in table.serving:
            record = self.core.snapshot.deployments.get(pinned)
            if record is not None and not record.routable:
                return f"{pinned} is {record.state.value}"
            return f"{pinned} is not in the serving tier (tier {table.active_tier} serves)"
        if offered is not None and pinned not in offered:
            return f"LiteLLM did not offer {pinned}"
        if table.weights.get(pinned, 0.0) <= 0.0 and any(
            table.weights.get(i, 0.0) > 0 for i in table.serving
        ):
            return f"{pinned} has zero weight"
        return None

    def _emit_repinned(
        self, session_id: str, group: str, old: str, new: str, reason: str, request_id: Any
    ) -> None:
        self.counters["repinned"] += 1
        self.core.emit(
            FailoverEvent(
                event_type=EventType.SESSION_REPINNED.value,
                model_group=group,
                deployment_id=new,
                from_deployment=old,
                to_deployment=new,
                reason=reason,
                request_id=str(request_id) if request_id else None,
                instance_id=self.core.instance_id,
                details={"session_id": session_id},
            )
        )

    def _emit_rebuilt(self, request: SessionRequest, deployment_id: str, request_id: Any) -> None:
        rebuilt = request.rebuilt
        assert rebuilt is not None and request.previous is not None
        self.core.emit(
            FailoverEvent(
                event_type=EventType.CONTEXT_REBUILT.value,
                model_group=request.group,
                deployment_id=deployment_id,
                from_deployment=request.rebuilt_from,
                to_deployment=deployment_id,
                reason=(
                    f"{request.rebuilt_from} holds response {request.previous.raw_id} but is down: "
                    f"sent its {len(rebuilt.history)} messages from failover_messages to {deployment_id}"
                ),
                request_id=str(request_id) if request_id else None,
                instance_id=self.core.instance_id,
                details={
                    "session_id": rebuilt.session_id,
                    "previous_response_id": request.previous.raw_id,
                    "messages": len(rebuilt.history),
                },
            )
        )

    def _remember_request(self, request_id: str, request: SessionRequest) -> None:
        self._pending[request_id] = request
        cutoff = request.created_at - PENDING_TTL_S
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if oldest.created_at >= cutoff and len(self._pending) <= PENDING_MAX:
                break
            self._pending.popitem(last=False)

    def _remember_response(self, raw_id: str, session_id: str, seq: int) -> None:
        self._responses[raw_id] = (session_id, seq)
        while len(self._responses) > self.settings.max_pins:
            self._responses.popitem(last=False)

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
            "pending_requests": len(self._pending),
            **self.counters,
            **self.recorder.stats(),
        }
        if self.warmer is not None:
            stats.update(self.warmer.stats())
        return stats


def _usage(response: Any) -> Usage:
    usage = getattr(response, "usage", None)
    if usage is None:
        return Usage()
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    if prompt is None:
        prompt = getattr(usage, "input_tokens", None)
    if completion is None:
        completion = getattr(usage, "output_tokens", None)
    return Usage(prompt, completion)

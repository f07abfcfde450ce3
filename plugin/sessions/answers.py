"""A request's answer as a session turn, and the session events: off the request path.

``turn_for`` builds the ``Turn`` the recorder stores from the request ``route`` saw and the final
answer (a chat completion of a named session, or a Responses API answer); the events say when
a session moved (``session_repinned``) or a conversation was rebuilt elsewhere
(``context_rebuilt``).

The answer's text is taken from the answer as the client got it (``answer_items``, captured by
the request path before LiteLLM's logging runs) where there is one: with LiteLLM's
``turn_off_message_logging`` on, the answer LiteLLM logs has its text replaced by a placeholder,
and storing the placeholder's hash would break the chain the next turn's history is matched
against. The logged answer still gives the token counts and the response id, which LiteLLM
does not redact.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.sessions.content import (
    ROOT_HASH,
    Item,
    chat_answer,
    chat_items,
    responses_answer,
    responses_items,
)
from litellm_failover.sessions.continuity import parse_response_id
from litellm_failover.sessions.identity import split_pin_key
from litellm_failover.sessions.recorder import Turn, Usage
from litellm_failover.sessions.request import SessionRequest

_CHAT_CALLS = frozenset({"acompletion", "completion"})
_RESPONSES_CALLS = frozenset({"aresponses", "responses"})

Place = Callable[[SessionRequest], Awaitable[tuple[str, int, str] | None]]
"""Where a Responses request's previous turn is stored, in the request's caller's sessions:
(session id, its last seq, that message's chain hash), or None."""


def answer_items(call_type: str, response: Any) -> list[Item] | None:
    """An answer as the items the recorder stores, read from the response the client gets; None
    for a call whose answers are not recorded. Read at once, not kept as a reference: LiteLLM
    redacts some logged objects (a stream's assembled answer) in place."""
    if call_type in _CHAT_CALLS:
        return chat_answer(response)
    if call_type in _RESPONSES_CALLS:
        return responses_answer(response)
    return None


async def turn_for(
    request: SessionRequest,
    deployment_id: str,
    kwargs: Mapping[str, Any],
    response: Any,
    place: Place,
    counters: dict[str, int],
    answer: Sequence[Item] | None = None,
) -> Turn | None:
    """The turn to record, or None when there is nothing to record (or nowhere to put it).
    ``answer``: the answer as the client got it, when the request path captured it; otherwise
    the logged ``response``'s (possibly redacted, see the module)."""
    call_type = str(kwargs.get("call_type") or "")
    usage = usage_of(response)
    if call_type in _CHAT_CALLS and request.session is not None:
        return Turn(
            session_id=request.session.value,
            model_group=request.group,
            start_seq=0,
            request_items=chat_items(request.messages),
            answer_items=chat_answer(response) if answer is None else answer,
            deployment_id=deployment_id,
            usage=usage,
            caller=request.caller,
        )
    if call_type in _RESPONSES_CALLS:
        items = responses_answer(response) if answer is None else answer
        return await _responses_turn(request, deployment_id, response, items, usage, place, counters)
    return None


async def _responses_turn(
    request: SessionRequest,
    deployment_id: str,
    response: Any,
    answer: Sequence[Item],
    usage: Usage,
    place: Place,
    counters: dict[str, int],
) -> Turn | None:
    response_id = getattr(response, "id", None)
    raw_id = parse_response_id(response_id).raw_id if isinstance(response_id, str) else None
    if request.session is None and (not request.store or raw_id is None):
        return None  # the client asked the provider not to keep it: neither does the plugin
    session_id = request.session.value if request.session else None
    start, parent = 0, ROOT_HASH
    if request.previous is not None:
        where = await place(request)
        if where is None or (session_id is not None and where[0] != session_id):
            counters["unplaced_turns"] += 1
            return None
        session_id, start, parent = where[0], where[1] + 1, where[2]
    instructions = request.instructions if request.previous is None else None
    return Turn(
        session_id=session_id or str(raw_id),  # a new conversation is named by its first response
        model_group=request.group,
        start_seq=start,
        request_items=responses_items(request.response_input, instructions),
        answer_items=answer,
        deployment_id=deployment_id,
        response_id=raw_id,
        usage=usage,
        caller=request.caller,
        parent_hash=parent,
    )


def usage_of(response: Any) -> Usage:
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


# -- events ---------------------------------------------------------------------------------------


def repinned_event(
    key: str, group: str, old: str, new: str, reason: str, request_id: Any, instance_id: str
) -> FailoverEvent:
    """``key``: the session's pin key (``identity.pin_key``); the event names its caller scope
    (a hash, never a key) and session id apart."""
    caller, session_id = split_pin_key(key)
    return FailoverEvent(
        event_type=EventType.SESSION_REPINNED.value,
        model_group=group,
        deployment_id=new,
        from_deployment=old,
        to_deployment=new,
        reason=reason,
        request_id=str(request_id) if request_id else None,
        instance_id=instance_id,
        details={"session_id": session_id, "caller": caller},
    )


def rebuilt_event(
    request: SessionRequest, deployment_id: str, request_id: Any, instance_id: str
) -> FailoverEvent:
    rebuilt = request.rebuilt
    assert rebuilt is not None and request.previous is not None
    return FailoverEvent(
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
        instance_id=instance_id,
        details={
            "session_id": rebuilt.session_id,
            "caller": request.caller,
            "previous_response_id": request.previous.raw_id,
            "messages": len(rebuilt.history),
        },
    )

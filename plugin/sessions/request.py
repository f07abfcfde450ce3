"""``SessionRequest``: what ``route`` learned about one client request's session.

Kept in the request's record (``litellm_failover.requests.RequestBook``) from its first pick
until its answer, so its later attempts and its success hook see what the first pick saw,
whatever shape LiteLLM's logging kwargs take.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from litellm_failover.sessions.continuity import Rebuilt, ResponseRef, current_input, parse_response_id
from litellm_failover.sessions.identity import ANONYMOUS_CALLER, SessionId, caller_of, pin_key


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
    trace_id: str | None = None  # for events: the id the request book and the other events use
    miss: bool = False  # no pin in memory when first routed
    provisional: str | None = None  # a miss's first pick, pinned until the store's pin is learned
    pinned: str | None = None  # the pin that was not honoured, if one was not
    unpinned_reason: str | None = None
    rebuild_tried: bool = False
    rebuilt: Rebuilt | None = None
    rebuilt_from: str | None = None
    caller: str = ANONYMOUS_CALLER  # whose session it is (``identity.caller_of``)

    @property
    def pin_key(self) -> str | None:
        """The key of this caller's session in the pin store, or None without a session."""
        return pin_key(self.caller, self.session.value) if self.session is not None else None

    @classmethod
    def from_kwargs(
        cls, group: str, session: SessionId | None, kwargs: Mapping[str, Any], messages: Any
    ) -> SessionRequest:
        previous = kwargs.get("previous_response_id")
        if messages is None:
            messages = kwargs.get("messages")
        return cls(
            group=group,
            session=session,
            # A copy of the list: an SDK caller appends the answer to the very list it sent,
            # before the answer is recorded (off the request path), and that turn would then
            # be recorded with its answer twice. Copying the references costs little.
            messages=list(messages) if isinstance(messages, list) else messages,
            response_input=kwargs.get("input"),
            instructions=kwargs.get("instructions"),
            previous=parse_response_id(previous) if isinstance(previous, str) and previous else None,
            store=kwargs.get("store") is not False,
            trace_id=str(kwargs["litellm_trace_id"]) if kwargs.get("litellm_trace_id") else None,
            caller=caller_of(kwargs),
        )

    def apply_rebuild(self, kwargs: dict[str, Any]) -> bool:
        """Send the rebuilt conversation instead of ``previous_response_id`` (whose holder is down).
        Idempotent: every attempt of the request starts from the client's own input."""
        if self.rebuilt is None:
            return False
        kwargs.pop("previous_response_id", None)
        kwargs["input"] = [*self.rebuilt.history, *current_input(self.response_input)]
        return True

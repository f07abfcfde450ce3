"""Turning one answered request into ``MessageRow``s and a ``SessionRow`` for the store writer.

Positions: a message's ``seq`` is its place in the conversation. A chat request carries the
whole history, so its messages are 0..n-1 and the answer is n. A Responses API turn that
continues ``previous_response_id`` starts right after the message that response was stored as.

Each session remembers (in a bounded map) how far it is already stored, so a long chat does not
resubmit its whole history every turn; after a restart or eviction the history is submitted
again and the store's ``ON CONFLICT (session_id, seq) DO NOTHING`` keeps the first copy. The
same rule means a regenerated answer (a client that rewinds and asks again) keeps the first.

Privacy rules applied here: ``store_content`` off keeps the hash and the size only; a message
over ``max_message_chars`` keeps the hash only, is marked ``truncated`` and is counted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from litellm_failover.events import MessageRow, SessionRow
from litellm_failover.sessions.content import Item, content_hash
from litellm_failover.settings import SessionSettings


class ConversationSink(Protocol):
    def submit_message(self, row: MessageRow) -> bool: ...

    # False: dropped because the buffer was full (the writer counts it).
    def submit_session(self, row: SessionRow) -> bool: ...


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """One answered request, placed in its conversation."""

    session_id: str
    model_group: str
    start_seq: int  # seq of ``request_items[0]``
    request_items: Sequence[Item]
    answer_items: Sequence[Item]
    deployment_id: str
    response_id: str | None = None
    usage: Usage = Usage()

    @property
    def answer_seq(self) -> int:
        """The seq of the last answer item (the one a response id names)."""
        return self.start_seq + len(self.request_items) + len(self.answer_items) - 1


class Recorder:
    def __init__(self, settings: SessionSettings, sink: ConversationSink, *, remembered: int) -> None:
        self.settings = settings
        self.sink = sink
        self._stored_upto: OrderedDict[str, int] = OrderedDict()  # session -> next unstored seq
        self._remembered = max(1, remembered)
        self.messages = 0
        self.dropped = 0
        self.oversized = 0
        self.turns = 0

    def message_row(
        self,
        session_id: str,
        seq: int,
        item: Item,
        *,
        deployment_id: str | None = None,
        response_id: str | None = None,
        usage: Usage | None = None,
    ) -> MessageRow:
        text = item.text
        chars = len(text)
        oversized = chars > self.settings.max_message_chars
        if oversized:
            self.oversized += 1
        keep = self.settings.store_content and not oversized
        return MessageRow(
            session_id=session_id,
            seq=seq,
            role=item.role,
            content=text if keep else None,
            content_hash=content_hash(text),
            content_chars=chars,
            deployment_id=deployment_id,
            response_id=response_id,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            truncated=oversized,
        )

    def record(self, turn: Turn, pinned: str | None) -> None:
        """Submit the turn's messages not yet stored, its answer, and one turn of the session."""
        first_new = max(turn.start_seq, self._stored_upto.get(turn.session_id, 0))
        rows = []
        for offset, item in enumerate(turn.request_items):
            seq = turn.start_seq + offset
            if seq >= first_new:
                rows.append(self.message_row(turn.session_id, seq, item))
        answer_start = turn.start_seq + len(turn.request_items)
        last = len(turn.answer_items) - 1
        for offset, item in enumerate(turn.answer_items):
            final = offset == last  # ids and token counts belong to the answer as a whole
            rows.append(
                self.message_row(
                    turn.session_id,
                    answer_start + offset,
                    item,
                    deployment_id=turn.deployment_id,
                    response_id=turn.response_id if final else None,
                    usage=turn.usage if final else None,
                )
            )
        for row in rows:
            if self.sink.submit_message(row):
                self.messages += 1
            else:
                self.dropped += 1
        self.sink.submit_session(
            SessionRow(
                session_id=turn.session_id,
                model_group=turn.model_group,
                pinned_deployment=pinned,
                turns=1,
            )
        )
        self.turns += 1
        self._remember(turn.session_id, turn.answer_seq + 1)

    def _remember(self, session_id: str, next_seq: int) -> None:
        if next_seq > self._stored_upto.get(session_id, 0):
            self._stored_upto[session_id] = next_seq
        self._stored_upto.move_to_end(session_id)
        while len(self._stored_upto) > self._remembered:
            self._stored_upto.popitem(last=False)

    def stats(self) -> dict[str, int]:
        return {
            "turns_recorded": self.turns,
            "messages_submitted": self.messages,
            "messages_dropped": self.dropped,
            "oversized_messages": self.oversized,
        }

"""Turning one answered request into ``MessageRow``s and a ``SessionRow`` for the store writer.

Positions: a message's ``seq`` is its place in the conversation. A chat request carries the
whole history, so its messages are 0..n-1 and the answer is n. A Responses API turn that
continues ``previous_response_id`` starts right after the message that response was stored as.

Branches: every message carries the chain hash of its history (``content.chain_hash``), and the
store keeps one row per (caller, session, chain hash). A history resent as it was adds nothing; a
history that differs from what is stored (an edited or regenerated turn, independent requests
sharing a session id) is recorded as a branch beside it, so what is stored is always what was
sent, and a response id names exactly one chain (the one the rebuild follows).

Each session remembers (in a bounded map) the chain hash of its last stored message, so a long
chat that continues it does not resubmit its whole history every turn; after a restart or
eviction the history is submitted again and the store's ``ON CONFLICT DO NOTHING`` keeps one copy.

Privacy rules applied here: ``store_content`` off keeps the hash and the size only; a message
over ``max_message_chars`` keeps the hash only, is marked ``truncated`` and is counted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from litellm_failover.privacy import message_text_stored
from litellm_failover.records import MessageRow, SessionRow
from litellm_failover.sessions.content import ROOT_HASH, Item, chain_hash, content_hash
from litellm_failover.sessions.identity import ANONYMOUS_CALLER
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
    caller: str = ANONYMOUS_CALLER
    parent_hash: str = ROOT_HASH  # chain hash of the message before ``start_seq``

    @property
    def answer_seq(self) -> int:
        """The seq of the last answer item (the one a response id names)."""
        return self.start_seq + len(self.request_items) + len(self.answer_items) - 1


class Recorder:
    def __init__(self, settings: SessionSettings, sink: ConversationSink, *, remembered: int) -> None:
        self.settings = settings
        self.sink = sink
        # (caller, session) -> (seq, chain hash) of its last stored message
        self._stored_tip: OrderedDict[tuple[str, str], tuple[int, str]] = OrderedDict()
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
        caller: str = ANONYMOUS_CALLER,
        parent_hash: str = ROOT_HASH,
        text_hash: str | None = None,
        deployment_id: str | None = None,
        response_id: str | None = None,
        usage: Usage | None = None,
    ) -> MessageRow:
        text = item.text
        chars = len(text)
        oversized = chars > self.settings.max_message_chars
        if oversized:
            self.oversized += 1
        keep = message_text_stored(self.settings) and not oversized
        text_hash = text_hash or content_hash(text)
        return MessageRow(
            session_id=session_id,
            seq=seq,
            role=item.role,
            content=text if keep else None,
            content_hash=text_hash,
            content_chars=chars,
            deployment_id=deployment_id,
            response_id=response_id,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            truncated=oversized,
            caller=caller,
            parent_hash=parent_hash,
            chain_hash=chain_hash(parent_hash, seq, item.role, text_hash),
        )

    def record(self, turn: Turn, pinned: str | None) -> str:
        """Submit the turn's messages not yet stored, its answer, and one turn of the session;
        returns the chain hash of the answer's last message (what its response id names)."""
        key = (turn.caller, turn.session_id)
        tip = self._stored_tip.get(key)
        rows: list[MessageRow] = []
        parent = turn.parent_hash
        seq = turn.start_seq
        for item in turn.request_items:
            text_hash = content_hash(item.text)
            mine = chain_hash(parent, seq, item.role, text_hash)
            # Already stored: this message, and so all its history, is the stored tip's.
            if tip == (seq, mine):
                rows.clear()
            else:
                rows.append(
                    self.message_row(
                        turn.session_id,
                        seq,
                        item,
                        caller=turn.caller,
                        parent_hash=parent,
                        text_hash=text_hash,
                    )
                )
            parent, seq = mine, seq + 1
        last = len(turn.answer_items) - 1
        for offset, item in enumerate(turn.answer_items):
            final = offset == last  # ids and token counts belong to the answer as a whole
            row = self.message_row(
                turn.session_id,
                seq,
                item,
                caller=turn.caller,
                parent_hash=parent,
                deployment_id=turn.deployment_id,
                response_id=turn.response_id if final else None,
                usage=turn.usage if final else None,
            )
            rows.append(row)
            parent, seq = row.chain_hash or "", seq + 1
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
                caller=turn.caller,
            )
        )
        self.turns += 1
        self._remember(key, seq - 1, parent)
        return parent

    def _remember(self, key: tuple[str, str], seq: int, tip: str) -> None:
        self._stored_tip[key] = (seq, tip)
        self._stored_tip.move_to_end(key)
        while len(self._stored_tip) > self._remembered:
            self._stored_tip.popitem(last=False)

    def stats(self) -> dict[str, int]:
        return {
            "turns_recorded": self.turns,
            "messages_submitted": self.messages,
            "messages_dropped": self.dropped,
            "oversized_messages": self.oversized,
        }

"""The writer's waiting rooms: a bounded FIFO for append-only rows, a summing map for sessions,
a latest-only map for deployment states.

They hold rows between the hot path (which must never block or raise) and the writer's
background task. Both can be fed from other threads (LiteLLM runs some callbacks in threads), so
each guards its few bookkeeping fields with a lock held only for a dict or deque operation, never
across I/O.

Why two shapes: events and messages are facts, each one kept, in order, and bounded because
memory is all that protects the proxy while the database is away. Session rows are counters:
only the sum of the turns and the latest pin matter, so rows for one (session, group) merge into
one until written. That bounds them by the number of live sessions, which a client inventing a
session id per request makes unbounded, so the map has a row bound too: a row that would add an
entry past it is dropped and counted (one that merges into a held entry is always taken).
Deployment states are
coalesced per deployment because only the latest one is worth a write.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from litellm_failover.records import DeploymentStateRow, MessageRow, SessionRow

T = TypeVar("T")

MESSAGE_BUFFER_CHARS = 64_000_000
"""Default bound on the text of buffered messages (about 64 MB of ASCII): with the default
``max_buffer`` that is 6,400 characters a message on average, and a full buffer of the longest
messages (``max_message_chars``) cannot exhaust a proxy's memory."""


def message_weight(row: MessageRow) -> int:
    """A message's weight in the message queue's bound: the characters of its text."""
    return len(row.content) if isinstance(row.content, str) else 0


class RowQueue(Generic[T]):
    """A FIFO bounded in rows and, optionally, in total weight (message text: characters).

    ``accepted`` / ``removed`` only grow, so the writer's ``flush`` can wait for "everything
    accepted before now" without holding on to the rows themselves.
    """

    def __init__(
        self, max_rows: int, max_weight: int | None = None, weigh: Callable[[T], int] | None = None
    ) -> None:
        self.max_rows = max_rows
        self.max_weight = max_weight
        self._weigh = weigh
        self._rows: deque[tuple[T, int]] = deque()
        self._lock = threading.Lock()
        self.weight = 0
        self.accepted = 0
        self.removed = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._rows)

    def offer(self, row: T) -> bool:
        """Append, or count a drop and return False when either bound would be passed."""
        weight = self._weigh(row) if self._weigh is not None else 0
        with self._lock:
            over_weight = self.max_weight is not None and self.weight + weight > self.max_weight
            # An empty queue takes any one row, so a single oversized row cannot wedge the bound.
            if len(self._rows) >= self.max_rows or (over_weight and self._rows):
                self.dropped += 1
                return False
            self._rows.append((row, weight))
            self.weight += weight
            self.accepted += 1
            return True

    def refuse(self) -> None:
        """Count a row turned away before ``offer`` (the writer is stopped)."""
        with self._lock:
            self.dropped += 1

    def head(self, count: int) -> list[T]:
        """The oldest ``count`` rows, left in place until ``pop`` (a failed write keeps them)."""
        with self._lock:
            return [row for row, _ in itertools.islice(self._rows, count)]

    def pop(self, count: int) -> None:
        with self._lock:
            for _ in range(min(count, len(self._rows))):
                _, weight = self._rows.popleft()
                self.weight -= weight
                self.removed += 1


@dataclass(slots=True)
class PendingSession:
    """A session's unwritten turns: ``row.turns`` is the sum, ``created_at`` the first row's time."""

    created_at: datetime
    row: SessionRow


def merge_sessions(older: PendingSession, newer: PendingSession) -> PendingSession:
    """Turns add; the pin and ``updated_at`` come from the later row by time, as in the upsert."""
    first, last = (older, newer) if newer.row.updated_at >= older.row.updated_at else (newer, older)
    row = SessionRow(
        session_id=last.row.session_id,
        model_group=last.row.model_group,
        pinned_deployment=last.row.pinned_deployment or first.row.pinned_deployment,
        turns=older.row.turns + newer.row.turns,
        updated_at=last.row.updated_at,
        caller=last.row.caller,
    )
    return PendingSession(created_at=min(older.created_at, newer.created_at), row=row)


class SessionBuffer:
    """Unwritten session rows, one per (session_id, caller, model_group), turns summed.

    ``take`` hands the writer everything and starts an empty map, so rows submitted during the
    write are neither lost nor counted twice; ``settle`` then either marks them persisted or,
    after a failed write, merges them back in front of what arrived meanwhile. Rows being
    written still count in ``len()``, so stats never show an outage's rows as gone. ``seq``
    counts submissions and ``done`` is the highest ``seq`` known persisted (what ``flush`` waits on).
    """

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._rows: dict[tuple[str, str, str], PendingSession] = {}
        self._in_flight: list[PendingSession] = []
        self._lock = threading.Lock()
        self.seq = 0
        self.done = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._rows) + len(self._in_flight)

    def add(self, row: SessionRow) -> bool:
        """Merge or hold ``row``; False (counted in ``dropped``) when it needs a new entry and
        ``max_rows`` entries, those being written included, are held already."""
        entry = PendingSession(created_at=row.updated_at, row=row)
        key = (row.session_id, row.caller, row.model_group)
        with self._lock:
            current = self._rows.get(key)
            if current is None and len(self._rows) + len(self._in_flight) >= self.max_rows:
                self.dropped += 1
                return False
            self.seq += 1
            self._rows[key] = entry if current is None else merge_sessions(current, entry)
            return True

    def take(self) -> tuple[int, list[PendingSession]]:
        """Everything unwritten, and the ``seq`` it covers; one ``take`` at a time."""
        with self._lock:
            taken, self._rows = self._rows, {}
            self._in_flight = list(taken.values())
            return self.seq, self._in_flight

    def settle(self, seq: int, *, written: bool) -> None:
        """After the write of what ``take`` returned: persisted up to ``seq``, or put back."""
        with self._lock:
            taken, self._in_flight = self._in_flight, []
            if written:
                self.done = max(self.done, seq)
                return
            merged: dict[tuple[str, str, str], PendingSession] = {}
            for entry in taken:
                merged[(entry.row.session_id, entry.row.caller, entry.row.model_group)] = entry
            for key, entry in self._rows.items():
                older = merged.get(key)
                merged[key] = entry if older is None else merge_sessions(older, entry)
            self._rows = merged


class StateBuffer:
    """Unwritten deployment states, the latest per deployment: a newer one replaces it unwritten.

    ``seq`` counts submissions and ``done`` is the highest ``seq`` known persisted (what
    ``flush`` waits on). Single dict operations only, so no lock: each is atomic under the GIL.
    """

    def __init__(self) -> None:
        self._rows: dict[str, tuple[int, DeploymentStateRow]] = {}
        self.seq = 0
        self.done = 0

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: DeploymentStateRow) -> None:
        self.seq += 1
        self._rows[row.deployment_id] = (self.seq, row)

    def take(self) -> tuple[int, dict[str, tuple[int, DeploymentStateRow]]]:
        """What is unwritten now (left in place until ``settle``), and the ``seq`` it covers."""
        return self.seq, dict(self._rows)

    def settle(self, seq: int, taken: dict[str, tuple[int, DeploymentStateRow]]) -> None:
        """After a successful write of ``taken``: drop the entries no newer state replaced."""
        for key, entry in taken.items():
            if self._rows.get(key) is entry:
                del self._rows[key]
        self.done = seq

"""Session pins: which deployment each session sticks to, per model group, in memory.

The hot path reads a pin with one dict lookup; nothing here does I/O. The store is bounded
(``sessions.max_pins``): the least recently used pin goes first, and a session whose pin was
dropped simply routes normally on its next turn and is pinned again.

Local pin changes are told to listeners (a fleet publishes them to the other replicas); pins
that arrive from elsewhere go through ``apply_remote``, which tells no one, so a pin never
echoes back and forth between replicas.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

logger = logging.getLogger("litellm_failover")

PinListener = Callable[[str, str, str], None]
"""Called as ``listener(session_id, model_group, deployment_id)`` after a local pin change."""


class PinStore:
    def __init__(self, max_pins: int) -> None:
        if max_pins < 1:
            raise ValueError(f"max_pins must be at least 1, got {max_pins}")
        self._max = max_pins
        self._pins: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.listeners: list[PinListener] = []
        self.evicted = 0
        self.changes = 0
        self.remote_applied = 0

    def __len__(self) -> int:
        return len(self._pins)

    def get(self, session_id: str, model_group: str) -> str | None:
        """The pinned deployment, marking the pin recently used; O(1)."""
        key = (session_id, model_group)
        deployment = self._pins.get(key)
        if deployment is not None:
            self._pins.move_to_end(key)
        return deployment

    def peek(self, session_id: str, model_group: str) -> str | None:
        """The pinned deployment without touching its recency (status, background checks)."""
        return self._pins.get((session_id, model_group))

    def pin(self, session_id: str, model_group: str, deployment_id: str) -> str | None:
        """Pin locally; returns the previous pin. Listeners hear of it only if it changed."""
        previous = self._set(session_id, model_group, deployment_id)
        if previous != deployment_id:
            self.changes += 1
            for listener in self.listeners:
                try:
                    listener(session_id, model_group, deployment_id)
                except Exception:  # a broken listener (a fleet without Redis) must not break routing
                    logger.exception("session pin listener failed")
        return previous

    def apply_remote(self, session_id: str, model_group: str, deployment_id: str) -> None:
        """A pin another replica (or the store) decided: applied silently, never re-published."""
        self._set(session_id, model_group, deployment_id)
        self.remote_applied += 1

    def add_listener(self, listener: PinListener) -> None:
        self.listeners.append(listener)

    def forget(self, session_id: str, model_group: str) -> None:
        self._pins.pop((session_id, model_group), None)

    def pinned_to(self, model_group: str, deployment_id: str, limit: int) -> list[str]:
        """Up to ``limit`` sessions of the group pinned to the deployment, most recent first.

        A scan from the recent end of the LRU order: meant for background work after a failover,
        never for the request path.
        """
        found: list[str] = []
        for (session_id, group), pinned in reversed(self._pins.items()):
            if len(found) >= limit:
                break
            if group == model_group and pinned == deployment_id:
                found.append(session_id)
        return found

    def _set(self, session_id: str, model_group: str, deployment_id: str) -> str | None:
        key = (session_id, model_group)
        previous = self._pins.get(key)
        self._pins[key] = deployment_id
        self._pins.move_to_end(key)
        if len(self._pins) > self._max:
            self._pins.popitem(last=False)
            self.evicted += 1
        return previous

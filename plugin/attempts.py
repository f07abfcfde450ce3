"""Which deployments each in-flight request has tried, so a retry never lands on one that failed it.

A request is keyed by ``request_key``: ``litellm_call_id`` where the pick's kwargs carry it (the
proxy), else ``litellm_trace_id`` (the Router); LiteLLM keeps both across every attempt of a
client request (retries and fallbacks). Hooks that see both ask ``resolve`` which one the ledger
knows: in the proxy the log hooks' trace id differs from the one routing saw. Entries are
forgotten on success, or after ``ttl_s``, and the table is bounded so a flood of abandoned
requests cannot grow it without limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RequestAttempts:
    first_pick: str | None = None
    last_pick: str | None = None
    picked_at: float = 0.0
    failed: set[str] = field(default_factory=set)
    created_at: float = 0.0


def request_key(kwargs: Mapping[str, Any]) -> str | None:
    """What routing keys a request by (see the module docstring)."""
    key = kwargs.get("litellm_call_id") or kwargs.get("litellm_trace_id")
    return str(key) if key else None


class AttemptLedger:
    def __init__(self, *, ttl_s: float = 600.0, max_requests: int = 100_000) -> None:
        self._ttl_s = ttl_s
        self._max = max_requests
        self._requests: OrderedDict[str, RequestAttempts] = OrderedDict()

    def resolve(self, keys: tuple[str, ...]) -> str | None:
        """The first of a hook's candidate request ids that the ledger knows, else the first."""
        for key in keys:
            if key in self._requests:
                return key
        return keys[0] if keys else None

    def knows_any(self, keys: tuple[str, ...]) -> bool:
        """Whether this ledger routed the request: LiteLLM hands every Router's outcomes to every
        callback, so a second Router's plugin in the same process must not count them. A request
        with no id at all cannot be told apart and counts."""
        return not keys or any(key in self._requests for key in keys)

    def excluded(self, request_id: str | None) -> frozenset[str]:
        if request_id is None:
            return frozenset()
        entry = self._requests.get(request_id)
        return frozenset(entry.failed) if entry and entry.failed else frozenset()

    def record_pick(self, request_id: str | None, deployment_id: str, now: float | None = None) -> None:
        if request_id is None:
            return
        now = time.monotonic() if now is None else now
        entry = self._requests.get(request_id)
        if entry is None:
            entry = RequestAttempts(first_pick=deployment_id, created_at=now)
            self._requests[request_id] = entry
            self._evict(now)
        entry.last_pick = deployment_id
        entry.picked_at = now

    def record_failure(self, request_id: str | None, deployment_id: str) -> bool:
        """Remember the failure; False if it was already known (LiteLLM may report it twice)."""
        if request_id is None:
            return True
        entry = self._requests.get(request_id)
        if entry is None:
            entry = RequestAttempts(created_at=time.monotonic())
            self._requests[request_id] = entry
        if deployment_id in entry.failed:
            return False
        entry.failed.add(deployment_id)
        return True

    def get(self, request_id: str | None) -> RequestAttempts | None:
        return None if request_id is None else self._requests.get(request_id)

    def finish(self, request_id: str | None) -> RequestAttempts | None:
        return None if request_id is None else self._requests.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._requests)

    def _evict(self, now: float) -> None:
        cutoff = now - self._ttl_s
        while self._requests:
            oldest_id, oldest = next(iter(self._requests.items()))
            if oldest.created_at >= cutoff and len(self._requests) <= self._max:
                break
            del self._requests[oldest_id]

"""Where each Responses API answer was stored, for the caller that made it.

A request continuing ``previous_response_id`` needs the (session, seq, chain hash) its previous
answer was stored at: to rebuild that conversation elsewhere, and to record its own turn right
after it, on the same branch. Answers this process recorded are remembered (bounded, oldest
forgotten first); others are looked up in the store. Either way only among the request's own
caller's sessions: a response id another caller holds is "not found", never its conversation.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.sessions.request import SessionRequest

PLACE_TIMEOUT_S = 2.0

Where = tuple[str, int, str]  # (session id, seq, chain hash)


class ResponseIndex:
    def __init__(self, engine: Callable[[], AsyncEngine | None], kept: int) -> None:
        self._engine = engine
        self._kept = max(1, kept)
        self._known: OrderedDict[str, tuple[str, Where]] = OrderedDict()  # raw id -> (caller, where)

    def remember(self, raw_id: str, caller: str, where: Where) -> None:
        self._known[raw_id] = (caller, where)
        self._known.move_to_end(raw_id)
        while len(self._known) > self._kept:
            self._known.popitem(last=False)

    async def locate(self, raw_id: str, caller: str) -> Where | None:
        known = self._known.get(raw_id)
        if known is not None and known[0] == caller:
            return known[1]
        engine = self._engine()
        if engine is None:
            return None
        from litellm_failover.store.conversations import find_response

        return await find_response(engine, raw_id, caller=caller)

    def locator(self, caller: str) -> Callable[[str], Awaitable[Where | None]]:
        return lambda raw_id: self.locate(raw_id, caller)

    async def place(self, request: SessionRequest) -> Where | None:
        """Where the request's previous answer is stored (None: unknown, or the store is away)."""
        assert request.previous is not None
        if request.rebuilt is not None:
            return request.rebuilt.session_id, request.rebuilt.seq, request.rebuilt.chain_hash
        try:
            async with asyncio.timeout(PLACE_TIMEOUT_S):
                return await self.locate(request.previous.raw_id, request.caller)
        except Exception:
            return None

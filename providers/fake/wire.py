"""What the fake vLLM's endpoints share on the wire: OpenAI's error body and paced SSE streams."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

_FLUSH_WAIT_S = 1.0
_FLUSH_POLL_S = 0.005

# Asked before each streamed piece with the count already sent: True means the node just cut
# the stream (the ``drop_midstream`` fault), so the writer stops without the closing chunks.
Dropped = Callable[[int], Awaitable[bool]]


def error_body(message: str, status: int, *, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape, which both the SDK and LiteLLM parse into a typed exception."""
    kind = {400: "BadRequestError", 404: "NotFoundError", 503: "ServiceUnavailableError"}
    return {
        "error": {
            "message": message,
            "type": kind.get(status, "InternalServerError"),
            "param": param,
            "code": status,
        }
    }


class Pacer:
    """Spaces chunks at a token rate against a fixed start, so slow writes don't add up to drift."""

    def __init__(self, tokens_per_s: float) -> None:
        self._interval = 1.0 / tokens_per_s if tokens_per_s > 0 else 0.0
        self._start = asyncio.get_running_loop().time()

    async def until(self, count: int) -> None:
        """Wait until ``count`` tokens' worth of time has passed since the start."""
        if self._interval <= 0:
            return
        delay = self._start + count * self._interval - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)


async def event_stream(request: web.Request) -> web.StreamResponse:
    """A prepared ``text/event-stream`` response, headers sent, ready for ``write``."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    return response


async def flushed(transport: asyncio.BaseTransport) -> None:
    """Let already written chunks leave before an abort discards the transport's buffer.

    Polled, because asyncio exposes no awaitable for "write buffer empty"; bounded by
    ``_FLUSH_WAIT_S`` so a client that stopped reading can't hold the abort back.
    """
    buffered = getattr(transport, "get_write_buffer_size", lambda: 0)
    for _ in range(int(_FLUSH_WAIT_S / _FLUSH_POLL_S)):
        if buffered() == 0:
            return
        await asyncio.sleep(_FLUSH_POLL_S)


def json_error(message: str, status: int, *, param: str | None = None) -> web.Response:
    """``error_body`` as a JSON response with that status."""
    return web.json_response(error_body(message, status, param=param), status=status)

"""Find the web server that owns the proxy's SIGTERM handler (to flush the plugin at its shutdown).

On 1.108.7 the handler is uvicorn's own bound ``Server.handle_exit``. 1.110's proxy wraps it for
its graceful-shutdown clock (``GracefulShutdownManager.capture_sigterm``): a plain function that
calls the previous handler, which it holds in its closure. So the owner is looked for on the
handler, then on the handlers its closure holds, a few levels deep.
"""

from __future__ import annotations

import inspect
from typing import Any

MAX_WRAPPERS = 4


def server_of(handler: Any) -> Any | None:
    """The object with a coroutine ``shutdown`` whose method is ``handler``, or is a handler that
    ``handler`` wraps (searched breadth first: a closure also holds clocks and classes)."""
    level = [handler]
    for _ in range(MAX_WRAPPERS):
        for candidate in level:
            owner = getattr(candidate, "__self__", None)
            if owner is not None and inspect.iscoroutinefunction(getattr(owner, "shutdown", None)):
                return owner
        level = [
            cell.cell_contents
            for candidate in level
            for cell in getattr(candidate, "__closure__", None) or ()
            if _filled(cell) and callable(cell.cell_contents)
        ]
        if not level:
            return None
    return None


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True

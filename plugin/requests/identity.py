"""The one rule for which id names a client request, on every path that needs to know.

LiteLLM gives every client request two ids and keeps both across all its attempts (retries and
fallbacks): ``litellm_call_id`` and ``litellm_trace_id``. Which one the pick sees differs:

- The proxy puts ``litellm_call_id`` into the kwargs the pick sees; the log hooks' trace id is
  not the one routing saw there. Routing keys the request by the call id.
- The Python Router has no call id when it picks (it appears only later, in the log hooks), but
  its ``litellm_trace_id`` is the same throughout. Routing keys the request by the trace id.

So ``route_key`` (the pick) is the call id where the kwargs carry one, else the trace id; and
``hook_keys`` (the outcome hooks, which may carry both) lists both, call id first, and the request
book resolves them to whichever it knows (``RequestBook.resolve``). A request with neither id
cannot be matched to its outcomes and is not tracked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def route_key(kwargs: Mapping[str, Any]) -> str | None:
    """The id routing files a request under: ``litellm_call_id``, else ``litellm_trace_id``."""
    key = kwargs.get("litellm_call_id") or kwargs.get("litellm_trace_id")
    return str(key) if key else None


def hook_keys(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The ids that may name an outcome hook's request, most specific first (see the module)."""
    keys = (data.get("litellm_call_id"), data.get("litellm_trace_id"))
    return tuple(str(key) for key in keys if key)

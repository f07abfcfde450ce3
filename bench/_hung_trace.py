"""Per-request traces for the hung-primary bench (``bench/_hung_primary.py``).

Each bench request carries its own ``litellm_trace_id`` (``hp-<index>``): LiteLLM keeps it across
the request's retries, the plugin files the request under it (a Python Router's picks have no call
id), so LiteLLM's per-attempt log hooks and the plugin's ``request_rescued`` events can be joined
to the request without reaching into either.

- ``AttemptLog`` (a LiteLLM ``CustomLogger``): every attempt's deployment, start and end (LiteLLM's
  own attempt times) and whether it failed, in the order LiteLLM reported them: the request's
  *deployment path*.
- ``PluginLog`` (a ``FailoverCore`` listener): the plugin's ``state_change`` into ``unhealthy``
  for the primary, with the event's own timestamp (the ``created_at`` the events table stores), so
  detection is timed from the plugin's decision, not by a poller the busy event loop would starve;
  and every ``request_rescued`` event, by request.

All times are wall-clock seconds (``time.time()``), as LiteLLM's hook times and the events'
timestamps are; the bench reports them relative to the fault.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TRACE_PREFIX = "hp-"


def trace_id(index: int) -> str:
    return f"{TRACE_PREFIX}{index}"


def _seconds(moment: Any) -> float | None:
    return moment.timestamp() if isinstance(moment, datetime) else None


@dataclass(slots=True)
class AttemptRecord:
    deployment: str
    started: float | None
    ended: float | None
    failed: bool
    error: str = ""


def attempt_log_class() -> type:
    """``AttemptLog``, built on LiteLLM's ``CustomLogger`` (imported lazily: ``_common`` must set
    the environment before LiteLLM is imported)."""
    from litellm.integrations.custom_logger import CustomLogger

    class AttemptLog(CustomLogger):
        def __init__(self) -> None:
            super().__init__()
            self.attempts: dict[str, list[AttemptRecord]] = defaultdict(list)

        def _record(self, kwargs: dict, start: Any, end: Any, failed: bool) -> None:
            key = kwargs.get("litellm_trace_id")
            if not isinstance(key, str) or not key.startswith(TRACE_PREFIX):
                return  # not a bench request (or another Router's)
            info = (kwargs.get("litellm_params") or {}).get("model_info") or kwargs.get("model_info") or {}
            error = kwargs.get("exception")
            self.attempts[key].append(
                AttemptRecord(
                    deployment=str(info.get("id", "?")),
                    started=_seconds(start),
                    ended=_seconds(end),
                    failed=failed,
                    error=type(error).__name__ if isinstance(error, BaseException) else "",
                )
            )

        async def async_log_success_event(
            self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any
        ):
            self._record(kwargs, start_time, end_time, failed=False)

        async def async_log_failure_event(
            self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any
        ):
            self._record(kwargs, start_time, end_time, failed=True)

    return AttemptLog


@dataclass(slots=True)
class PluginLog:
    """``FailoverCore`` listener: the primary's ejection and the rescues, with their timestamps."""

    primary: str
    ejected_at: float | None = None
    ejection: dict[str, Any] = field(default_factory=dict)
    rescued: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def __call__(self, event: Any) -> None:
        details = event.details or {}
        if (
            event.event_type == "state_change"
            and event.deployment_id == self.primary
            and details.get("to_state") == "unhealthy"
            and self.ejected_at is None
        ):
            self.ejected_at = event.created_at.timestamp()
            self.ejection = {"reason": event.reason, "source": details.get("source"), **details}
        elif event.event_type == "request_rescued" and event.request_id:
            self.rescued[str(event.request_id)].append(
                {
                    "at": event.created_at.timestamp(),
                    "from": event.deployment_id,
                    "cause": details.get("cause"),
                    "waited_ms": details.get("waited_ms"),
                }
            )

"""The LiteLLM-facing side: a ``CustomLogger`` whose hooks route and observe every attempt.

``async_filter_deployments`` runs inside LiteLLM's Router for every pick, retries and fallbacks
included, in the proxy and the SDK alike. It returns the one deployment the current routing table
picks, so LiteLLM's own strategy has nothing left to choose. The per-attempt failure hook and the
request-level log hooks report outcomes back. Nothing here waits on I/O, with one exception: a
Responses API request whose ``previous_response_id`` lives on a dead deployment waits (bounded)
for its conversation to be read back from the store, because it would fail otherwise.

Session ids are checked in the proxy's ``async_pre_call_hook`` (a bad one is a 400 before any
routing) and again in ``route`` (the Router path, which has no pre-call hook).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from litellm.integrations.custom_logger import CustomLogger

from litellm_failover.attribution import failed_deployment
from litellm_failover.chaos.effects import before_attempt
from litellm_failover.classify import classify
from litellm_failover.litellm_compat.checks import probing
from litellm_failover.outlier import Outcome
from litellm_failover.requests.identity import hook_keys

if TYPE_CHECKING:
    from litellm_failover.chaos import ChaosInjector

logger = logging.getLogger("litellm_failover")

_MOCKABLE_CALLS = frozenset({"acompletion", "completion"})
"""Call types whose ``mock_response`` LiteLLM raises from inside the call when it is an exception."""


def _deployment_id(data: Mapping[str, Any]) -> str | None:
    """LiteLLM puts the attempt's ``model_info`` at the top level of the attempt kwargs, and under
    ``litellm_params`` (logging kwargs) or ``metadata`` elsewhere; accept each."""
    for holder in (data, data.get("litellm_params") or {}, data.get("metadata") or {}):
        info = holder.get("model_info") if isinstance(holder, Mapping) else None
        if isinstance(info, Mapping) and info.get("id"):
            return str(info["id"])
    return None


_TYPED: dict[type, bool] = {}
"""Per chunk class, whether it has a ``type`` field (the Responses API's stream events do, chat
chunks do not): a missed attribute on a pydantic chunk costs microseconds, paid on every chunk."""


def _completed(chunk: Any) -> bool:
    """Whether a streamed chunk is a Responses API ``response.completed`` event."""
    cls = type(chunk)
    typed = _TYPED.get(cls)
    if typed is None:
        typed = _TYPED[cls] = "type" in (getattr(cls, "model_fields", None) or ())
    return typed and getattr(chunk, "type", None) == "response.completed"


def _stream_keys(data: Mapping[str, Any]) -> tuple[str, ...]:
    """A Responses API stream's chunk hook gets the request as sent (no ids at its top level);
    LiteLLM's ids for it are under ``litellm_params``."""
    keys = hook_keys(data)
    params = data.get("litellm_params")
    return keys if keys or not isinstance(params, Mapping) else hook_keys(params)


def _seconds(start: Any, end: Any) -> float | None:
    if isinstance(start, datetime) and isinstance(end, datetime):
        return max(0.0, (end - start).total_seconds())
    if isinstance(start, int | float) and isinstance(end, int | float):
        return max(0.0, float(end) - float(start))
    return None


class SessionCheck(Protocol):
    def check(self, kwargs: Mapping[str, Any]) -> Any: ...


class ProxyStreams(Protocol):
    def proxy_stream(self, response: Any, request_data: Mapping[str, Any]) -> AsyncIterator[Any]: ...

    def ask_running_usage(self, deployment_id: str | None, kwargs: dict[str, Any]) -> bool: ...


class HandlerHost(Protocol):
    """What the handler calls: the request path's entry points (``litellm_failover.requests``),
    the session id check, fault injection and the proxy's resuming streams. ``FailoverPlugin``
    is one."""

    @property
    def sessions(self) -> SessionCheck: ...

    @property
    def chaos(self) -> ChaosInjector: ...

    @property
    def streams(self) -> ProxyStreams: ...

    def route(
        self, group: str, healthy: list[dict], request_kwargs: Mapping[str, Any], messages: Any = None
    ) -> list[dict]: ...

    async def prepare_stateful(
        self, group: str, healthy: list[dict], request_kwargs: dict[str, Any], messages: Any = None
    ) -> None: ...

    def apply_rebuild(self, kwargs: dict[str, Any]) -> bool: ...

    def attempt_failed(
        self, deployment_id: str, outcome: Outcome, request_keys: tuple[str, ...], error: str
    ) -> None: ...

    def request_succeeded(
        self, deployment_id: str, latency_s: float | None, request_keys: tuple[str, ...]
    ) -> None: ...

    def answer_arrived(self, request_keys: tuple[str, ...], call_type: str, response: Any) -> None: ...

    async def session_answered(
        self, deployment_id: str, kwargs: Mapping[str, Any], response: Any
    ) -> None: ...


class FailoverHandler(CustomLogger):
    """Stateless glue: all state lives in the attached host (the ``FailoverPlugin``)."""

    def __init__(self) -> None:
        super().__init__()
        self.plugin: HandlerHost | None = None
        # LiteLLM de-duplicates callbacks by class name and public scalar attributes: without a
        # distinct value here a second handler (a second Router in one process) would silently
        # never be promoted into LiteLLM's success and failure callback lists.
        self.handler_id = uuid.uuid4().hex

    # -- routing (hot path) ---------------------------------------------------------------

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list,
        messages: Any,
        request_kwargs: dict | None = None,
        parent_otel_span: Any = None,
    ) -> list[dict]:
        plugin = self.plugin
        if plugin is None or not healthy_deployments or probing():
            return healthy_deployments
        kwargs = request_kwargs if request_kwargs is not None else {}
        if kwargs.get("previous_response_id"):
            await plugin.prepare_stateful(model, healthy_deployments, kwargs, messages)
        return plugin.route(model, healthy_deployments, kwargs, messages)

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any
    ) -> Any:
        """Proxy only: refuse a bad session id with a 400 naming the problem, before routing."""
        plugin = self.plugin
        if plugin is None:
            return data  # not attached yet: ``route`` checks the id instead
        from litellm_failover.sessions import SessionIdError

        try:
            plugin.sessions.check(data)
        except SessionIdError as exc:
            from fastapi import HTTPException

            raise HTTPException(status_code=400, detail=str(exc)) from None
        return data

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict | None:
        """Fault injection (``chaos inject``): runs per attempt once its deployment is picked, in
        the proxy and the Router. A chat completion's injected error is raised from inside
        LiteLLM's call (``mock_response``), so LiteLLM's per-attempt failure hook, its retries
        and the plugin's outlier detection see an ordinary failed attempt; other calls, which
        take no ``mock_response``, fail here, reported to the plugin first. With no fault
        active this is one attribute read.

        A stream to an engine that can count its tokens as it goes asks for that count here, once
        the deployment is known (``StreamResumer.ask_running_usage``): a continuation after a
        break needs the tokens generated, not the chunks sent. A Responses API request whose
        conversation was rebuilt from the store (its holder is down) gets it here, in the
        attempt's own kwargs (``litellm_compat``: 1.110's routing hook sees a copy of the request)."""
        plugin = self.plugin
        if plugin is None:
            return None
        # A chat stream (``messages``; the Responses API has no such option) may ask to count.
        streamed = kwargs.get("stream") is True and "messages" in kwargs
        counting = streamed and plugin.streams.ask_running_usage(_deployment_id(kwargs), kwargs)
        rebuilt = "previous_response_id" in kwargs and plugin.apply_rebuild(kwargs)
        changed = kwargs if counting or rebuilt else None
        if not plugin.chaos.armed:
            return changed
        deployment_id = _deployment_id(kwargs)
        if deployment_id is None:
            return changed
        error = await before_attempt(plugin.chaos, deployment_id, str(kwargs.get("model") or ""))
        if error is None:
            return changed
        if getattr(call_type, "value", call_type) in _MOCKABLE_CALLS:
            kwargs["mock_response"] = error
            return kwargs
        plugin.attempt_failed(deployment_id, classify(error), hook_keys(kwargs), str(error))
        raise error

    # -- outcomes -------------------------------------------------------------------------

    async def async_post_call_failure_deployment_hook(
        self,
        request_data: Mapping[str, object],
        exception: Exception,
        call_type: Any,
        fallback_depth: int | None = None,
    ) -> None:
        plugin = self.plugin
        deployment_id = _deployment_id(request_data)
        if plugin is None or deployment_id is None:
            return
        request_id = hook_keys(request_data)
        logger.debug(
            "attempt failed on %s (request %s): %s", deployment_id, request_id, type(exception).__name__
        )
        plugin.attempt_failed(deployment_id, classify(exception), request_id, str(exception))

    async def async_post_call_success_deployment_hook(
        self, request_data: dict, response: Any, call_type: Any
    ) -> Any:
        """A deployment answered (a non-streamed answer; a Responses API stream's completed one),
        before LiteLLM logs it. With LiteLLM's ``turn_off_message_logging`` on, the answer the
        log hooks get has its text replaced by a placeholder: the request path keeps the real
        one's items for the session's record (only while a session waits for it). Returns None:
        the response goes on unchanged. A chat stream's answer comes from its resuming stream."""
        plugin = self.plugin
        if plugin is not None and response is not None:
            kind = str(getattr(call_type, "value", call_type))
            plugin.answer_arrived(hook_keys(request_data), kind, response)
        return None

    async def async_post_call_streaming_deployment_hook(
        self, request_data: dict, response_chunk: Any, call_type: Any
    ) -> Any:
        """Every streamed chunk, before the client gets it. A Responses API stream's
        ``response.completed`` event carries its whole answer, and passes here before LiteLLM's
        log of it runs (LiteLLM's own success hook for it runs beside that log, not before it):
        kept as above. Any other chunk costs a dictionary lookup. Returns None: chunks go on
        unchanged."""
        plugin = self.plugin
        if plugin is not None and _completed(response_chunk):
            response = getattr(response_chunk, "response", None)
            if response is not None:
                plugin.answer_arrived(_stream_keys(request_data), "aresponses", response)
        return None

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any):
        plugin = self.plugin
        deployment_id = _deployment_id(kwargs)
        if plugin is None or deployment_id is None:
            return
        # For a stream, time to first token is the latency that says how loaded a node is; the
        # whole generation's length says more about the answer than about the node.
        first_token = kwargs.get("completion_start_time") if kwargs.get("stream") else None
        latency = _seconds(start_time, first_token or end_time)
        request_id = hook_keys(kwargs)
        plugin.request_succeeded(deployment_id, latency, request_id)
        # LiteLLM calls this once per request with the final answer (for a stream, the assembled
        # one after the last chunk), from a logging task: the client already has its answer.
        await plugin.session_answered(deployment_id, kwargs, response_obj)

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any):
        """The request-level failure: for a stream cut after it started this is the only signal
        (LiteLLM raises it from the stream iterator, outside the per-attempt hooks)."""
        plugin = self.plugin
        deployment_id = _deployment_id(kwargs)
        if plugin is None or deployment_id is None:
            return
        exception = kwargs.get("exception")
        if not isinstance(exception, BaseException):
            return
        request_id = hook_keys(kwargs)
        # The details name the request's latest attempt, which may have begun after this one
        # failed (litellm_failover.attribution): the exception's own URL says where it failed.
        deployment_id = failed_deployment(deployment_id, exception, getattr(plugin, "router", None))
        logger.debug(
            "request failed on %s (request %s): %s", deployment_id, request_id, type(exception).__name__
        )
        outcome = classify(exception, streaming_started=bool(kwargs.get("stream")))
        # LiteLLM logs this per failed attempt too, not only at the end: the request book counts each
        # (request, deployment) failure once, whichever hook reports it first.
        plugin.attempt_failed(deployment_id, outcome, request_id, str(exception))

    # -- streams (proxy) ------------------------------------------------------------------

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict
    ) -> AsyncGenerator[Any, None]:
        """Proxy only: the client's chunks go through a resuming stream, so a stream that breaks
        continues on another deployment (``litellm_failover.streams``). LiteLLM runs this hook
        only for a class that defines it itself: ``ProxyFailoverHandler`` names it again."""
        plugin = self.plugin
        if plugin is None:
            async for chunk in response:
                yield chunk
            return
        stream = plugin.streams.proxy_stream(response, request_data)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()

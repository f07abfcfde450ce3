"""What an injected fault does to one attempt, made to look like the real thing to LiteLLM and to
the plugin, so a drill exercises the same paths an outage would.

- ``error``: the attempt fails with the LiteLLM exception of that HTTP status, raised from inside
  LiteLLM's call (``mock_response`` set to the exception): LiteLLM's per-attempt failure hook,
  its retry and the plugin's outlier detection all see an ordinary failed attempt, and no request
  reaches the deployment (as Envoy's abort filter never reaches the upstream).
- ``latency``: the attempt waits ``delay_s`` before it is sent.
- ``stream_cut``: the deployment's stream ends after ``after_chunks`` chunks of text with the
  error a dropped connection raises, so the plugin's stream resumer continues it elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import litellm

if TYPE_CHECKING:
    from litellm_failover.chaos.faults import Fault
    from litellm_failover.chaos.injector import ChaosInjector

_PROVIDER = "litellm_failover.chaos"
_BY_STATUS: dict[int, type[Exception]] = {
    400: litellm.BadRequestError,
    401: litellm.AuthenticationError,
    404: litellm.NotFoundError,
    408: litellm.Timeout,
    429: litellm.RateLimitError,
    500: litellm.InternalServerError,
    502: litellm.BadGatewayError,
    503: litellm.ServiceUnavailableError,
}


def error_for(fault: Fault, model: str) -> Exception:
    """The exception LiteLLM itself raises for an HTTP ``fault.status`` from a deployment."""
    status = fault.status or 503
    message = f"chaos: injected error {status} on {fault.deployment_id} (fault {fault.fault_id})"
    cls = _BY_STATUS.get(status)
    if cls is None:  # e.g. 403, 422, 504: LiteLLM's generic error with that status
        return litellm.APIError(status_code=status, message=message, llm_provider=_PROVIDER, model=model)
    return cls(message=message, llm_provider=_PROVIDER, model=model)  # type: ignore[call-arg]


async def before_attempt(injector: ChaosInjector, deployment_id: str, model: str) -> Exception | None:
    """Latency first (awaited here), then the error to fail the attempt with, if one is drawn:
    the order of Envoy's fault filter (delay, then abort)."""
    delay = injector.draw(deployment_id, "latency")
    if delay is not None and delay.delay_s:
        await asyncio.sleep(delay.delay_s)  # the injected latency itself
    error = injector.draw(deployment_id, "error")
    return error_for(error, model) if error is not None else None


def stream_error(fault: Fault, sent: int) -> Exception:
    return litellm.APIConnectionError(
        message=f"chaos: peer closed connection after {sent} chunks on {fault.deployment_id} "
        f"(injected stream_cut, fault {fault.fault_id})",
        llm_provider=_PROVIDER,
        model="",
    )


async def cut_after(iterator: Any, fault: Fault) -> AsyncIterator[Any]:
    """``iterator``'s chunks until ``fault.after_chunks`` of them carried text, then the error a
    dropped connection raises (the caller closes the upstream, as it would a dead one)."""
    sent = 0
    if fault.after_chunks == 0:
        raise stream_error(fault, sent)
    while True:
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        yield chunk
        if _has_text(chunk):
            sent += 1
            if sent >= (fault.after_chunks or 0):
                raise stream_error(fault, sent)


def _has_text(chunk: Any) -> bool:
    """Whether a chunk carries answer text (a word, on vLLM); the role and finish chunks do not.
    Read here rather than with ``streams.chunks``, which imports this module's caller."""
    choices = getattr(chunk, "choices", None)
    if not choices:
        return False
    delta = getattr(choices[0], "delta", None)
    return bool(getattr(delta, "content", None))

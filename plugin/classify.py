"""Turn what LiteLLM raised for one attempt into an ``Outcome`` the outlier detector counts.

LiteLLM reports a refused connection to a self-hosted server as an ``InternalServerError`` (500)
whose message carries the transport's words, so the connect case is recognised by its message
before the status code is looked at.
"""

from __future__ import annotations

import litellm

from litellm_failover.outlier import Outcome

_CONNECT_MARKERS = (
    "cannot connect to host",
    "connect call failed",
    "connection refused",
    "connecterror",
    "all connection attempts failed",
    "name or service not known",
    "nodename nor servname",
    "server disconnected without sending a response",
)
_STREAM_CUT_MARKERS = (
    "response payload is not completed",
    "transferencodingerror",
    "peer closed connection",
    "connection reset",
    "remoteprotocolerror",
    "readerror",
    "incomplete chunked read",
)


def classify(exception: BaseException, *, streaming_started: bool = False) -> Outcome:
    text = f"{type(exception).__name__} {exception}".lower()
    if any(marker in text for marker in _CONNECT_MARKERS):
        return Outcome.CONNECT_ERROR
    if isinstance(exception, litellm.Timeout) or "timeout" in type(exception).__name__.lower():
        return Outcome.TIMEOUT
    if streaming_started or any(marker in text for marker in _STREAM_CUT_MARKERS):
        return Outcome.STREAM_CUT
    status = getattr(exception, "status_code", None)
    if isinstance(exception, litellm.RateLimitError) or status == 429:
        return Outcome.OVERLOADED
    if isinstance(exception, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return Outcome.SERVER_ERROR  # this deployment cannot serve anyone with its credentials
    if isinstance(exception, litellm.APIConnectionError):
        return Outcome.CONNECT_ERROR
    if isinstance(status, int) and 400 <= status < 500:
        return Outcome.CLIENT_ERROR
    return Outcome.SERVER_ERROR

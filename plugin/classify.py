"""Turn what LiteLLM raised for one attempt into an ``Outcome`` the outlier detector counts.

LiteLLM reports a refused connection to a self-hosted server as an ``InternalServerError`` (500)
whose message carries the transport's words, so the connect case is recognised by its message
before the status code is looked at.

LiteLLM also reports as ``APIConnectionError`` any exception raised while it builds the request
for the backend: a client's ``messages`` that is a string fails there with an ``AttributeError``
that never left the process. That request never reached the deployment, so it says nothing about
the deployment: only an ``APIConnectionError`` with a transport failure in its cause chain (or with
no chain at all, which says nothing either way) is a connect error; the rest are the request's
fault, like the backend's own 4xx.
"""

from __future__ import annotations

import aiohttp
import httpx
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


_TRANSPORT_ERRORS = (OSError, httpx.TransportError, aiohttp.ClientError)
"""What a failure to reach or hear from a deployment is raised as, under LiteLLM's wrapping
(``ConnectionError`` and ``TimeoutError`` are ``OSError`` subclasses)."""


def _never_sent(exception: BaseException) -> bool:
    """An ``APIConnectionError`` LiteLLM raised around a local exception, with no transport
    failure anywhere in its cause chain: the request was never sent."""
    seen: set[int] = set()
    cause = exception.__cause__ or exception.__context__
    if cause is None:
        return False
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, _TRANSPORT_ERRORS):
            return False
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return True


def _client_fault(exception: BaseException, status: object) -> bool:
    """The request's fault: a 4xx other than 429 and the credential refusals (which say the
    deployment cannot serve anyone), or a request LiteLLM could not even build. Such an answer
    comes before any chunk, so it is this even for a stream."""
    if isinstance(exception, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return False
    if isinstance(exception, litellm.APIConnectionError):
        return _never_sent(exception)
    return isinstance(status, int) and 400 <= status < 500 and status != 429


def classify(exception: BaseException, *, streaming_started: bool = False) -> Outcome:
    text = f"{type(exception).__name__} {exception}".lower()
    if any(marker in text for marker in _CONNECT_MARKERS):
        return Outcome.CONNECT_ERROR
    if isinstance(exception, litellm.Timeout) or "timeout" in type(exception).__name__.lower():
        return Outcome.TIMEOUT
    if any(marker in text for marker in _STREAM_CUT_MARKERS):
        return Outcome.STREAM_CUT
    status = getattr(exception, "status_code", None)
    if _client_fault(exception, status):
        return Outcome.CLIENT_ERROR
    if streaming_started:
        return Outcome.STREAM_CUT
    if isinstance(exception, litellm.RateLimitError) or status == 429:
        return Outcome.OVERLOADED
    if isinstance(exception, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return Outcome.SERVER_ERROR  # this deployment cannot serve anyone with its credentials
    if isinstance(exception, litellm.APIConnectionError):
        return Outcome.CONNECT_ERROR
    return Outcome.SERVER_ERROR

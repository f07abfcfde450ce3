"""Turn what LiteLLM raised for one attempt into an ``Outcome`` the outlier detector counts.

LiteLLM reports a refused connection to a self-hosted server as an ``InternalServerError`` (500)
whose message carries the transport's words, so the connect case is recognised by its message
before the status code is looked at.

LiteLLM also reports as ``APIConnectionError`` any exception raised while it builds the request
for the backend: a client's ``messages`` that is a string fails there with an ``AttributeError``
that never left the process. That request never reached the deployment, so it says nothing about
the deployment: an ``APIConnectionError`` raised straight around such a local error, with no
transport failure in its cause chain, is the request's fault, like the backend's own 400; any
other (a transport failure, or no chain at all, which says nothing either way) is a connect error.

What is the request's fault is ``CLIENT_STATUSES``; a credential refusal (401, 403) says the
deployment cannot serve anyone, and is the deployment's.
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


_LOCAL_ERRORS = (AttributeError, TypeError, KeyError, IndexError)
"""What LiteLLM's request building raises on a malformed request (``'str' object has no attribute
'get'`` for ``messages: "hi"``): a programming error on the client's data, in this process."""

CLIENT_STATUSES = frozenset({400, 404, 413, 422})
"""The statuses that say the request, not the deployment, is at fault: malformed (400, and the
400s LiteLLM names ``ContextWindowExceededError`` and ``ContentPolicyViolationError``), naming
something that is not there (404: a response, file or batch id), too large (413), or invalid
(422: TGI's and FastAPI's validation errors). Another deployment would refuse it too."""


def _never_sent(exception: BaseException) -> bool:
    """An ``APIConnectionError`` LiteLLM raised straight around a local error while it built the
    request, with no transport failure anywhere in its cause chain: the request was never sent.
    A response LiteLLM could not read is wrapped in another exception first (``Invalid response
    object``), so it is not mistaken for this."""
    cause = exception.__cause__ or exception.__context__
    if not isinstance(cause, _LOCAL_ERRORS):
        return False
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, _TRANSPORT_ERRORS):
            return False
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return True


def _client_fault(exception: BaseException, status: object) -> bool:
    """The request's fault (``CLIENT_STATUSES``), or a request LiteLLM could not even build.
    Such an answer comes before any chunk, so it is this even for a stream."""
    if isinstance(exception, litellm.APIConnectionError):
        return _never_sent(exception)
    return status in CLIENT_STATUSES


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
    if status == 409:
        return Outcome.OVERLOADED  # a conflict the server expects to clear: LiteLLM retries it
    if isinstance(exception, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return Outcome.SERVER_ERROR  # this deployment cannot serve anyone with its credentials
    if isinstance(exception, litellm.APIConnectionError):
        return Outcome.CONNECT_ERROR
    # Any other status, a 4xx included (405, 410, 415: an endpoint that is not what it should be;
    # 402: a hosted account out of credit), is the deployment's: it would answer anyone so.
    return Outcome.SERVER_ERROR

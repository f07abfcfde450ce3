"""Which deployment a request-level failure log is about.

LiteLLM's failure log (``async_log_failure_event``) hands over the request's logging details,
which LiteLLM updates on every attempt. A stream that broke on p1 while the Router was reading its
first chunk is retried on s1; the broken stream's failure is logged from its own task, and when
that task runs after the retry began (a loaded event loop: seen in the drill under load), the
details already name s1. Counted as s1's ``stream_cut``, three such logs ejected a healthy standby
and, with p1 out as well, streams broke in panic mode. The exception itself still says where it
came from: an HTTP error carries its request, whose URL is p1's. So the failure goes to the one
deployment of the group whose ``api_base`` that URL is under; where the URL names no deployment,
or several (one endpoint, several keys), the logged deployment stands.
"""

from __future__ import annotations

from typing import Any

from litellm_failover.litellm_compat import current_deployments

_CHAIN = 4  # the exception, and what it was raised from, this deep


def failed_deployment(logged: str, exception: BaseException, router: Any) -> str:
    """The deployment ``exception`` came from, when its request URL says so; else ``logged``."""
    url = _request_url(exception)
    if url is None:
        return logged
    if router is None:
        return logged
    entries = current_deployments(router)  # 1.110: the registry, not the deprecated shim
    group = next((_group(e) for e in entries if _deployment_id(e) == logged), None)
    if group is None:
        return logged
    matches = {
        deployment
        for entry in entries
        if _group(entry) == group
        and (deployment := _deployment_id(entry))
        and (base := _api_base(entry))
        and url.startswith(base)
    }
    if logged in matches or len(matches) != 1:
        return logged
    return matches.pop()


def _request_url(exception: BaseException) -> str | None:
    seen: BaseException | None = exception
    for _ in range(_CHAIN):
        if seen is None:
            return None
        try:
            request = getattr(seen, "request", None)  # httpx raises RuntimeError for an unset one
        except RuntimeError:
            request = None
        url = getattr(request, "url", None)
        if url is not None and str(url).startswith(("http://", "https://")):
            return str(url)
        seen = seen.__cause__ or seen.__context__
    return None


def _deployment_id(entry: Any) -> str | None:
    info = entry.get("model_info") if isinstance(entry, dict) else None
    value = info.get("id") if isinstance(info, dict) else None
    return str(value) if value else None


def _group(entry: Any) -> str | None:
    return entry.get("model_name") if isinstance(entry, dict) else None


def _api_base(entry: Any) -> str | None:
    params = entry.get("litellm_params") if isinstance(entry, dict) else None
    value = params.get("api_base") if isinstance(params, dict) else None
    return str(value).rstrip("/") + "/" if value else None

"""The request path in one place (issue 13 §2): one record per client request, one identity rule,
one expiry.

- ``identity``: which id names a request (``route_key`` for the pick, ``hook_keys`` for the
  outcome hooks).
- ``book``: ``RequestBook``, one record per request (its picks, the deployments that failed it,
  its attempts in flight, its session) and the per-deployment in-flight counts drains wait for.
- ``path``: ``RequestPath``, route / prepare_stateful / attempt_failed / request_succeeded /
  session_answered, what the LiteLLM handler and the stream resumer call.
"""

from __future__ import annotations

from litellm_failover.requests.book import RequestBook, RequestRecord, Routing
from litellm_failover.requests.identity import hook_keys, route_key
from litellm_failover.requests.path import RequestPath

__all__ = ["RequestBook", "RequestPath", "RequestRecord", "Routing", "hook_keys", "route_key"]

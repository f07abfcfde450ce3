"""Mid-stream failover (issue 5): a streamed answer that breaks continues on another deployment.

- ``resume``: ``ResumingStream``, the client's one stream over the upstream parts, and
  ``StreamBrokenError``, what the client gets when nothing can continue it.
- ``resumer``: ``StreamResumer``, the plugin's side (which deployment, how, events, outcomes) and
  the wiring into the Router (``install``) and the proxy (``proxy_stream``).
- ``request`` / ``chunks``: what a continuation keeps of the request; reading and re-stamping chunks.

How each endpoint kind continues a partial answer is its provider adapter's business
(``litellm_failover.providers.continuation``).
"""

from __future__ import annotations

from litellm_failover.streams.resume import ResumingStream, StreamBrokenError
from litellm_failover.streams.resumer import StreamResumer

__all__ = ["ResumingStream", "StreamBrokenError", "StreamResumer"]

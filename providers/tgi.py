"""Hugging Face Text Generation Inference (``huggingface/`` with an ``api_base``).

TGI exports no KV-cache usage gauge, so a TGI deployment has no ``kv_cache`` check: its queue
(``tgi_queue_size``) is the saturation signal. ``tgi_batch_current_size`` (requests running) is
read when present but not required.

TGI's Messages API always renders the chat template with a fresh generation prompt and has no
option to continue the final assistant message, so it cannot continue a broken stream exactly: it
gets the best effort, under ``streams.inexact_continuation`` like a hosted API.
"""

from __future__ import annotations

from litellm_failover.providers.continuation import NO_EXACT_CONTINUATION
from litellm_failover.providers.prometheus import Series
from litellm_failover.providers.self_hosted import EngineMetrics, SelfHostedAdapter

METRICS = EngineMetrics(
    running=Series(("tgi_batch_current_size",), "sum", required=False),
    waiting=Series(("tgi_queue_size",), "sum"),
)

ADAPTER = SelfHostedAdapter("tgi", METRICS, continuation=NO_EXACT_CONTINUATION)

"""vLLM (``hosted_vllm/``): ``/health`` answers 200 once the engine is up, ``/metrics`` has load.

``vllm:kv_cache_usage_perc`` is a 0-1 fraction despite its name; vLLM before the V1 engine
called it ``vllm:gpu_cache_usage_perc``, still read as a fallback. With data parallelism each
engine reports its own label set: request counts are summed, usage takes the fullest engine.

A stream that broke elsewhere continues here exactly: the partial answer, cut back to a point that
re-tokenizes as the model wrote it, is sent as the final assistant message with
``continue_final_message``, and the tail written again is skipped (``providers.retokenize``). The
engine's running count (``continuous_usage_stats``) keeps the client's ``max_tokens`` exact.
"""

from __future__ import annotations

from litellm_failover.providers.continuation import CONTINUOUS_USAGE_STATS
from litellm_failover.providers.prometheus import Series
from litellm_failover.providers.retokenize import CONTINUE_FROM_STABLE_CUT
from litellm_failover.providers.self_hosted import EngineMetrics, SelfHostedAdapter

METRICS = EngineMetrics(
    running=Series(("vllm:num_requests_running",), "sum"),
    waiting=Series(("vllm:num_requests_waiting",), "sum"),
    kv_usage=Series(("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"), "max", ratio=True),
)

ADAPTER = SelfHostedAdapter(
    "vllm", METRICS, continuation=CONTINUE_FROM_STABLE_CUT, running_usage=CONTINUOUS_USAGE_STATS
)

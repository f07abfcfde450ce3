"""SGLang: ``/health`` and, when launched with ``--enable-metrics``, Prometheus ``/metrics``.

``sglang:token_usage`` is the fraction of the KV-cache token pool in use, SGLang's equivalent of
vLLM's KV-cache usage. Without ``--enable-metrics`` the ``metrics`` check fails ("...missing"),
on purpose: a node whose load nobody can see is not trusted with traffic.

SGLang's chat API takes vLLM's ``continue_final_message``, so a broken stream continues here exactly,
from a point that re-tokenizes as the model wrote it (``providers.retokenize``), like vLLM.
"""

from __future__ import annotations

from litellm_failover.providers.continuation import CONTINUOUS_USAGE_STATS
from litellm_failover.providers.prometheus import Series
from litellm_failover.providers.retokenize import CONTINUE_FROM_STABLE_CUT
from litellm_failover.providers.self_hosted import EngineMetrics, SelfHostedAdapter

METRICS = EngineMetrics(
    running=Series(("sglang:num_running_reqs",), "sum"),
    waiting=Series(("sglang:num_queue_reqs",), "sum"),
    kv_usage=Series(("sglang:token_usage",), "max", ratio=True),
)

ADAPTER = SelfHostedAdapter(
    "sglang", METRICS, continuation=CONTINUE_FROM_STABLE_CUT, running_usage=CONTINUOUS_USAGE_STATS
)

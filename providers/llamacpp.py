"""llama.cpp's ``llama-server`` (``openai/`` with its ``api_base``, ``provider: llamacpp``).

``/health`` answers 503 while the model loads and 200 once it serves. Started with
``--metrics``, ``/metrics`` has ``llamacpp:requests_processing`` (running) and
``llamacpp:requests_deferred`` (waiting for a slot); there is no KV-cache usage gauge, so like
TGI the queue is the saturation signal. Without ``--metrics`` the ``metrics`` check fails, on
purpose: a node whose load nobody can see is not trusted with traffic.

A broken stream continues here exactly: the server's chat API takes ``continue_final_message``,
and the text sent back is cut to a point that re-tokenizes as the model wrote it
(``providers.retokenize``; measured in ``bench/real_engine_continuation.py``).
"""

from __future__ import annotations

from litellm_failover.providers.prometheus import Series
from litellm_failover.providers.retokenize import CONTINUE_FROM_STABLE_CUT
from litellm_failover.providers.self_hosted import EngineMetrics, SelfHostedAdapter

METRICS = EngineMetrics(
    running=Series(("llamacpp:requests_processing",), "sum"),
    waiting=Series(("llamacpp:requests_deferred",), "sum"),
)

ADAPTER = SelfHostedAdapter("llamacpp", METRICS, continuation=CONTINUE_FROM_STABLE_CUT)

"""Keep LiteLLM's tokenizer downloads off the proxy's event loop.

To count the tokens of a streamed answer, LiteLLM loads a Hugging Face tokenizer for model names it
recognises (Llama 2 and 3, Cohere Command R) with a synchronous download on the event loop. With no
route to the hub, as on an air-gapped GPU cluster, the hub client retries for tens of seconds and
the whole proxy, health routes included, stands still. In offline mode the hub client answers from
its local cache at once, and LiteLLM falls back to tiktoken for a tokenizer that is not cached.

The plugin switches offline mode on only when neither ``HF_HUB_OFFLINE`` nor ``TRANSFORMERS_OFFLINE``
is set, so ``HF_HUB_OFFLINE=0`` in the proxy's environment gives LiteLLM its downloads back. What the
plugin cannot set (``LITELLM_LOCAL_MODEL_COST_MAP`` is read while LiteLLM is imported, before any
callback is built) is in docs/guides/air-gapped.md.
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger("litellm_failover")

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def keep_tokenizer_downloads_off_the_loop() -> bool:
    """Set ``HF_HUB_OFFLINE=1`` unless the environment already decides; True when it set it."""
    if any(name in os.environ for name in OFFLINE_VARIABLES):
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    # huggingface_hub reads the variable once, at import; if something imported it already, its
    # module-level switch (what ``is_offline_mode()`` returns) is the one that counts.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    logger.warning(
        "litellm-failover set HF_HUB_OFFLINE=1 so that LiteLLM's token counting never downloads a "
        "tokenizer on the event loop (offline that froze the proxy); cached tokenizers still load, "
        "others count with tiktoken. Set HF_HUB_OFFLINE=0 in the proxy's environment to allow downloads."
    )
    return True

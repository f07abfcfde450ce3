"""Do, once at start and off the event loop, the imports LiteLLM leaves to a process's first request.

Three modules, about 1.5 s of work together, that LiteLLM (1.108.7 and 1.110.x alike) loads lazily
while it serves the first request, each a stall of the event loop in which no probe runs, no stream
is watched and timers fire late:

- ``custom_logger_registry``: before it runs any logging callback, ``Logging.should_run_callback``
  asks ``litellm_enterprise``'s ``is_callback_disabled_dynamically`` whether a request header
  switched the callback off, and that function imports the registry inside its body. The registry
  imports every LiteLLM integration and ``litellm.proxy.hooks`` (FastAPI, Redis, ...): about 1 s on
  the loop, in the first success (or failure) log. LiteLLM 1.108.7 pays it for any Router, 1.110.x
  once an async callback such as the plugin's handler is registered.
- ``shadow_eval_logger``: the success log imports it for every ``CustomLogger`` callback (the
  plugin's handler is one): tens of milliseconds.
- ``default_encoding``: the first completion loads tiktoken's ``cl100k_base`` (300 to 500 ms). It
  runs in LiteLLM's worker thread, but tiktoken builds the encoder in native code holding the GIL,
  so the loop waits all the same.

Imported here, in a thread at start (before the prober and the rest start), the first request
finds them loaded.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

logger = logging.getLogger("litellm_failover")

LOGGING_MODULE = "litellm.litellm_core_utils.litellm_logging"
# What ``is_callback_disabled_dynamically`` imports on every call (only the first one costs).
REGISTRY = "litellm.litellm_core_utils.custom_logger_registry"
# What the success log imports for each ``CustomLogger`` callback.
SHADOW_EVAL = "litellm.integrations.shadow_eval_logger"
# Loads tiktoken's cl100k_base at import (LiteLLM's default encoding, for every completion).
ENCODING = "litellm.litellm_core_utils.default_encoding"
FIRST_REQUEST_IMPORTS = (REGISTRY, SHADOW_EVAL, ENCODING)


def first_request_imports() -> tuple[str, ...]:
    """The modules LiteLLM would import during its first request, not yet imported.
    The registry only with ``litellm_enterprise`` installed: without it LiteLLM never imports the
    registry (which needs FastAPI, which a plain ``litellm`` install may lack). A module this
    LiteLLM does not have is left out, not reported."""
    logging_module = sys.modules.get(LOGGING_MODULE)
    enterprise = getattr(logging_module, "EnterpriseCallbackControls", None) is not None
    return tuple(
        name
        for name in FIRST_REQUEST_IMPORTS
        if name not in sys.modules and (enterprise or name != REGISTRY) and _exists(name)
    )


def _exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing
        return False


def _import_all(names: Sequence[str]) -> None:
    for name in names:
        importlib.import_module(name)


async def warm_first_request_imports(names: Sequence[str] | None = None) -> tuple[str, ...]:
    """Import ``names`` (default: ``first_request_imports()``) in a worker thread; returns those
    imported. Never raises: a failed warm-up only leaves LiteLLM to import them as it does now."""
    todo = tuple(first_request_imports() if names is None else names)
    if not todo:
        return ()
    try:
        await asyncio.to_thread(_import_all, todo)
    except Exception as exc:
        logger.warning(
            "litellm-failover could not import %s at start (%s: %s); LiteLLM will import it while "
            "the event loop waits, during the first request",
            ", ".join(todo),
            type(exc).__name__,
            exc,
        )
        return ()
    return todo

"""Shared test setup: offline LiteLLM, free ports, bounded waits."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")
# Operator commands and fleet messages are signed (litellm_failover.control.signing); without a
# key both are off. Every test process, and every proxy or CLI it starts, shares this test key;
# tests of the unsigned and off cases set or remove it themselves.
TEST_SIGNING_KEYS = "test-key:litellm-failover-test-signing-secret"
os.environ.setdefault("LITELLM_FAILOVER_SIGNING_KEYS", TEST_SIGNING_KEYS)

import pytest  # noqa: E402 (after the environment it reads at import)

# LiteLLM's process-global callback lists (see litellm.logging_callback_manager).
_CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


@pytest.fixture(autouse=True)
def litellm_callbacks_restored():
    """Every ``litellm.Router`` adds its own success and failure callbacks to LiteLLM's
    process-global lists and never takes them out. LiteLLM stops adding callbacks once a list
    holds 100 (``MAX_CALLBACKS``), silently: after a hundred Routers in one test process, a new
    Router's callbacks and the plugin's handler no longer receive any log. A process runs one
    Router in production; here each test puts the lists back as it found them."""
    import litellm

    saved = {name: list(getattr(litellm, name)) for name in _CALLBACK_LISTS}
    yield
    for name, items in saved.items():
        getattr(litellm, name)[:] = items

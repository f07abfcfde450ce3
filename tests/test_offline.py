"""The proxy handler keeps LiteLLM's tokenizer downloads off the event loop, unless told otherwise.

The end-to-end proof (the docs' example streaming promptly with no network) is
tests/test_docs_proxy_example.py; here, what is set, what is left alone, and what is logged.
"""

from __future__ import annotations

import logging
import os
import time

import huggingface_hub.constants
import pytest

from litellm_failover.offline import OFFLINE_VARIABLES, keep_tokenizer_downloads_off_the_loop


@pytest.fixture(autouse=True)
def hub_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every change to the environment and the hub's switch is undone after each test."""
    for name in OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def test_offline_mode_is_set_when_nothing_decides(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="litellm_failover"):
        assert keep_tokenizer_downloads_off_the_loop() is True
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True  # imported before: its switch flipped too
    assert "set HF_HUB_OFFLINE=1" in caplog.text and "Set HF_HUB_OFFLINE=0" in caplog.text


@pytest.mark.parametrize(("name", "value"), [("HF_HUB_OFFLINE", "0"), ("TRANSFORMERS_OFFLINE", "1")])
def test_an_explicit_choice_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="litellm_failover"):
        assert keep_tokenizer_downloads_off_the_loop() is False
    assert os.environ[name] == value and huggingface_hub.constants.HF_HUB_OFFLINE is False
    assert caplog.text == ""


def test_litellm_counts_a_llama_stream_without_waiting_for_the_hub() -> None:
    """No route to the hub here: without offline mode this call retried for 20 s and more."""
    import litellm

    keep_tokenizer_downloads_off_the_loop()
    started = time.monotonic()
    tokenizer = litellm.utils.select_tokenizer("hosted_vllm/meta-llama/Llama-3.1-8B-Instruct")
    assert tokenizer["type"] in ("openai_tokenizer", "huggingface_tokenizer")
    assert time.monotonic() - started < 5

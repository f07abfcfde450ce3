"""The imports LiteLLM leaves to a process's first request happen at the plugin's start, off the
event loop (litellm_failover.litellm_compat.warmup). Done by LiteLLM during the first request they
stood the loop still for about a second (docs/guides/litellm-versions.md)."""

from __future__ import annotations

import logging
import sys
import threading

import litellm
import litellm.litellm_core_utils.litellm_logging as litellm_logging

from litellm_failover import attach
from litellm_failover.litellm_compat import warmup
from litellm_failover.litellm_compat.warmup import (
    ENCODING,
    FIRST_REQUEST_IMPORTS,
    SHADOW_EVAL,
    first_request_imports,
    warm_first_request_imports,
)


async def test_the_warm_up_imports_in_a_worker_thread(tmp_path, monkeypatch):
    # A module that notes which thread imported it.
    (tmp_path / "warmup_probe_module.py").write_text(
        "import threading\nimported_on = threading.get_ident()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "warmup_probe_module", raising=False)

    assert await warm_first_request_imports(["warmup_probe_module"]) == ("warmup_probe_module",)
    assert sys.modules["warmup_probe_module"].imported_on != threading.get_ident()  # not the loop's


def test_a_module_this_litellm_lacks_is_not_warmed(monkeypatch):
    monkeypatch.setattr(warmup, "FIRST_REQUEST_IMPORTS", ("litellm.no_such_module", "no_such_package.module"))
    assert first_request_imports() == ()


async def test_a_failed_warm_up_is_logged_and_start_goes_on(caplog):
    with caplog.at_level(logging.WARNING, logger="litellm_failover"):
        assert await warm_first_request_imports(["litellm_failover_no_such_module"]) == ()
    assert "litellm_failover_no_such_module" in caplog.text
    assert "during the first request" in caplog.text


async def test_the_plugins_start_imports_what_litellm_would_import_during_the_first_request(
    tmp_path, monkeypatch
):
    # Without litellm_enterprise, LiteLLM never imports the registry (nor does the warm-up).
    expected = (
        FIRST_REQUEST_IMPORTS if litellm_logging.EnterpriseCallbackControls else (SHADOW_EVAL, ENCODING)
    )
    # As in a process that has logged no request yet; the modules and their packages' attributes
    # come back as they were after the test.
    for name in FIRST_REQUEST_IMPORTS:
        loaded = sys.modules.get(name)
        if loaded is not None:
            package, _, attribute = name.rpartition(".")
            monkeypatch.setattr(sys.modules[package], attribute, loaded)
            monkeypatch.delitem(sys.modules, name)
    assert first_request_imports() == expected

    deployment = {
        "model_name": "chat",
        "litellm_params": {"model": "hosted_vllm/fake-model", "api_base": "http://127.0.0.1:9/v1"},
        "model_info": {"id": "d1", "failover": {"probe": False}},
    }
    plugin = attach(
        litellm.Router(model_list=[deployment]), {"database_url": f"sqlite+aiosqlite:///{tmp_path}/e.db"}
    )
    try:
        assert first_request_imports() == expected  # attach alone imports nothing
        async with plugin:
            assert first_request_imports() == ()
            assert all(name in sys.modules for name in expected)
    finally:
        plugin.detach()

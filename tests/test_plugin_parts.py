"""The small parts of the plugin: outcome classification, redaction, the request book, config."""

from __future__ import annotations

import httpx
import litellm
import pytest
import yaml
from factories import Clock

from litellm_failover.attribution import failed_deployment
from litellm_failover.classify import classify
from litellm_failover.config_file import load_proxy_config
from litellm_failover.outlier import Outcome
from litellm_failover.redact import Redactor
from litellm_failover.requests import RequestBook
from litellm_failover.settings import FailoverConfigError


@pytest.mark.parametrize(
    ("exception", "outcome"),
    [
        (
            litellm.InternalServerError(
                message="Cannot connect to host 127.0.0.1:1 [Connect call failed]",
                model="m",
                llm_provider="x",
            ),
            Outcome.CONNECT_ERROR,
        ),
        (litellm.InternalServerError(message="boom", model="m", llm_provider="x"), Outcome.SERVER_ERROR),
        (litellm.Timeout(message="timed out", model="m", llm_provider="x"), Outcome.TIMEOUT),
        (litellm.RateLimitError(message="slow down", model="m", llm_provider="x"), Outcome.OVERLOADED),
        (litellm.BadRequestError(message="bad prompt", model="m", llm_provider="x"), Outcome.CLIENT_ERROR),
        (litellm.AuthenticationError(message="bad key", model="m", llm_provider="x"), Outcome.SERVER_ERROR),
        (
            litellm.APIConnectionError(
                message="Response payload is not completed", model="m", llm_provider="x"
            ),
            Outcome.STREAM_CUT,
        ),
    ],
)
def test_classify(exception, outcome):
    assert classify(exception) is outcome


def test_a_stream_that_fails_after_it_started_is_a_cut_unless_it_is_a_connect_error():
    assert classify(ValueError("odd"), streaming_started=True) is Outcome.STREAM_CUT
    refused = ConnectionRefusedError("Connection refused")
    assert classify(refused, streaming_started=True) is Outcome.CONNECT_ERROR


def test_a_failure_logged_under_the_next_attempt_goes_to_the_deployment_its_url_names():
    """LiteLLM's failure log names the request's latest attempt: a stream that broke on p1 and
    was retried on s1 can be logged as s1's (three such ejected a healthy standby in the drill
    under load). The exception's request URL says p1; a URL naming no deployment, or several,
    leaves the logged one."""

    def entry(name: str, group: str, base: str) -> dict:
        params = {"model": "hosted_vllm/m", "api_base": base}
        return {"model_name": group, "litellm_params": params, "model_info": {"id": name}}

    router = litellm.Router(
        model_list=[
            entry("p1", "chat", "http://127.0.0.1:4100/v1"),
            entry("s1", "chat", "http://127.0.0.1:41001/v1/"),
            entry("k1", "chat", "http://127.0.0.1:4200/v1"),
            entry("k2", "chat", "http://127.0.0.1:4200/v1"),
            entry("o1", "other", "http://127.0.0.1:4300/v1"),
        ]
    )

    def cut(url: str) -> BaseException:
        return httpx.ReadError("cut", request=httpx.Request("POST", url))

    assert failed_deployment("s1", cut("http://127.0.0.1:4100/v1/chat/completions"), router) == "p1"
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = cut("http://127.0.0.1:4100/v1/chat/completions")
    assert failed_deployment("s1", wrapped, router) == "p1"
    assert failed_deployment("s1", cut("http://127.0.0.1:41001/v1/chat/completions"), router) == "s1"
    assert failed_deployment("s1", cut("http://127.0.0.1:4200/v1/chat/completions"), router) == "s1"
    assert failed_deployment("s1", cut("http://127.0.0.1:4300/v1/chat/completions"), router) == "s1"
    assert failed_deployment("s1", cut("http://127.0.0.1:9/v1/chat/completions"), router) == "s1"
    assert failed_deployment("s1", httpx.ReadError("no request"), router) == "s1"
    assert failed_deployment("s1", ValueError("plain"), router) == "s1"
    assert failed_deployment("s1", cut("http://127.0.0.1:4100/v1/x"), None) == "s1"


def test_redactor_masks_known_secrets_token_shapes_and_url_passwords():
    redact = Redactor(["my-very-secret-key"])
    text = redact(
        "auth failed for my-very-secret-key with Bearer abcdefghijk and sk-123456789012 "
        "at postgresql://user:hunter2@db/x"
    )
    assert "my-very-secret-key" not in text and "abcdefghijk" not in text
    assert "sk-123456789012" not in text and "hunter2" not in text
    assert len(Redactor()("x" * 1000)) == 300


def test_attempt_ledger_excludes_failures_per_request_and_forgets_on_finish():
    ledger = RequestBook(ttl_s=10, max_requests=3, clock=Clock(0))
    ledger.record_pick("r1", "a")
    assert ledger.record_failure("r1", "a") is True
    assert ledger.record_failure("r1", "a") is False  # reported twice by LiteLLM: counted once
    assert ledger.excluded("r1") == {"a"}
    assert ledger.excluded("r2") == frozenset()
    assert ledger.finish("r1").first_pick == "a"
    assert ledger.excluded("r1") == frozenset()


def test_attempt_ledger_is_bounded_and_ages_out():
    clock = Clock(0)
    ledger = RequestBook(ttl_s=10, max_requests=3, clock=clock)
    for i in range(5):
        clock.now = float(i)
        ledger.record_pick(f"r{i}", "a")
    assert len(ledger) == 3
    clock.now = 100.0
    ledger.record_pick("late", "a")
    assert len(ledger) == 1


def write_config(tmp_path, failover_settings, failover_block=None, model="hosted_vllm/x"):
    config = {
        "model_list": [
            {
                "model_name": "chat",
                "litellm_params": {"model": model, "api_base": "http://127.0.0.1:1/v1"},
                "model_info": {"failover": failover_block} if failover_block is not None else {},
            }
        ],
        "failover_settings": failover_settings,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize(
    ("settings", "block", "expected"),
    [
        ({"helth": {}}, None, "failover_settings.helth"),
        ({"health": {"interval_s": -1}}, None, "failover_settings.health.interval_s"),
        ({"strategy": "fastest"}, None, "'fastest'"),
        ({"health": {"unhealthy_threshold": "many"}}, None, "failover_settings.health.unhealthy_threshold"),
        ({}, {"provider": "tpu-magic"}, "model_list[0].model_info.failover.provider"),
        ({}, {"gpu_source": "nvml"}, "model_list[0].model_info.failover.gpu_source"),
        (
            {},
            {"health": {"max_kv_cache_usage": 2}},
            "model_list[0].model_info.failover.health.max_kv_cache_usage",
        ),
        ({"database_url": "os.environ/NOT_SET_ANYWHERE_42"}, None, "NOT_SET_ANYWHERE_42"),
    ],
)
def test_proxy_config_errors_name_the_key_path(tmp_path, settings, block, expected):
    with pytest.raises(FailoverConfigError) as info:
        load_proxy_config(write_config(tmp_path, settings, block))
    assert expected in str(info.value)


def test_an_uninferable_provider_is_refused_with_the_model(tmp_path):
    with pytest.raises(FailoverConfigError) as info:
        load_proxy_config(write_config(tmp_path, {}, None, model="mystery/model"))
    assert "model_list[0]" in str(info.value) and "mystery/model" in str(info.value)


def test_proxy_config_reads_environment_references(tmp_path, monkeypatch):
    monkeypatch.setenv("FAILOVER_DB_FOR_TEST", "sqlite+aiosqlite:///x.db")
    config = load_proxy_config(write_config(tmp_path, {"database_url": "os.environ/FAILOVER_DB_FOR_TEST"}))
    assert config.settings.database_url == "sqlite+aiosqlite:///x.db"
    assert len(config.model_list) == 1


def test_deployments_behind_one_server_share_one_probe_and_others_do_not():
    from factories import specs_for

    from litellm_failover.probes import build_probes

    def entry(dep_id, base, **failover):
        return {
            "model_name": "g",
            "litellm_params": {"model": "hosted_vllm/m", "api_base": base},
            "model_info": {"id": dep_id, "failover": failover},
        }

    specs = specs_for(
        [
            entry("lora-a", "http://10.0.0.1:8000/v1", gpu_url="http://10.0.0.1:9400"),
            entry("lora-b", "http://10.0.0.1:8000/v1", gpu_url="http://10.0.0.1:9400"),
            entry("other-node", "http://10.0.0.2:8000/v1", gpu_url="http://10.0.0.2:9400"),
            entry(
                "stricter",
                "http://10.0.0.1:8000/v1",
                gpu_url="http://10.0.0.1:9400",
                health={"max_kv_cache_usage": 0.5},
            ),
            entry("passive", "http://10.0.0.1:8000/v1", probe=False),
        ]
    )
    groups = sorted(shared.deployment_ids for shared in build_probes(specs))
    assert groups == [("lora-a", "lora-b"), ("other-node",), ("stricter",)]

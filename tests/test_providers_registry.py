"""Kind inference, adapters and targets: what start-up builds from a deployment's config."""

from __future__ import annotations

import pytest

from litellm_failover.providers import (
    KINDS,
    build_prober,
    build_target,
    get_adapter,
    infer_kind,
    merge_thresholds,
)
from litellm_failover.providers.thresholds import ProbeThresholds
from litellm_failover.settings import FailoverConfigError, HealthOverrides, parse_deployment_config

WHERE = "model_list[2].model_info.failover.provider"


@pytest.mark.parametrize(
    ("params", "configured", "kind"),
    [
        ({"model": "hosted_vllm/llama"}, None, "vllm"),
        ({"model": "openai/gpt-4o"}, None, "openai"),
        ({"model": "openai/gpt-4o", "api_base": "https://api.openai.com/v1"}, None, "openai"),
        ({"model": "openai/llama", "api_base": "http://gpu-1:8000/v1"}, None, "openai-compatible"),
        ({"model": "text-completion-openai/gpt-3.5-turbo-instruct"}, None, "openai"),
        ({"model": "text-completion-openai/x", "api_base": "http://node/v1"}, None, "openai-compatible"),
        ({"model": "azure/gpt-4o"}, None, "azure"),
        ({"model": "anthropic/claude-sonnet-4"}, None, "anthropic"),
        ({"model": "huggingface/tgi", "api_base": "http://tgi:8080"}, None, "tgi"),
        ({"model": "llama", "custom_llm_provider": "hosted_vllm"}, None, "vllm"),
        ({"model": "openai/llama", "api_base": "http://gpu-1:8000/v1"}, "sglang", "sglang"),
        ({"model": "whatever/x"}, "tgi", "tgi"),
    ],
)
def test_infer_kind(params, configured, kind):
    assert infer_kind(params, configured, WHERE) == kind


def test_infer_kind_resolves_env_api_base(monkeypatch):
    monkeypatch.setenv("BASE", "https://api.openai.com/v1")
    assert infer_kind({"model": "openai/x", "api_base": "os.environ/BASE"}, None, WHERE) == "openai"
    monkeypatch.setenv("BASE", "http://self-hosted/v1")
    assert (
        infer_kind({"model": "openai/x", "api_base": "os.environ/BASE"}, None, WHERE) == "openai-compatible"
    )


@pytest.mark.parametrize(
    "params", [{"model": "bedrock/claude"}, {"model": "gpt-4o"}, {"model": "huggingface/x"}, {}]
)
def test_uninferable_kind_names_key_path_and_model(params):
    with pytest.raises(FailoverConfigError) as err:
        infer_kind(params, None, WHERE)
    message = str(err.value)
    assert WHERE in message
    assert repr(params.get("model", "")) in message
    assert "vllm" in message and "anthropic" in message


def test_every_kind_has_an_adapter():
    for kind in KINDS:
        adapter = get_adapter(kind)
        assert adapter.kind == kind
    assert {k for k in KINDS if get_adapter(k).self_hosted} == {"vllm", "sglang", "llamacpp", "tgi"}
    with pytest.raises(FailoverConfigError, match="unknown provider kind 'nope'"):
        get_adapter("nope")


def config(raw: dict | None = None):
    return parse_deployment_config(raw or {}, "model_list[0].model_info.failover")


def test_self_hosted_urls_default_to_the_server_root():
    target = build_target(
        "a", {"model": "hosted_vllm/m", "api_base": "http://gpu-1:8000/v1/"}, config(), ProbeThresholds()
    )
    assert (target.health_url, target.metrics_url) == (
        "http://gpu-1:8000/health",
        "http://gpu-1:8000/metrics",
    )
    prefixed = build_target(
        "b", {"model": "hosted_vllm/m", "api_base": "http://gw/vllm-a/v1"}, config(), ProbeThresholds()
    )
    assert prefixed.health_url == "http://gw/vllm-a/health"


def test_gpu_url_and_source():
    params = {"model": "hosted_vllm/m", "api_base": "http://gpu-1:8000/v1"}
    agent = build_target("a", params, config({"gpu_url": "http://gpu-1:9400"}), ProbeThresholds())
    assert (agent.gpu_url, agent.gpu_source) == ("http://gpu-1:9400", "agent")
    dcgm = build_target(
        "a", params, config({"gpu_url": "http://gpu-1:9400", "gpu_source": "dcgm"}), ProbeThresholds()
    )
    assert dcgm.gpu_source == "dcgm"


def test_thresholds_are_merged_with_overrides_once():
    base = ProbeThresholds(max_kv_cache_usage=0.9, max_probe_latency_s=2.0)
    overrides = HealthOverrides(max_kv_cache_usage=0.5)
    merged = merge_thresholds(base, overrides)
    assert merged.max_kv_cache_usage == 0.5 and merged.max_probe_latency_s == 2.0
    assert merge_thresholds(merged, overrides) == merged
    target = build_target(
        "a",
        {"model": "hosted_vllm/m", "api_base": "http://h/v1"},
        config({"health": {"max_probe_latency_s": 0.5}}),
        base,
    )
    assert target.thresholds.max_probe_latency_s == 0.5


@pytest.mark.parametrize(
    ("params", "raw", "fragment"),
    [
        (
            {"model": "hosted_vllm/m"},
            {},
            "model_list[4].litellm_params.api_base: required to probe a deployment of kind 'vllm'",
        ),
        (
            {"model": "hosted_vllm/m", "api_base": "gpu-1:8000"},
            {},
            "model_list[4].litellm_params.api_base: must be an http(s) URL",
        ),
        (
            {"model": "hosted_vllm/m", "api_base": "http://h/v1"},
            {"gpu_url": "ftp://x"},
            "model_list[4].model_info.failover.gpu_url: must be an http(s) URL",
        ),
        (
            {"model": "openai/x", "api_base": "http://h/v1"},
            {"gpu_url": "http://h:9400"},
            "model_list[4].model_info.failover.gpu_url: not used by the hosted kind 'openai-compatible'",
        ),
        (
            {"model": "hosted_vllm/m", "api_base": "os.environ/UNSET_BASE_X"},
            {},
            "model_list[4].litellm_params.api_base: environment variable UNSET_BASE_X is not set",
        ),
        ({"model": "mystery"}, {}, "model_list[4].model_info.failover.provider: cannot infer"),
    ],
)
def test_configuration_errors_name_the_key(params, raw, fragment):
    with pytest.raises(FailoverConfigError) as err:
        build_prober("x", params, config(raw), ProbeThresholds(), where="model_list[4]")
    assert fragment in str(err.value)


def test_secrets_resolve_from_the_environment_and_stay_out_of_repr(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-env-secret-value")
    prober = build_prober(
        "a", {"model": "anthropic/claude", "api_key": "os.environ/MY_KEY"}, config(), ProbeThresholds()
    )
    assert prober.target.api_key == "sk-env-secret-value"
    assert "sk-env-secret-value" not in repr(prober) + repr(prober.target)
    assert prober.target.health_url == "https://api.anthropic.com/v1/models"


def test_each_build_gives_a_fresh_prober():
    params = {"model": "hosted_vllm/m", "api_base": "http://h/v1"}
    cfg = config({"gpu_url": "http://h:9400", "gpu_source": "dcgm"})
    assert build_prober("a", params, cfg, ProbeThresholds()) is not build_prober(
        "a", params, cfg, ProbeThresholds()
    )

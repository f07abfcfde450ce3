"""The proxy's config.yaml as the plugin reads it: includes, ``os.environ/``, the plugin's
environment variables, and configuration errors that name the deployment and suggest the fix."""

from __future__ import annotations

from pathlib import Path

import litellm
import pytest
import yaml

from litellm_failover import attach
from litellm_failover.config_file import load_proxy_config, read_config_file
from litellm_failover.proxy import startup_banner
from litellm_failover.settings import DEFAULT_DATABASE_URL, FailoverConfigError, parse_settings


def deployment(name: str, order: int = 1, **info: object) -> dict:
    return {
        "model_name": "chat",
        "litellm_params": {
            "model": "hosted_vllm/x",
            "api_base": f"http://{name}.invalid:8000/v1",
            "order": order,
        },
        "model_info": info,
    }


def write(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(autouse=True)
def no_plugin_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LITELLM_FAILOVER_DATABASE_URL", "LITELLM_FAILOVER_REDIS_URL", "LITELLM_FAILOVER_CHANNEL"):
        monkeypatch.delenv(name, raising=False)


def test_include_files_are_merged_as_litellm_merges_them(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "nested.yaml", {"failover_settings": {"strategy": "weighted"}})
    write(tmp_path / "models.yaml", {"model_list": [deployment("b", id="b")], "include": ["sub/nested.yaml"]})
    path = write(
        tmp_path / "config.yaml", {"include": ["models.yaml"], "model_list": [deployment("a", id="a")]}
    )
    merged = read_config_file(path)
    assert "include" not in merged
    assert [d["model_info"]["id"] for d in merged["model_list"]] == ["a", "b"]  # lists are extended
    config = load_proxy_config(path)
    assert config.settings.strategy == "weighted"  # from a file included by an included file
    assert [spec.deployment_id for spec in config.deployments] == ["a", "b"]


def test_a_missing_include_is_a_configuration_error(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yaml", {"include": ["nowhere.yaml"]})
    with pytest.raises(FailoverConfigError, match=r"included file not found: nowhere\.yaml"):
        load_proxy_config(path)


def test_the_database_url_comes_from_the_file_then_the_environment_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = write(tmp_path / "bare.yaml", {"model_list": [deployment("a", id="a")]})
    config = load_proxy_config(bare)
    assert (config.settings.database_url, config.database_origin) == (DEFAULT_DATABASE_URL, "the default")

    monkeypatch.setenv("LITELLM_FAILOVER_DATABASE_URL", "sqlite+aiosqlite:///from-env.db")
    monkeypatch.setenv("LITELLM_FAILOVER_REDIS_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("LITELLM_FAILOVER_CHANNEL", "env-channel")
    config = load_proxy_config(bare)
    assert config.settings.database_url == "sqlite+aiosqlite:///from-env.db"
    assert config.database_origin == "$LITELLM_FAILOVER_DATABASE_URL"
    assert config.settings.redis_url == "redis://127.0.0.1:6379/3"
    assert config.settings.fleet.channel == "env-channel"

    monkeypatch.setenv("MY_DB", "sqlite+aiosqlite:///from-file.db")
    explicit = write(
        tmp_path / "explicit.yaml",
        {
            "model_list": [deployment("a", id="a")],
            "failover_settings": {
                "database_url": "os.environ/MY_DB",
                "redis_url": None,
                "fleet": {"channel": "file-channel"},
            },
        },
    )
    config = load_proxy_config(explicit)
    assert config.settings.database_url == "sqlite+aiosqlite:///from-file.db"  # the file wins
    assert config.database_origin == f"failover_settings.database_url in {explicit}"
    assert config.settings.redis_url is None  # set (to nothing) in the file: not filled in
    assert config.settings.fleet.channel == "file-channel"


def test_an_unset_environment_reference_names_its_key(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.yaml", {"failover_settings": {"alerts": {"webhook_urls": ["os.environ/NOPE_42"]}}}
    )
    with pytest.raises(FailoverConfigError) as info:
        load_proxy_config(path)
    assert "failover_settings.alerts.webhook_urls[0]: environment variable NOPE_42 is not set" in str(
        info.value
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"stratgy": "weighted"},
            "failover_settings.stratgy: unknown key; did you mean `strategy`?",
        ),
        ({"strategy": "round_robin"}, "(got 'round_robin'); did you mean `round-robin`?"),
        ({"groups": {"chat": {"in_tier": "wieghted"}}}, "groups.chat.in_tier: Input should be"),
        ({"groups": {"strategy": {"in_tier": "wieghted"}}}, "(got 'wieghted'); did you mean `weighted`?"),
        ({"groups": {"chat": {"strategi": "weighted"}}}, "groups.chat.strategi: unknown key"),
        ({"health": {"intervl_s": 1}}, "did you mean `interval_s`?"),
        ({"failback": {"mode": "automatic"}}, "did you mean `auto`?"),
    ],
)
def test_a_typo_gets_the_closest_valid_key_or_value(raw: dict, expected: str) -> None:
    with pytest.raises(FailoverConfigError) as info:
        parse_settings(raw)
    assert expected in str(info.value)


def test_no_suggestion_when_nothing_is_close() -> None:
    with pytest.raises(FailoverConfigError) as info:
        parse_settings({"strategy": "fastest", "zzzz": 1})
    assert "did you mean" not in str(info.value)
    assert len(info.value.problems) == 2


def test_deployments_are_named_by_id_and_every_problem_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.yaml",
        {
            "model_list": [
                deployment("a", id="gpu-a", failover={"gpu_ur": "http://a.invalid:9400"}),
                deployment("b", order=2, failover={"provider": "vlm"}),  # no id: named by position
            ],
            "failover_settings": {"stratgy": "weighted"},
        },
    )
    with pytest.raises(FailoverConfigError) as info:
        load_proxy_config(path)
    assert info.value.problems == [
        "failover_settings.stratgy: unknown key; did you mean `strategy`?",
        "deployment 'gpu-a': model_list[0].model_info.failover.gpu_ur: unknown key; did you mean `gpu_url`?",
        "model_list[1].model_info.failover.provider: Input should be 'vllm', 'sglang', 'llamacpp', "
        "'tgi', 'openai-compatible', 'openai', 'azure' or 'anthropic' (got 'vlm'); did you mean `vllm`?",
    ]
    assert str(info.value) == "invalid configuration: " + "; ".join(info.value.problems)
    banner = startup_banner(info.value, path).splitlines()
    assert banner[0] == banner[-1] == "=" * 78  # framed, so it stands out in the proxy's output
    assert [line.removeprefix("  - ") for line in banner[2:5]] == info.value.problems
    assert f"litellm-failover config check {path}" in banner[-2]


def test_attach_gives_the_same_text_as_the_config_file(tmp_path: Path) -> None:
    failover = {"helth_url": "http://a.invalid:8000/health"}
    router = litellm.Router(model_list=[deployment("a", id="gpu-a", failover=failover)])
    with pytest.raises(FailoverConfigError) as attached:
        attach(router, {})
    path = write(tmp_path / "config.yaml", {"model_list": [deployment("a", id="gpu-a", failover=failover)]})
    with pytest.raises(FailoverConfigError) as loaded:
        load_proxy_config(path)
    assert str(attached.value) == str(loaded.value)
    assert "deployment 'gpu-a': model_list[0].model_info.failover.helth_url" in str(attached.value)
    assert "did you mean `health_url`?" in str(attached.value)


# -- secrets in errors (issue 11 §5) ----------------------------------------------------------

SECRET = "s3cr3t-Pa55word-0123456789"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"redis_ur": f"redis://:{SECRET}@cache:6379"},
            "failover_settings.redis_ur: unknown key; did you mean",
        ),
        (
            {"redis_url": [f"redis://:{SECRET}@cache"]},
            "failover_settings.redis_url: Input should be a valid string",
        ),
        (
            {"alerts": {"timeout_s": SECRET}},
            "failover_settings.alerts.timeout_s: Input should be a valid number",
        ),
        (
            {"strategy": f"https://{SECRET}@x"},
            "failover_settings.strategy: Input should be 'primary-standby'",
        ),
        ({"alerts": {"webhook_headers": {"X-Key": 5}}}, "failover_settings.alerts.webhook_headers.X-Key:"),
    ],
)
def test_an_error_names_the_key_and_type_never_a_value_that_could_be_a_secret(
    raw: dict, expected: str
) -> None:
    with pytest.raises(FailoverConfigError) as info:
        parse_settings(raw)
    assert expected in str(info.value)
    assert SECRET not in str(info.value) and "5)" not in str(info.value)


def test_urls_with_credentials_hide_them_in_repr() -> None:
    settings = parse_settings(
        {"redis_url": f"redis://:{SECRET}@cache:6379/0", "database_url": f"postgresql://app:{SECRET}@db/x"}
    )
    assert settings.redis_url == f"redis://:{SECRET}@cache:6379/0"  # what connects gets the URL itself
    assert repr(settings.redis_url) == "SecretUrl('redis://***@cache:6379/0')"
    assert SECRET not in repr(settings) and SECRET not in repr(settings.database_url)


def test_a_yaml_error_gives_the_line_and_column_not_the_text(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"failover_settings:\n  redis_url: redis://:{SECRET}@h: x\n")
    with pytest.raises(FailoverConfigError) as info:
        load_proxy_config(str(path))
    column = len(f"  redis_url: redis://:{SECRET}@h") + 1
    assert str(info.value) == (
        f"invalid configuration: {path} is not valid YAML: mapping values are not allowed here "
        f"at line 2, column {column}"
    )

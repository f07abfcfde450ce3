"""``--config config.yaml`` on the CLI, where each URL comes from, and ``config check|schema``."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from test_store_cli import json_lines, seed
from waiting import free_port

from litellm_failover.cli import build_parser, main
from litellm_failover.cli._config_source import channel, database_url, redis_url
from litellm_failover.settings.schema import config_schema

pytest_plugins = ["services"]

DOCS_SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "failover-settings.schema.json"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LITELLM_FAILOVER_DATABASE_URL", "LITELLM_FAILOVER_REDIS_URL", "LITELLM_FAILOVER_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)  # the default SQLite file is relative: never the checkout's


def proxy_config(path: Path, **failover: object) -> str:
    config = {
        "model_list": [
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": "hosted_vllm/m",
                    "api_base": "http://p1.invalid:8000/v1",
                    "order": 1,
                },
                "model_info": {"id": "p1"},
            },
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": "hosted_vllm/m",
                    "api_base": "http://s1.invalid:8000/v1",
                    "order": 2,
                },
                "model_info": {"id": "s1"},
            },
        ],
        "litellm_settings": {"callbacks": ["litellm_failover.proxy_handler"]},
        "failover_settings": failover,
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_events_and_status_read_the_database_of_the_proxy_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/proxy.db"
    seed(url)
    monkeypatch.setenv("PROXY_DB_FOR_TEST", url)
    config = proxy_config(tmp_path / "config.yaml", database_url="os.environ/PROXY_DB_FOR_TEST")
    assert main(["events", "--config", config, "--json"]) == 0
    assert len(json_lines(capsys.readouterr().out)) == 4
    assert main(["status", "--config", config, "--json"]) == 0
    assert {row["deployment_id"] for row in json_lines(capsys.readouterr().out)} == {"p1", "s1"}
    assert main(["sessions", "list", "--config", config]) == 0
    assert main(["db", "current", "--config", config]) == 0
    assert "up to date" in capsys.readouterr().out


def test_the_database_url_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = proxy_config(tmp_path / "config.yaml", database_url="sqlite+aiosqlite:///from-config.db")
    bare = proxy_config(tmp_path / "bare.yaml")
    parse = build_parser().parse_args

    def source(*argv: str) -> tuple[str, str]:
        found = database_url(parse(["events", *argv]))
        return found.value, found.origin

    monkeypatch.setenv("LITELLM_FAILOVER_DATABASE_URL", "sqlite+aiosqlite:///from-env.db")
    assert source("--url", "sqlite:///x.db", "--config", config) == ("sqlite:///x.db", "--url")
    assert source("--config", config) == (
        "sqlite+aiosqlite:///from-config.db",
        f"--config {config} (failover_settings.database_url)",
    )
    assert source("--config", bare) == ("sqlite+aiosqlite:///from-env.db", "$LITELLM_FAILOVER_DATABASE_URL")
    assert source() == ("sqlite+aiosqlite:///from-env.db", "$LITELLM_FAILOVER_DATABASE_URL")
    monkeypatch.delenv("LITELLM_FAILOVER_DATABASE_URL")
    assert source("--config", bare) == ("sqlite+aiosqlite:///./litellm_failover.db", "the default")


def test_redis_url_and_channel_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_REDIS_FOR_TEST", "redis://:pw@127.0.0.1:6379/2")
    config = proxy_config(
        tmp_path / "config.yaml", redis_url="os.environ/FLEET_REDIS_FOR_TEST", fleet={"channel": "blue"}
    )
    parse = build_parser().parse_args
    args = parse(["drain", "p1", "--config", config])
    assert (redis_url(args).value, channel(args).value) == ("redis://:pw@127.0.0.1:6379/2", "blue")
    args = parse(["drain", "p1", "--config", config, "--redis-url", "redis://h:1/0", "--channel", "green"])
    assert (redis_url(args).origin, channel(args).value) == ("--redis-url", "green")
    monkeypatch.setenv("LITELLM_FAILOVER_REDIS_URL", "redis://env:1/0")
    monkeypatch.setenv("LITELLM_FAILOVER_CHANNEL", "env-channel")
    args = parse(["drain", "p1", "--config", proxy_config(tmp_path / "bare.yaml")])
    assert (redis_url(args).value, channel(args).value) == ("redis://env:1/0", "env-channel")
    args = parse(["drain", "p1"])
    assert (redis_url(args).origin, channel(args).origin) == (
        "$LITELLM_FAILOVER_REDIS_URL",
        "$LITELLM_FAILOVER_CHANNEL",
    )


@pytest.mark.redis
def test_operator_commands_go_through_the_redis_of_the_proxy_config(
    tmp_path: Path, redis_base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = proxy_config(tmp_path / "config.yaml", redis_url=redis_base_url, fleet={"channel": "cfg-test"})
    assert main(["drain", "p1", "--config", config, "--wait", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["transport"] == "redis" and "cfg-test" in report["where"]


def test_a_database_that_cannot_be_opened_names_the_url_and_where_it_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status"]) == 1  # nothing given: the default file, which is not there
    err = capsys.readouterr().err
    assert (
        "database file not found" in err
        and "sqlite+aiosqlite:///./litellm_failover.db from the default" in err
    )
    assert "--config" in err and "$LITELLM_FAILOVER_DATABASE_URL" in err
    assert not (tmp_path / "litellm_failover.db").exists()

    secret = "Hunter2-pw"
    closed = f"postgresql+asyncpg://postgres:{secret}@127.0.0.1:{free_port()}/test"
    config = proxy_config(tmp_path / "config.yaml", database_url=closed)
    assert main(["events", "--config", config]) == 1
    err = capsys.readouterr().err
    assert secret not in err and len(err.strip().splitlines()) == 1
    assert "postgresql+asyncpg://postgres:***@127.0.0.1" in err
    assert f"from --config {config} (failover_settings.database_url)" in err

    missing = proxy_config(tmp_path / "typo.yaml", database_url=f"sqlite+aiosqlite:///{tmp_path}/typo.db")
    assert main(["status", "--config", missing]) == 1
    err = capsys.readouterr().err
    assert "database file not found" in err and "db upgrade" in err and "--config" in err


def test_an_unset_environment_reference_in_the_config_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = proxy_config(tmp_path / "config.yaml", database_url="os.environ/NOT_SET_FOR_THE_CLI_42")
    assert main(["events", "--config", config]) == 2
    err = capsys.readouterr().err
    assert (
        f"{config}: failover_settings.database_url: environment variable NOT_SET_FOR_THE_CLI_42 is not set"
        in err
    )
    assert main(["events", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_config_check_accepts_a_good_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = proxy_config(tmp_path / "config.yaml", groups={"chat": {"strategy": "weighted"}})
    assert main(["config", "check", config]) == 0
    out = capsys.readouterr().out
    assert f"{config}: OK: 1 model group, 2 deployments, strategy primary-standby" in out
    assert "chat: weighted: p1 (tier 1), s1 (tier 2)" in out
    assert "database: sqlite+aiosqlite:///./litellm_failover.db (from the default)" in out
    assert main(["config", "check", config, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["deployments"] == 2
    assert report["groups"]["chat"]["deployments"] == [{"id": "p1", "tier": 1}, {"id": "s1", "tier": 2}]
    assert report["database"]["from"] == "the default"


def test_config_check_lists_every_error_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = proxy_config(tmp_path / "config.yaml", stratgy="weighted", health={"interval_s": -1})
    assert main(["config", "check", config]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        "did you mean `strategy`?" in captured.err and "failover_settings.health.interval_s" in captured.err
    )
    assert main(["config", "check", config, "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and len(report["errors"]) == 2
    assert main(["config", "check", str(tmp_path / "absent.yaml")]) == 2


def test_the_published_schema_is_the_one_the_code_generates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == config_schema()
    assert main(["config", "schema", "--output", str(tmp_path / "schema.json")]) == 0
    assert json.loads((tmp_path / "schema.json").read_text()) == printed
    assert json.loads(DOCS_SCHEMA.read_text()) == printed, (
        "docs/failover-settings.schema.json is stale: `litellm-failover config schema > "
        "docs/failover-settings.schema.json`"
    )


def test_the_schema_checks_the_failover_parts_and_leaves_litellm_keys_open(tmp_path: Path) -> None:
    validator = jsonschema.Draft202012Validator(config_schema())
    good = yaml.safe_load(Path(proxy_config(tmp_path / "good.yaml", strategy="weighted")).read_text())
    good["general_settings"] = {"master_key": "sk-1"}
    assert list(validator.iter_errors(good)) == []
    bad = yaml.safe_load(Path(proxy_config(tmp_path / "bad.yaml", stratgy="weighted")).read_text())
    bad["model_list"][0]["model_info"]["failover"] = {"provider": "vlm"}
    messages = [error.message for error in validator.iter_errors(bad)]
    assert any("stratgy" in message for message in messages)
    assert any("'vlm'" in message for message in messages)

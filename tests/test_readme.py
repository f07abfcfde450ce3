"""README is part of the product: every setting is documented, and CI runs README's commands."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from litellm_failover.settings import DeploymentFailoverConfig, FailoverSettings, GroupSettings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def setting_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += setting_paths(annotation, f"{prefix}{name}.")
        elif name == "groups":
            paths += setting_paths(GroupSettings, f"{prefix}groups.<model_name>.")
        else:
            paths.append(prefix + name)
    return paths


def test_every_failover_setting_is_documented():
    missing = [p for p in setting_paths(FailoverSettings) if f"| `{p}` |" not in README]
    assert missing == []


def test_every_deployment_setting_is_documented():
    missing = [p for p in setting_paths(DeploymentFailoverConfig) if f"| `{p}` |" not in README]
    assert missing == []


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "python3 -m venv .venv && . .venv/bin/activate && pip install '.[test]' && pytest"
    assert test_command in README and test_command in ci
    assert "pip install . && litellm-failover demo" in README
    assert "ruff check ." in ci and "ruff format --check ." in ci


def test_every_cli_command_is_documented():
    from litellm_failover.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    missing = [name for name in subparsers.choices if f"litellm-failover {name}" not in README]
    assert missing == []

"""The docs site builds in strict mode, and its reference pages cover everything the code has.

The reference pages are generated from the code at build time (docs/hooks/reference.py): the
settings from the pydantic models, the CLI from its parser, the events from
``litellm_failover.events.EVENT_TYPES``, the metrics from ``litellm_failover.metrics.catalog``.
Anything without a description stops the build, and so does a broken link or anchor.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest
import yaml
from docs_text import ROOT, code_blocks, pages, reference_hook
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from litellm_failover.events import EVENT_TYPES, EventDoc, EventType
from litellm_failover.metrics.catalog import CATALOG
from litellm_failover.settings import DeploymentFailoverConfig, FailoverSettings


def test_the_site_builds_in_strict_mode_without_a_warning(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    assert {"index.html", "reference/settings/index.html", "reference/events/index.html"} <= built


def test_a_broken_link_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    (docs / "hooks").mkdir(parents=True)
    (docs / "hooks" / "reference.py").write_text((ROOT / "docs" / "hooks" / "reference.py").read_text())
    (docs / "index.md").write_text("# Home\n\nSee [nothing](missing.md) and [here](#nowhere).\n")
    config = (ROOT / "mkdocs.yml").read_text().split("\nnav:")[0]
    (tmp_path / "mkdocs.yml").write_text(config)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode != 0
    assert "missing.md" in result.stderr and "#nowhere" in result.stderr


# -- nothing without a description ---------------------------------------------------------------


class _Undocumented(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documented: int = Field(1, description="Has one.")
    bare: int = 2


def test_a_setting_without_a_description_fails():
    with pytest.raises(reference_hook().MissingDescription, match=r"failover_settings\.bare"):
        reference_hook().settings_markdown(_Undocumented)


def test_a_cli_flag_without_help_fails():
    parser = argparse.ArgumentParser(prog="litellm-failover")
    commands = parser.add_subparsers(dest="command")
    command = commands.add_parser("thing", help="Does a thing.")
    command.add_argument("--quiet", action="store_true")
    with pytest.raises(reference_hook().MissingDescription, match="litellm-failover thing `--quiet`"):
        reference_hook().cli_markdown(parser)


def test_an_event_type_or_details_key_without_a_description_fails():
    hook = reference_hook()
    registry = dict(EVENT_TYPES)
    del registry[EventType.UNDRAINED]
    with pytest.raises(hook.MissingDescription, match="undrained"):
        hook.events_markdown(EventType, registry)
    registry = {**EVENT_TYPES, EventType.FAILOVER: EventDoc("The group moved.", {"to": " "})}
    with pytest.raises(hook.MissingDescription, match=r"failover\.details\.to"):
        hook.events_markdown(EventType, registry)


def test_a_metric_without_help_fails():
    from dataclasses import replace

    broken = [*CATALOG[:-1], replace(CATALOG[-1], help="")]
    with pytest.raises(reference_hook().MissingDescription, match=CATALOG[-1].name):
        reference_hook().metrics_markdown(broken)


# -- the reference pages cover the code ------------------------------------------------------


def test_every_event_type_has_its_section():
    assert len(EventType) == 31
    page = pages()["docs/reference/events.md"]
    missing = [t.value for t in EventType if f"## `{t.value}` {{#{t.value}}}" not in page]
    assert missing == []


def test_every_metric_is_in_the_reference():
    page = pages()["docs/reference/metrics.md"]
    assert [spec.name for spec in CATALOG if f"| `{spec.name}` |" not in page] == []


def test_every_command_has_its_section():
    page = pages()["docs/reference/cli.md"]
    commands = [command for command, _, _ in reference_hook().cli_commands()]
    assert "litellm-failover chaos drill" in commands and "litellm-failover sessions show" in commands
    assert [c for c in commands if f"### `{c}`" not in page] == []


def test_every_metric_named_in_the_docs_exists():
    names = {spec.name for spec in CATALOG}
    names |= {spec.name + suffix for spec in CATALOG for suffix in ("_bucket", "_sum", "_count")}
    mentioned = {
        (path, name)
        for path, text in pages().items()
        for name in re.findall(r"\blitellm_failover_[a-z_]+[a-z]", text)
    }
    assert sorted((p, n) for p, n in mentioned if n not in names) == []


def _unknown_keys(model: type[BaseModel], block: object) -> list[str]:
    try:
        model.model_validate(block)
    except ValidationError as exc:
        return [".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "extra_forbidden"]
    return []


def test_every_setting_shown_in_a_yaml_example_exists():
    """Examples are validated by the models themselves; only unknown keys count (an example may
    show `os.environ/NAME` where the proxy would put the value)."""
    checked, unknown = 0, []
    for path, text in pages().items():
        for language, body in code_blocks(text):
            if language != "yaml":
                continue
            config = yaml.safe_load(body)
            if not isinstance(config, dict):
                continue
            if "failover_settings" in config:
                checked += 1
                keys = _unknown_keys(FailoverSettings, config["failover_settings"])
                unknown += [f"{path}: {k}" for k in keys]
            for entry in config.get("model_list") or []:
                block = (entry.get("model_info") or {}).get("failover")
                if block is not None:
                    checked += 1
                    keys = _unknown_keys(DeploymentFailoverConfig, block)
                    unknown += [f"{path}: {k}" for k in keys]
    assert checked >= 5
    assert unknown == []

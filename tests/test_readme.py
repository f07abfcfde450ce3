"""The documentation is part of the product: README.md (the front page) and the site under docs/.
Every setting and command is documented, the tables are well formed, the commands shown are ones
the CLI accepts, and CI runs README's commands."""

from __future__ import annotations

import re
import shlex
import typing

import pytest
from docs_text import ROOT, code_blocks, outside_code, pages, reference_hook
from pydantic import BaseModel

from litellm_failover.settings import DeploymentFailoverConfig, FailoverSettings

README = (ROOT / "README.md").read_text()


def setting_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = typing.get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += setting_paths(annotation, f"{prefix}{name}.")
        elif name == "groups":
            paths.append(prefix + name)
            paths += setting_paths(args[1], f"{prefix}groups.<model_name>.")
        else:
            paths.append(prefix + name)
    return paths


def documented(text: str, paths: list[str]) -> list[str]:
    return [p for p in paths if f"| `{p}` |" not in text]


def test_every_failover_setting_is_documented():
    settings_page = pages()["docs/reference/settings.md"]
    assert documented(settings_page, setting_paths(FailoverSettings)) == []


def test_every_deployment_setting_is_documented():
    settings_page = pages()["docs/reference/settings.md"]
    assert documented(settings_page, setting_paths(DeploymentFailoverConfig)) == []


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "python3 -m venv .venv && . .venv/bin/activate && pip install '.[test]' && pytest"
    assert test_command in README and test_command in ci
    assert "pip install . && litellm-failover demo" in README
    assert "ruff check ." in ci and "ruff format --check ." in ci


def test_every_cli_command_is_documented():
    from litellm_failover.cli import build_parser

    text = "\n".join(pages().values())
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    missing = [name for name in subparsers.choices if f"litellm-failover {name}" not in text]
    assert missing == []


def table_rows(text: str) -> list[tuple[int, list[str]]]:
    """(line number, lines) of every markdown table outside code blocks: a header row, its
    separator and the rows under it."""
    tables, current = [], []
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if line.startswith("|"):
            if not current:
                current = [number]
            current.append(line)
        elif current:
            tables.append((current[0], current[1:]))
            current = []
    if current:
        tables.append((current[0], current[1:]))
    return tables


def cells(row: str) -> int:
    """Cells of one row: pipes that are not escaped separate them."""
    bare = row.replace("\\|", "")
    return bare.strip().strip("|").count("|") + 1


def malformed_tables(text: str) -> list[str]:
    problems = []
    for first_line, rows in table_rows(outside_code(text)):
        header = cells(rows[0])
        for offset, row in enumerate(rows[1:], 1):
            if cells(row) != header:
                problems.append(f"line {first_line + offset}: {cells(row)} cells, header has {header}")
    return problems


@pytest.mark.parametrize("path", sorted(pages()))
def test_every_table_row_has_its_header_s_columns(path):
    assert malformed_tables(pages()[path]) == []


def test_a_stray_row_is_caught():
    table = "| key | default | meaning |\n| --- | --- | --- |\n| `a` | `1` | fine |\n| `b` | pasted |\n"
    assert malformed_tables(table) == ["line 4: 2 cells, header has 3"]
    assert malformed_tables("| a | b |\n|---|---|\n| `x\\|y` | z |\n") == []


def test_readme_links_to_files_that_exist():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", outside_code(README))
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert missing == []


INLINE_COMMAND = re.compile(r"`(litellm-failover [^`]+)`")
PLACEHOLDERS = ("[", "|", "...", "(")


def shown_commands() -> list[tuple[str, str]]:
    """(page, command line) of every `litellm-failover ...` line in a shell code block, and of every
    inline one that is a whole command line (not a bare command name, no `[OPTION]` or `a|b`
    placeholders)."""
    names = {command for command, _, _ in reference_hook().cli_commands()}  # a name, not a use
    found = []
    for path, text in pages().items():
        for command in INLINE_COMMAND.findall(outside_code(text)):
            if command not in names and not any(mark in command for mark in PLACEHOLDERS):
                found.append((path, command))
        for language, body in code_blocks(text):
            if language not in ("", "sh", "bash"):
                continue
            for line in body.splitlines():
                for part in line.split("&&"):
                    part = part.split(" #")[0].strip()
                    if part.startswith("litellm-failover "):
                        found.append((path, part))
    return found


def test_every_command_shown_is_one_the_cli_accepts():
    from litellm_failover.cli import build_parser

    commands = shown_commands()
    assert len(commands) > 20
    refused = []
    for path, command in commands:
        try:
            build_parser().parse_args(shlex.split(command)[1:])
        except SystemExit:
            refused.append(f"{path}: {command}")
    assert refused == []

"""The wheel holds every package: CI installs the project as a wheel (``pip install '.[test]'``),
not editable, so a package missing from ``[tool.setuptools] packages`` imports fine in a developer's
editable checkout and fails only there. Every folder with an ``__init__.py`` under a mapped source
directory must be listed, and nothing listed may be missing."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tool_setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def _packages_on_disk(package_dir: dict[str, str]) -> set[str]:
    found: set[str] = set()
    for package, folder in package_dir.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base).parts
            found.add(".".join((package, *relative)))
    return found


def test_every_package_folder_is_in_the_wheel() -> None:
    setuptools = _tool_setuptools()
    listed = set(setuptools["packages"])
    on_disk = _packages_on_disk(setuptools["package-dir"])
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - on_disk == set(), "listed in pyproject.toml but no such package folder"

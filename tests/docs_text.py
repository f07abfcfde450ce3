"""The documentation as text: README.md and every page under docs/, with the reference parts filled
in by the same hook the site build runs (docs/hooks/reference.py), so tests read what users read."""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@functools.cache
def reference_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference_hook", DOCS / "hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def pages() -> dict[str, str]:
    """Path relative to the repository root -> markdown, generated parts rendered."""
    texts = {"README.md": (ROOT / "README.md").read_text()}
    for path in sorted(DOCS.rglob("*.md")):
        texts[str(path.relative_to(ROOT))] = reference_hook().render(path.read_text())
    return texts


def all_text() -> str:
    return "\n".join(pages().values())


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def outside_code(text: str) -> str:
    return FENCE.sub("", text)

"""Running iproute2 (``ip``, ``tc``) for the drill's network namespaces, with timeouts.

Every failure is a ``NetnsError`` naming the command and what it printed, because a drill that
cannot build its network must say which step the machine refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_CMD_TIMEOUT_S = 10.0
_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


class NetnsError(RuntimeError):
    """An ``ip``/``tc`` command failed or timed out; the message names the command and its stderr."""


def find_tool(name: str) -> str | None:
    """``ip``/``tc`` live in sbin, which a non-root PATH often lacks."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        raise NetnsError(f"iproute2 `{name}` not found (looked in PATH and {', '.join(_SBIN_DIRS)})")
    return path


def _run(args: Sequence[str], *, timeout: float = _CMD_TIMEOUT_S, check: bool = True) -> str:
    """Run one command with a timeout; its stdout, or ``NetnsError`` naming the command and stderr."""
    shown = " ".join(args)
    try:
        done = subprocess.run(
            list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise NetnsError(f"`{shown}` did not finish within {timeout}s") from exc
    except OSError as exc:
        raise NetnsError(f"`{shown}` could not run: {exc}") from exc
    if check and done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip() or "(no output)"
        raise NetnsError(f"`{shown}` failed with exit status {done.returncode}: {detail}")
    return done.stdout


def ip(*args: str, check: bool = True) -> str:
    return _run([tool("ip"), *args], check=check)


def tc(*args: str, check: bool = True) -> str:
    return _run([tool("tc"), *args], check=check)


def ip_json(*args: str) -> list[dict[str, Any]]:
    text = ip("-j", *args).strip()
    return json.loads(text) if text else []

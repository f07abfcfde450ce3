"""What every settings model shares: unknown keys are errors, and errors name their key path.

Every model forbids unknown keys, so a typo is an error naming its key path rather than a
setting silently ignored. ``FailoverConfigError`` carries one message with the path and value.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class FailoverConfigError(ValueError):
    """A configuration error; the message names the key path and the value at fault."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def format_error(root: str, error: ValidationError) -> str:
    """One message for every error pydantic found, each with its key path and value (secrets shown
    by their message only)."""
    parts = []
    for item in error.errors():
        path = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
        if (item.get("ctx") or {}).get("secret"):
            parts.append(f"{path}: {item['msg']}")  # the value is a secret (see AlertSettings)
            continue
        value = item.get("input")
        shown = "<missing>" if item["type"] == "missing" else repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        parts.append(f"{path}: {item['msg']} (got {shown})")
    return "invalid configuration: " + "; ".join(parts)

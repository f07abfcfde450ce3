"""What every settings model shares: unknown keys are errors, and errors name their key path.

Every model forbids unknown keys, so a typo is an error naming its key path rather than a
setting silently ignored. ``FailoverConfigError`` carries one message with the path and value,
and the same problems one by one, for a report that gives each its own line.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from litellm_failover.settings.hints import suggestion

ERROR_PREFIX = "invalid configuration: "


class FailoverConfigError(ValueError):
    """A configuration error; the message names the key path and the value at fault.

    ``problems`` holds each problem without the common prefix (the message joins them with
    "; "); raised with a message alone, the message is the one problem.
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems else [message.removeprefix(ERROR_PREFIX)]

    @classmethod
    def of(cls, problems: Sequence[str]) -> FailoverConfigError:
        return cls(ERROR_PREFIX + "; ".join(problems), problems)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _problem(root: str, model: type[BaseModel], item: dict) -> str:
    path = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
    if (item.get("ctx") or {}).get("secret"):
        return f"{path}: {item['msg']}"  # the value is a secret (see AlertSettings)
    value = item.get("input")
    if item["type"] == "extra_forbidden":
        text = f"{path}: unknown key (got {_shown(value)})"
    else:
        shown = "<missing>" if item["type"] == "missing" else _shown(value)
        text = f"{path}: {item['msg']} (got {shown})"
    close = suggestion(model, item["loc"], item["type"], value)
    return f"{text}; did you mean `{close}`?" if close else text


def _shown(value: object) -> str:
    shown = repr(value)
    return shown[:77] + "..." if len(shown) > 80 else shown


def config_error(root: str, model: type[BaseModel], error: ValidationError) -> FailoverConfigError:
    """One error for every problem pydantic found, each with its key path and value (secrets shown
    by their message only) and, for a typo, the closest valid key or value."""
    return FailoverConfigError.of([_problem(root, model, item) for item in error.errors()])

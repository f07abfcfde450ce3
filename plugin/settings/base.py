"""What every settings model shares: unknown keys are errors, and errors name their key path.

Every model forbids unknown keys, so a typo is an error naming its key path rather than a
setting silently ignored. ``FailoverConfigError`` carries one message with the path and the
expected type, and the same problems one by one, for a report that gives each its own line.

An error is printed at start-up and by ``config check``, so it never shows a value that could be
a secret (a typo'd ``redis_ur: redis://:pw@host`` is a URL with a password): a value is shown
only where it cannot be one (a number, a bool, or a short word compared against a field's
allowed choices); anything else is named by its type, and nothing under a secret field is shown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from litellm_failover.settings.hints import is_secret, suggestion

ERROR_PREFIX = "invalid configuration: "


class FailoverConfigError(ValueError):
    """A configuration error; the message names the key path and what is wrong (a value only
    where it cannot be a secret).

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


# A value compared against a field's choices (``round_robin`` for ``round-robin``) is shown when it
# is shaped like one: a short word, never a URL, an address or a token.
_CHOICE_SHAPE = re.compile(r"[A-Za-z][A-Za-z_\- ]{0,23}")
_TYPE_NAMES = {str: "a string", list: "a list", dict: "a mapping", bytes: "bytes"}


def _problem(root: str, model: type[BaseModel], item: dict) -> str:
    path = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
    secret = is_secret(model, item["loc"])
    if (item.get("ctx") or {}).get("secret") or (secret and item["type"] != "missing"):
        return f"{path}: {item['msg']}"  # the value is a secret (see AlertSettings, SecretUrl)
    value = item.get("input")
    if item["type"] == "extra_forbidden":
        # A string under a misspelt key may be the secret of the key meant (``redis_ur``).
        text = f"{path}: unknown key" + (f" (got {value!r})" if _harmless(value) else "")
    else:
        shown = "<missing>" if item["type"] == "missing" else _shown(value, item["type"])
        text = f"{path}: {item['msg']} (got {shown})"
    close = suggestion(model, item["loc"], item["type"], value)
    return f"{text}; did you mean `{close}`?" if close else text


def _harmless(value: object) -> bool:
    """A value that cannot be a secret, whatever the field: nothing, a bool or a number."""
    return value is None or isinstance(value, bool | int | float)


def _shown(value: object, error_type: str) -> str:
    """The value where it cannot be a secret, else its type (``a string``, ``a mapping``)."""
    if _harmless(value):
        return repr(value)
    if error_type == "literal_error" and isinstance(value, str) and _CHOICE_SHAPE.fullmatch(value):
        return repr(value)
    return _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


def config_error(root: str, model: type[BaseModel], error: ValidationError) -> FailoverConfigError:
    """One error for every problem pydantic found, each with its key path, what was expected and
    what was got (a value only where it cannot be a secret) and, for a typo, the closest valid key
    or value."""
    return FailoverConfigError.of([_problem(root, model, item) for item in error.errors()])

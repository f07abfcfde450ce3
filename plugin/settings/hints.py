"""The "did you mean ...?" of a configuration error: the closest valid key or value.

A typo in config.yaml (``stratgy``, ``round_robin``) is refused with its key path; the fix is
usually one edit away, so the message names the closest valid spelling. Valid keys come from the
settings model at the error's location, valid values from the field's ``Literal`` type, so a
new setting or choice is suggested without a list kept here.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

_CUTOFF = 0.6  # difflib's own default: close enough that the suggestion is likely what was meant


def _literals_in(annotation: Any) -> list[str]:
    """The string choices of a ``Literal`` field, also inside ``Optional``/``Annotated``."""
    if typing.get_origin(annotation) is Literal:
        return [str(value) for value in typing.get_args(annotation)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return [choice for arg in typing.get_args(annotation) for choice in _literals_in(arg)]
    return []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``; anything else as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _field(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[type[BaseModel] | None, Any]:
    """Walk ``loc`` from ``model``: the last model on the path, and the last key's annotation
    (``None`` when that key is not one of the model's: an unknown key).

    A dict key or list index in the path (``groups.chat.strategy``, ``webhook_urls[0]``) steps to
    the type the container holds; a path that leaves the models gives ``(None, None)``.
    """
    current: Any = model
    holder: type[BaseModel] | None = None
    for part in loc:
        current = _unwrap(current)
        if typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None, None
        holder = current
        info = holder.model_fields.get(str(part))
        if info is None:
            return holder, None
        current = info.annotation
    return holder, current


def suggestion(model: type[BaseModel], loc: Sequence[int | str], error_type: str, value: Any) -> str | None:
    """The closest valid key (for an unknown key) or value (for a value not among the choices)."""
    if error_type == "extra_forbidden" and loc:
        holder, _ = _field(model, loc)
        candidates = list(holder.model_fields) if holder is not None else []
        typed = str(loc[-1])
    elif error_type == "literal_error" and isinstance(value, str):
        _, annotation = _field(model, loc)
        candidates = _literals_in(annotation)
        typed = value
    else:
        return None
    close = difflib.get_close_matches(typed, candidates, n=1, cutoff=_CUTOFF)
    return close[0] if close else None


def is_secret(model: type[BaseModel], loc: Sequence[int | str]) -> bool:
    """Whether ``loc`` is, or lies under, a secret field: one kept out of ``repr`` (a URL with
    credentials, an alert destination, a header value), whose value no error may show."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return False
        info = current.model_fields.get(str(part))
        if info is None:
            return False
        if not info.repr:
            return True
        current = info.annotation
    return False

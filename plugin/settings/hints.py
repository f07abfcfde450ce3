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


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The settings models an annotation can hold (``X``, ``X | None``, ``dict[str, X]``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def _literals_in(annotation: Any) -> list[str]:
    """The string choices of a ``Literal`` field, also inside ``Optional``/``Annotated``."""
    if typing.get_origin(annotation) is Literal:
        return [str(value) for value in typing.get_args(annotation)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return [choice for arg in typing.get_args(annotation) for choice in _literals_in(arg)]
    return []


def _field(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[type[BaseModel] | None, Any]:
    """Walk ``loc`` from ``model``: the model holding the last key, and that key's annotation.

    Dict keys and list indexes in the path are stepped over (``groups.chat.strategy``); a path
    that leaves the models (a free-form dict) gives ``(None, None)``.
    """
    current: type[BaseModel] | None = model
    annotation: Any = None
    for index, part in enumerate(loc):
        if current is None:
            return None, None
        info = current.model_fields.get(str(part))
        if info is None:
            # A key of a ``dict[str, Model]`` or an index of a ``list[Model]``: stay on the model
            # type held, unless this is the last part (then it is an unknown key of ``current``).
            if index == len(loc) - 1:
                return current, None
            continue
        annotation = info.annotation
        if index < len(loc) - 1:
            models = _models_in(annotation)
            current = models[0] if models else None
    return current, annotation


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

"""mkdocs hook: the reference pages are generated from the code at build time, so they cannot drift.

A page asks for a generated part with a marker on a line of its own, ``<!-- reference:NAME -->``
(NAME in ``RENDERERS``); ``on_page_markdown`` puts the part in its place. Every part comes from
the code, never from a copy of it:

- settings: the pydantic models, walked by introspection from ``FailoverSettings`` (and the
  per-deployment ``DeploymentFailoverConfig``), so a setting added, moved or split into another
  module shows up with its type, default and ``description=``;
- cli: the argparse parser of ``litellm-failover`` (``build_parser()``), every command and flag;
- events: the registry ``litellm_failover.events.EVENT_TYPES``, every type and its details keys;
- metrics: the catalogue ``litellm_failover.metrics.catalog.CATALOG``, every metric and its labels.

Anything without a description (a setting, a flag, an event type, a details key, a metric) stops
the build with ``MissingDescription`` naming it: an undocumented addition cannot ship quietly.
The renderers are plain functions, so tests can call them without building the site.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel

MARKER = re.compile(r"^<!-- reference:([a-z-]+) -->$", re.MULTILINE)

# Where each settings section is explained, relative to reference/settings.md.
SECTION_PAGES = {
    "health": "../concepts/health-states.md",
    "outlier": "../concepts/outlier-detection.md",
    "weights": "../concepts/strategies.md",
    "writer": "tables.md",
    "sessions": "../concepts/sessions.md",
    "retention": "../guides/security.md#retention",
    "fleet": "../concepts/fleets.md",
    "alerts": "../guides/alerting.md",
    "metrics": "../guides/metrics.md",
    "control": "../guides/operator-controls.md",
    "failback": "../guides/switching.md",
    "drain": "../guides/switching.md",
    "shift": "../guides/switching.md",
    "streams": "../concepts/mid-stream-failover.md",
    "chaos": "../guides/fault-injection.md",
    "rescue": "../concepts/rescue.md",
}


class MissingDescription(ValueError):
    """Something user-facing has no description; the message lists every one of them."""


def _require(missing: list[str], what: str) -> None:
    if missing:
        raise MissingDescription(f"{what} without a description: {', '.join(missing)}")


def _cell(text: str) -> str:
    """Table-safe text: one line, pipes escaped (a bare ``|`` would split the cell)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _rst_to_md(text: str) -> str:
    """Docstrings use ``literal``; markdown wants `literal`."""
    return text.replace("``", "`")


# -- settings --------------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value, ensure_ascii=False)}`"  # as YAML would say it: true, [10.0, 50.0]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _mapping_model(annotation: Any) -> type[BaseModel] | None:
    """``dict[str, Model]``: a section keyed by a name (``groups.<model_name>``)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is dict and len(args) == 2 and _is_model(args[1]):
        return args[1]
    return None


def setting_sections(
    model: type[BaseModel], prefix: str = ""
) -> Iterator[tuple[str, str, list[tuple[str, Any]]]]:
    """(section path, intro, [(key path, field)]) for a model and, depth first, its sub-models."""
    leaves, nested = [], []
    for name, field in model.model_fields.items():
        if _is_model(field.annotation):
            nested.append((f"{prefix}{name}", field.annotation, field.description))
            continue
        keyed = _mapping_model(field.annotation)
        if keyed is not None:
            nested.append((f"{prefix}{name}.<{_key_name(name)}>", keyed, field.description))
        leaves.append((prefix + name, field))
    intro = _rst_to_md(inspect.cleandoc(model.__doc__ or ""))
    yield prefix.rstrip("."), intro, leaves
    for path, sub, description in nested:
        sections = list(setting_sections(sub, path + "."))
        first_path, first_intro, first_leaves = sections[0]
        sections[0] = (first_path, first_intro or description or "", first_leaves)
        yield from sections


def _key_name(field_name: str) -> str:
    return "model_name" if field_name == "groups" else "name"


def _settings_table(model: type[BaseModel], root: str, heading: str, top: str) -> str:
    missing = [
        f"{root}.{path}"
        for _, _, leaves in setting_sections(model)
        for path, field in leaves
        if not (field.description or "").strip()
    ]
    _require(missing, "settings")
    out = []
    for section, intro, leaves in setting_sections(model):
        if not leaves:
            continue
        title = f"`{section}`" if section else top
        out += [f"{heading} {title}", ""]
        if intro:
            out += [intro, ""]
        page = SECTION_PAGES.get(section.split(".")[0]) if section else None
        if page:
            out += [f"See [the explanation]({page}).", ""]
        out += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        for path, field in leaves:
            out.append(
                f"| `{path}` | {_cell(_type_name(field.annotation))} | {_cell(_default(field))} "
                f"| {_cell(field.description)} |"
            )
        out.append("")
    return "\n".join(out)


def settings_markdown(model: type[BaseModel] | None = None) -> str:
    if model is None:
        from litellm_failover.settings import FailoverSettings as model
    return _settings_table(model, "failover_settings", "###", "Top level")


def deployment_settings_markdown(model: type[BaseModel] | None = None) -> str:
    if model is None:
        from litellm_failover.settings import DeploymentFailoverConfig as model
    return _settings_table(model, "model_info.failover", "###", "Deployment keys")


# -- command line ------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def cli_commands(
    parser: argparse.ArgumentParser | None = None, prog: str = "litellm-failover"
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(command line, help, parser) for every command, depth first, in the parser's order."""
    if parser is None:
        from litellm_failover.cli import build_parser

        parser = build_parser()
    for name, help_text, sub in _subcommands(parser):
        command = f"{prog} {name}"
        yield command, help_text, sub
        yield from cli_commands(sub, command)


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
    ]


def _argument_name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    names = ", ".join(f"`{option}`" for option in action.option_strings)
    takes_value = action.nargs != 0
    return f"{names} `{action.metavar or action.dest.upper()}`" if takes_value else names


def _argument_default(action: argparse.Action) -> str:
    if action.required or (not action.option_strings and action.nargs is None):
        return "required"
    default = action.default
    if default in (None, False, argparse.SUPPRESS, [], ""):
        return "optional" if not action.option_strings else ""
    return f"`{default}`"


def cli_markdown(parser: argparse.ArgumentParser | None = None) -> str:
    commands = list(cli_commands(parser))
    missing = [command for command, help_text, _ in commands if not help_text.strip()]
    missing += [
        f"{command} {_argument_name(action)}"
        for command, _, sub in commands
        for action in _arguments(sub)
        if not (action.help or "").strip()
    ]
    _require(missing, "commands and flags")
    out = []
    for command, help_text, sub in commands:
        out += [f"### `{command}`", "", _cell(help_text), ""]
        children = _subcommands(sub)
        if children:
            out += ["| command | what it does |", "| --- | --- |"]
            out += [f"| `{command} {name}` | {_cell(text)} |" for name, text, _ in children]
            out.append("")
            continue
        arguments = _arguments(sub)
        if arguments:
            out += ["| argument | default | meaning |", "| --- | --- | --- |"]
            out += [
                f"| {_argument_name(a)} | {_cell(_argument_default(a))} | {_cell(a.help or '')} |"
                for a in arguments
            ]
            out.append("")
    return "\n".join(out)


# -- events and metrics -------------------------------------------------------------------------


def events_markdown(types: Iterable[Any] | None = None, registry: Mapping[Any, Any] | None = None) -> str:
    """``types``: every event type (an enum of strings); ``registry``: type -> EventDoc."""
    if types is None or registry is None:
        from litellm_failover.events import EVENT_TYPES, EventType

        types, registry = EventType, EVENT_TYPES
    types = list(types)
    missing = [t.value for t in types if t not in registry or not registry[t].description.strip()]
    missing += [
        f"{t.value}.details.{key}"
        for t, doc in registry.items()
        for key, meaning in doc.details.items()
        if not meaning.strip()
    ]
    _require(missing, "event types and details keys")
    out = ["| event_type | written when |", "| --- | --- |"]
    out += [f"| [`{t.value}`](#{t.value}) | {_cell(registry[t].description)} |" for t in types]
    out.append("")
    for event_type in types:
        doc = registry[event_type]
        out += [f"## `{event_type.value}` {{#{event_type.value}}}", "", doc.description, ""]
        if doc.details:
            out += ["| details key | meaning |", "| --- | --- |"]
            out += [f"| `{key}` | {_cell(meaning)} |" for key, meaning in doc.details.items()]
        else:
            out.append("No `details` keys.")
        out.append("")
    return "\n".join(out)


def metrics_markdown(catalog: Iterable[Any] | None = None) -> str:
    """``catalog``: metric specs with ``name``, ``kind``, ``help``, ``labels`` and ``buckets``."""
    if catalog is None:
        from litellm_failover.metrics.catalog import CATALOG as catalog
    catalog = list(catalog)
    _require([spec.name for spec in catalog if not spec.help.strip()], "metrics")
    out = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    for spec in catalog:
        labels = ", ".join(f"`{label}`" for label in spec.labels)
        meaning = spec.help
        if spec.buckets:
            bounds = ", ".join(f"{b:g}" for b in spec.buckets)
            meaning += f" Series `{spec.name}_bucket` (le: {bounds}, +Inf), `_sum` and `_count`."
        out.append(f"| `{spec.name}` | {spec.kind.value} | {labels} | {_cell(meaning)} |")
    return "\n".join(out) + "\n"


RENDERERS: dict[str, Callable[[], str]] = {
    "settings": settings_markdown,
    "deployment-settings": deployment_settings_markdown,
    "cli": cli_markdown,
    "events": events_markdown,
    "metrics": metrics_markdown,
}


def render(markdown: str) -> str:
    """Replace every reference marker in ``markdown`` by its generated part."""

    def part(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in RENDERERS:
            raise MissingDescription(f"unknown reference part {name!r} (known: {', '.join(RENDERERS)})")
        return RENDERERS[name]()

    return MARKER.sub(part, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    from mkdocs.exceptions import PluginError

    try:
        return render(markdown)
    except MissingDescription as exc:
        raise PluginError(f"{page.file.src_path}: {exc}") from exc

"""The proxy's config.yaml, read the way LiteLLM reads it, for the proxy and the CLI alike.

One reader, so ``litellm-failover --config config.yaml`` sees what the proxy sees: the YAML file
with its ``include:`` files merged in (LiteLLM's rules: a path is relative to the file that names
it, lists are extended, other values replaced), ``os.environ/NAME`` values read from the
environment, and the plugin's environment variables filling settings the file leaves out. This
module imports neither LiteLLM nor the plugin core, so ``config check`` and the CLI stay fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from litellm_failover.deployments import DeploymentSpec, check_unique_ids, read_deployment
from litellm_failover.probes import build_probes
from litellm_failover.settings import (
    FailoverConfigError,
    FailoverSettings,
    parse_settings,
)

ENV_PREFIX = "os.environ/"
# The same names in the proxy and the CLI: each fills its setting where config.yaml has none.
DATABASE_URL_ENV = "LITELLM_FAILOVER_DATABASE_URL"
REDIS_URL_ENV = "LITELLM_FAILOVER_REDIS_URL"
CHANNEL_ENV = "LITELLM_FAILOVER_CHANNEL"


def _read_yaml(path: str) -> Mapping[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
    except FileNotFoundError:
        raise FailoverConfigError(f"invalid configuration: config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise FailoverConfigError(
            f"invalid configuration: {path} is not valid YAML: {_yaml_problem(exc)}"
        ) from None
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise FailoverConfigError(f"invalid configuration: {path} is not a YAML mapping")
    return config


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where (line and column), never the text there: the line at fault may
    be the one holding a password."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "unreadable"
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _include_path(entry: str, declared_in: str, root: str) -> str:
    """LiteLLM's rule: next to the file that declares it; a file next to the root config is
    still read when there is none next to the declaring one."""
    declared = os.path.abspath(os.path.join(os.path.dirname(declared_in), entry))
    beside_root = os.path.abspath(os.path.join(os.path.dirname(root), entry))
    return beside_root if not os.path.exists(declared) and os.path.exists(beside_root) else declared


def _entries(config: Mapping[str, Any], path: str) -> list[str]:
    entries = config.get("include") or []
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise FailoverConfigError(f"invalid configuration: {path}: 'include' must be a list of file paths")
    return entries


def read_config_file(path: str) -> dict[str, Any]:
    """The config with every ``include:`` merged in, ``os.environ/`` references still unresolved
    (each reader resolves only what it uses: the CLI must not need the alerting secrets)."""
    config = dict(_read_yaml(path))
    pending = [(entry, path) for entry in _entries(config, path)]
    loaded = {os.path.abspath(path)}
    while pending:
        entry, declared_in = pending.pop(0)
        location = _include_path(entry, declared_in, path)
        if location in loaded:
            continue
        loaded.add(location)
        if not os.path.exists(location):
            raise FailoverConfigError(
                f"invalid configuration: {declared_in}: included file not found: {entry}"
            )
        included = _read_yaml(location)
        for key, value in included.items():
            if key == "include":
                continue
            base = config.get(key)
            config[key] = [*base, *value] if isinstance(base, list) and isinstance(value, list) else value
        pending.extend((item, location) for item in _entries(included, location))
    config.pop("include", None)
    return config


def resolve_env(value: Any, where: str) -> Any:
    """LiteLLM's ``os.environ/NAME`` convention, applied to a value and everything under it; an
    unset variable is an error naming the key that refers to it."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value.removeprefix(ENV_PREFIX)
        if name not in os.environ:
            raise FailoverConfigError(
                f"invalid configuration: {where}: environment variable {name} is not set"
            )
        return os.environ[name]
    if isinstance(value, Mapping):
        return {key: resolve_env(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_env(item, f"{where}[{index}]") for index, item in enumerate(value)]
    return value


def failover_block(config: Mapping[str, Any]) -> Any:
    """The raw ``failover_settings`` block (``None`` when absent; not a mapping is left for
    ``parse_settings`` to refuse)."""
    return config.get("failover_settings")


def with_environment(block: Any) -> Any:
    """The block with the plugin's environment variables filling what it leaves out: the database
    URL, the Redis URL and the fleet channel, as the CLI does."""
    if block is not None and not isinstance(block, Mapping):
        return block
    filled = dict(block or {})
    if "database_url" not in filled and os.environ.get(DATABASE_URL_ENV):
        filled["database_url"] = os.environ[DATABASE_URL_ENV]
    if "redis_url" not in filled and os.environ.get(REDIS_URL_ENV):
        filled["redis_url"] = os.environ[REDIS_URL_ENV]
    fleet = filled.get("fleet")
    if os.environ.get(CHANNEL_ENV) and (
        fleet is None or (isinstance(fleet, Mapping) and "channel" not in fleet)
    ):
        filled["fleet"] = {**(fleet or {}), "channel": os.environ[CHANNEL_ENV]}
    return filled


def database_origin(block: Any, path: str) -> str:
    """Where the proxy takes its database URL from, in words (``config check`` says it)."""
    if isinstance(block, Mapping) and "database_url" in block:
        return f"failover_settings.database_url in {path}"
    if os.environ.get(DATABASE_URL_ENV):
        return f"${DATABASE_URL_ENV}"
    return "the default"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """A validated proxy config: the plugin's settings, LiteLLM's model list and the plugin's view
    of each deployment (named by position where the file gives no ``model_info.id``)."""

    path: str
    settings: FailoverSettings
    model_list: list[dict[str, Any]]
    deployments: list[DeploymentSpec]
    database_origin: str


def load_proxy_config(path: str) -> ProxyConfig:
    """Read and validate everything the plugin will use, as the proxy does at start-up.

    Every problem is reported at once, in one ``FailoverConfigError``: those of
    ``failover_settings``, then those of each deployment (checked against the default health
    settings when the block itself is invalid), each deployment named by its ``model_info.id``.
    """
    return validate_config(read_config_file(path), path)


def validate_config(config: Mapping[str, Any], path: str) -> ProxyConfig:
    """``load_proxy_config`` for a config already read: the proxy hands the one LiteLLM loaded
    (``include:`` files merged, ``os.environ/`` and secret-manager references resolved its way);
    ``path`` only names it in messages."""
    block = failover_block(config)
    problems: list[str] = []
    settings: FailoverSettings | None = None
    try:
        settings = parse_settings(resolve_env(with_environment(block), "failover_settings"))
    except FailoverConfigError as exc:
        problems.extend(exc.problems)
    model_list = config.get("model_list") or []
    if not isinstance(model_list, list) or not all(isinstance(entry, Mapping) for entry in model_list):
        raise FailoverConfigError.of([*problems, f"{path}: model_list must be a list of mappings"])
    deployments, deployment_problems = validate_model_list(model_list, settings or FailoverSettings())
    problems.extend(deployment_problems)
    if problems or settings is None:
        raise FailoverConfigError.of(problems)
    return ProxyConfig(path, settings, list(model_list), deployments, database_origin(block, path))


def validate_model_list(
    model_list: list[dict[str, Any]], settings: FailoverSettings
) -> tuple[list[DeploymentSpec], list[str]]:
    """Every deployment's ``model_info.failover`` and provider kind, checked before LiteLLM
    assigns ids: the deployments read, and the problems found (each deployment's first)."""
    specs: list[DeploymentSpec] = []
    problems: list[str] = []
    for index, raw in enumerate(model_list):
        try:
            spec = read_deployment(index, raw, settings.health, ids_assigned=False)
            build_probes([spec])
        except FailoverConfigError as exc:
            problems.extend(exc.problems)
        else:
            specs.append(spec)
    if not problems:
        try:
            check_unique_ids(specs)
        except FailoverConfigError as exc:
            problems.extend(exc.problems)
    return specs, problems

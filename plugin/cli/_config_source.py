"""Where a CLI command finds the database, Redis and the fleet channel: one place for all of them.

Every command that reads the store or talks to running proxies takes ``--config config.yaml``
(the proxy's own file) besides its explicit options. Each value is taken from the first of:
the command-line option, the config's ``failover_settings`` (``os.environ/NAME`` resolved and
``include:`` files merged, as the proxy does: ``litellm_failover.config_file``), the plugin's
environment variable (the name the proxy honours too), the default. Only the values a command
uses are resolved, so the CLI never needs the proxy's other secrets. Each value remembers where
it came from, so an error can say which URL was tried and why that one. (The leading underscore
keeps this helper out of the CLI's discovery of command modules.)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from litellm_failover.config_file import (
    CHANNEL_ENV,
    DATABASE_URL_ENV,
    REDIS_URL_ENV,
    failover_block,
    read_config_file,
    resolve_env,
)
from litellm_failover.fleet.naming import channel_for
from litellm_failover.settings import DEFAULT_DATABASE_URL, FailoverConfigError


@dataclass(frozen=True, slots=True)
class Sourced:
    """A setting's value and where it came from, in words (``--url``, ``--config FILE``, ...)."""

    value: str
    origin: str


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="the proxy's config.yaml: read database_url, redis_url and fleet.channel from its "
        "failover_settings (os.environ/NAME resolved, include: files merged); options given here win",
    )


def _settings_value(args: argparse.Namespace, *keys: str) -> Sourced | None:
    """``failover_settings.<keys>`` from ``--config``, resolved; ``None`` when unset or no config."""
    path = getattr(args, "config", None)
    if not path:
        return None
    cached = getattr(args, "_config_block", None)
    if cached is None:
        cached = failover_block(read_config_file(path)) or {}
        if not isinstance(cached, Mapping):
            raise FailoverConfigError(f"invalid configuration: {path}: failover_settings must be a mapping")
        args._config_block = cached
    value: Any = cached
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if value is None:
        return None
    where = "failover_settings." + ".".join(keys)
    return Sourced(str(resolve_env(value, f"{path}: {where}")), f"--config {path} ({where})")


def _environment(name: str) -> Sourced | None:
    value = os.environ.get(name)
    return Sourced(value, f"${name}") if value else None


def database_url(args: argparse.Namespace) -> Sourced:
    """``--url``, then ``--config``'s ``database_url``, then ``$LITELLM_FAILOVER_DATABASE_URL``,
    then the default SQLite file (the proxy's default too, relative to where each runs)."""
    if getattr(args, "url", None):
        return Sourced(args.url, "--url")
    return (
        _settings_value(args, "database_url")
        or _environment(DATABASE_URL_ENV)
        or Sourced(DEFAULT_DATABASE_URL, "the default")
    )


def redis_url(args: argparse.Namespace) -> Sourced | None:
    """``--redis-url``, then ``--config``'s ``redis_url``, then ``$LITELLM_FAILOVER_REDIS_URL``;
    ``None``: commands go through the database."""
    if getattr(args, "redis_url", None):
        return Sourced(args.redis_url, "--redis-url")
    return _settings_value(args, "redis_url") or _environment(REDIS_URL_ENV)


def channel(args: argparse.Namespace) -> Sourced:
    """``--channel``, then ``--config``'s ``fleet.channel``, then ``$LITELLM_FAILOVER_CHANNEL``,
    then the proxies' own default: ``litellm_failover:<fleet name>``, the name from ``--fleet``,
    ``--config``'s ``fleet.name`` or ``$LITELLM_FAILOVER_FLEET``, else derived from the database
    and Redis URLs as the proxies derive it (``litellm_failover.fleet.naming``)."""
    if getattr(args, "channel", None):
        return Sourced(args.channel, "--channel")
    explicit = _settings_value(args, "fleet", "channel") or _environment(CHANNEL_ENV)
    if explicit is not None:
        return explicit
    name = getattr(args, "fleet", None) or getattr(_settings_value(args, "fleet", "name"), "value", None)
    redis = redis_url(args)
    value = channel_for(None, name, database_url(args).value, redis.value if redis else None)
    return Sourced(value, "the default (fleet name from --fleet, the config or the database URL)")

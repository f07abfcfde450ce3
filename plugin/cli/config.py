"""``litellm-failover config check|schema``: a proxy config.yaml, checked without starting anything.

``config check`` reads the file as the proxy does (``include:`` merged, ``os.environ/``
resolved, the plugin's environment variables filling what it leaves out) and validates
``failover_settings`` and every deployment's ``model_info.failover`` with the same code and the
same messages as the proxy's start-up: exit 0 with a short summary, 2 with every problem.
``config schema`` prints the JSON schema editors use to check config.yaml while it is typed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from litellm_failover.config_file import ProxyConfig, load_proxy_config
from litellm_failover.settings import FailoverConfigError
from litellm_failover.settings.schema import config_schema
from litellm_failover.store.engine import redact_url


def _summary(config: ProxyConfig) -> dict[str, Any]:
    settings = config.settings
    groups: dict[str, dict[str, Any]] = {}
    for spec in config.deployments:
        strategy, in_tier = settings.group_strategy(spec.group)
        group = groups.setdefault(spec.group, {"strategy": strategy, "in_tier": in_tier, "deployments": []})
        group["deployments"].append({"id": spec.deployment_id, "tier": spec.tier})
    return {
        "ok": True,
        "config": config.path,
        "groups": groups,
        "deployments": len(config.deployments),
        "strategy": settings.strategy,
        "database": {"url": redact_url(settings.database_url), "from": config.database_origin},
        "redis": redact_url(settings.redis_url) if settings.redis_url else None,
    }


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _print_summary(summary: dict[str, Any]) -> None:
    groups = summary["groups"]
    print(
        f"{summary['config']}: OK: {_count(len(groups), 'model group')}, "
        f"{_count(summary['deployments'], 'deployment')}, strategy {summary['strategy']}"
    )
    for name, group in groups.items():
        deployments = ", ".join(f"{d['id']} (tier {d['tier']})" for d in group["deployments"])
        print(f"  {name}: {group['strategy']}: {deployments}")
    database = summary["database"]
    print(f"  database: {database['url']} (from {database['from']})")
    print(f"  redis: {summary['redis'] or 'none (each replica acts alone)'}")


def _check(args: argparse.Namespace) -> int:
    try:
        config = load_proxy_config(args.file)
    except FailoverConfigError as exc:
        if args.json:
            print(json.dumps({"ok": False, "config": args.file, "errors": exc.problems}))
        else:
            print(f"litellm-failover: invalid configuration in {args.file}:", file=sys.stderr)
            for problem in exc.problems:
                print(f"  - {problem}", file=sys.stderr)
        return 2
    summary = _summary(config)
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    return 0


def _schema(args: argparse.Namespace) -> int:
    text = json.dumps(config_schema(), indent=2, sort_keys=True) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="Check a proxy config.yaml without starting anything, or print its JSON schema.",
        description="Check a proxy config.yaml's failover settings, or print the schema editors use.",
    )
    actions = parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="Validate failover_settings and every model_info.failover as the proxy would (exit 0 or 2).",
        description="Validate a proxy config.yaml's failover_settings and every deployment's "
        "model_info.failover, with the proxy's own messages; exit 0 with a summary, 2 with the errors.",
    )
    check.add_argument("file", metavar="CONFIG", help="the proxy's config.yaml")
    check.add_argument(
        "--json", action="store_true", help='one JSON object: the summary, or {"ok": false, "errors": [...]}'
    )
    check.set_defaults(handler=_check)
    schema = actions.add_parser(
        "schema",
        help="Print the JSON schema of config.yaml's failover parts (for editors).",
        description="Print the JSON schema of failover_settings and model_info.failover, inside a schema "
        "of config.yaml that leaves LiteLLM's own keys open (yaml-language-server, VS Code yaml.schemas).",
    )
    schema.add_argument(
        "--output", metavar="FILE", default=None, help="write the schema to FILE instead of standard output"
    )
    schema.set_defaults(handler=_schema)

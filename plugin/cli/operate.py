"""``litellm-failover drain|undrain|failover|failback|shift``: operator commands for running proxies.

Each command goes to every running replica: through Redis when a Redis URL is given
(``--redis-url``, the ``redis_url`` of ``--config``'s proxy config, or
``$LITELLM_FAILOVER_REDIS_URL``), otherwise through the database (``--url`` or ``--config``, as
for ``events`` and ``status``). The CLI checks what it can before sending (bad input: exit 2,
nothing sent), then waits up to ``--wait`` seconds for every listening replica's answer and
prints one line per replica. Exit codes: 0 applied everywhere, 1 refused (or failed) somewhere or
could not be sent, 2 bad input, 3 no answer in time from some or all replicas.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text

from litellm_failover.cli._config_source import channel, redis_url
from litellm_failover.cli.db import add_url_argument, report_error, resolve_url, table_console, usage_error
from litellm_failover.config_file import CHANNEL_ENV, REDIS_URL_ENV
from litellm_failover.control.client import EXIT_REFUSED, Delivery, send_via_database, send_via_redis
from litellm_failover.control.commands import CommandError, build_command
from litellm_failover.control.signing import KEYS_ENV, KeyRing, SigningConfigError, keys_from_env
from litellm_failover.durations import DURATION_HELP, duration_arg
from litellm_failover.fleet.naming import FLEET_ENV
from litellm_failover.store.engine import redact, redact_url

DEFAULT_WAIT_S = 5.0

_TRANSPORTS = {"redis": "Redis", "database": "the database"}
_OUTCOME_STYLES = {
    "applied": "green",
    "refused": "red",
    "expired": "red",
    "error": "red",
    "no answer": "yellow",
}


def add_transport_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a command goes besides ``--url`` (Redis, when given) and how long to wait."""
    parser.add_argument(
        "--redis-url",
        default=None,
        help=f"send through this Redis (the proxies' redis_url) instead of the database "
        f"(default: --config's failover_settings.redis_url, else ${REDIS_URL_ENV})",
    )
    parser.add_argument(
        "--channel",
        default=None,
        help=f"the proxies' fleet.channel (default: --config's failover_settings.fleet.channel, "
        f"else ${CHANNEL_ENV}, else litellm_failover:<fleet name>)",
    )
    parser.add_argument(
        "--fleet",
        default=None,
        metavar="NAME",
        help=f"the proxies' fleet.name, for the default channel (default: --config's "
        f"failover_settings.fleet.name, else ${FLEET_ENV}, else derived from the database URL as the "
        "proxies do)",
    )
    parser.add_argument(
        "--insecure-unsigned",
        action="store_true",
        help=f"send without an authentication tag when ${KEYS_ENV} is unset (only proxies with "
        "control.insecure_unsigned: true accept it; for local drills)",
    )
    parser.add_argument(
        "--wait",
        type=duration_arg(allow_zero=True),
        default=DEFAULT_WAIT_S,
        metavar="DURATION",
        help=f"how long to wait for the replicas' answers (default {DEFAULT_WAIT_S:g}s; 0: send only); "
        f"{DURATION_HELP}",
    )


def add_delivery_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every operator command shares: where to send it, how long to wait, --json."""
    add_url_argument(parser)
    add_transport_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON object")


async def deliver(args: argparse.Namespace, kind: str, target: str, raw: dict[str, Any]) -> Delivery | int:
    """Validate, send, wait. Returns the delivery, or an exit code after printing why not."""
    try:
        command = build_command(kind, target, raw)
    except CommandError as exc:
        return usage_error(f"{kind}: {exc} (nothing sent)")
    keys = signing_keys(args, kind)
    if isinstance(keys, int):
        return keys
    redis = redis_url(args)
    if redis is not None:
        try:
            where = channel(args).value
            return await send_via_redis(redis.value, where, command, wait_s=args.wait, keys=keys)
        except ValueError as exc:  # a malformed URL (already credential-free)
            return usage_error(f"{redis.origin}: {exc}")
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            print(
                f"litellm-failover: {kind}: could not send through Redis {redact_url(redis.value)} "
                f"(from {redis.origin}): {redact(text, redis.value)}",
                file=sys.stderr,
            )
            return EXIT_REFUSED
    url = resolve_url(args)
    try:
        return await send_via_database(url, command, wait_s=args.wait, keys=keys)
    except Exception as exc:
        return report_error(f"{kind}: could not send through the database", exc, args)


def signing_keys(args: argparse.Namespace, kind: str) -> KeyRing | int:
    """The keys that sign what the CLI sends, or an exit code after saying why there are none."""
    try:
        keys = keys_from_env()
    except SigningConfigError as exc:
        return usage_error(f"{kind}: {exc} (nothing sent)")
    if not keys and not getattr(args, "insecure_unsigned", False):
        return usage_error(
            f"{kind}: no signing key: set ${KEYS_ENV}=KEY_ID:SECRET as on the proxies, or pass "
            "--insecure-unsigned for proxies with control.insecure_unsigned: true (nothing sent)"
        )
    return keys


def _results_table(delivery: Delivery) -> Table:
    table = Table(show_header=True, box=None, pad_edge=False)
    table.add_column("replica", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("message", ratio=1, overflow="fold")
    for result in delivery.results:
        style = _OUTCOME_STYLES.get(result.outcome, "")
        table.add_row(Text(result.instance_id), Text(result.outcome, style=style), Text(result.message))
    for instance in delivery.missing:
        table.add_row(Text(instance), Text("no answer", style=_OUTCOME_STYLES["no answer"]), Text(""))
    return table


def summary(delivery: Delivery) -> str:
    """The last line: what happened overall, in words an operator can act on."""
    what = delivery.command.describe()
    wait = f"{delivery.wait_s:g}s"
    if delivery.wait_s <= 0:
        return f"{what}: sent; not waiting for answers (--wait 0)"
    refused = [result for result in delivery.results if not result.ok]
    if refused:
        names = ", ".join(f"{result.instance_id} ({result.outcome})" for result in refused)
        return f"{what}: not applied by {len(refused)} of {len(delivery.results)} answering replicas: {names}"
    if not delivery.results:
        listening = (
            f"{len(delivery.listening)} replicas were listening"
            if delivery.listening
            else "no replica is listening there: is a proxy with litellm-failover running, with "
            + ("this redis_url and fleet.channel" if delivery.transport == "redis" else "this database_url")
            + ", and control.enabled?"
        )
        return f"{what}: no replica acknowledged within {wait} ({listening})"
    if delivery.missing:
        return (
            f"{what}: applied by {len(delivery.applied)}, but no answer within {wait} from "
            f"{', '.join(delivery.missing)} (listening when it was sent)"
        )
    verb = "answered" if delivery.command.kind == "status" else "applied"
    return f"{what}: {verb} by {len(delivery.applied)} of {len(delivery.applied)} replicas"


def print_delivery(
    delivery: Delivery, *, as_json: bool, body: Callable[[Delivery], Any] | None = None
) -> int:
    """Print the outcome (a table per replica, or one JSON object) and return the exit code."""
    code = delivery.exit_code
    if as_json:
        print(json.dumps(delivery.to_json(), default=str))
        return code
    console = table_console()
    command = delivery.command
    console.print(
        Text(
            f"{command.describe()}: sent through {_TRANSPORTS[delivery.transport]} {delivery.where} "
            f"(command {command.command_id[:8]}, by {command.issued_by})"
        )
    )
    if delivery.results or delivery.missing:
        console.print(_results_table(delivery))
    if body is not None:
        body(delivery)
    line = summary(delivery)
    if code:
        print(f"litellm-failover: {line}", file=sys.stderr)
    else:
        console.print(Text(line))
    return code


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _print_live(delivery: Delivery) -> None:
    """``status --live``: each answering replica's routing state, a table per replica."""
    console = table_console()
    for result in delivery.applied:
        table = Table(title=Text(f"{result.instance_id} (live)"), title_justify="left")
        columns = ("group", "deployment", "tier", "state", "weight", "ramp", "in flight", "drain", "reason")
        for column in columns:
            table.add_column(column, no_wrap=column != "reason", overflow="fold")
        for group, info in (result.details.get("groups") or {}).items():
            serving = f"{group} (tier {info.get('active_tier')}{', PANIC' if info.get('panic') else ''})"
            for deployment in info.get("deployments", []):
                drain = deployment.get("drain_state") or ("draining" if deployment.get("draining") else "")
                table.add_row(
                    Text(serving),
                    Text(str(deployment.get("deployment_id", ""))),
                    str(deployment.get("tier", "")),
                    Text(str(deployment.get("state", ""))),
                    _cell(deployment.get("effective_weight")),
                    _cell(deployment.get("ramp")),
                    _cell(deployment.get("in_flight")),
                    Text(drain),
                    Text(str(deployment.get("reason") or "")),
                )
        console.print(table)
        faults = (result.details.get("chaos") or {}).get("active") or []
        if faults:
            console.print(_chaos_table(result.instance_id, faults))
        unmanaged = result.details.get("unmanaged") or []
        if unmanaged:
            console.print(unmanaged_table(result.instance_id, unmanaged))


def unmanaged_table(instance_id: str, rows: list[dict[str, Any]]) -> Table:
    """Deployments LiteLLM routes that the plugin does not manage (refused, not adopted yet), and
    why: none may go unnoticed."""
    table = Table(title=Text(f"{instance_id} unmanaged deployments"), title_justify="left")
    for column in ("group", "deployment", "reason"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            Text(str(row.get("model_group") or "")),
            Text(str(row.get("deployment_id") or "-")),
            Text(str(row.get("reason") or ""), style="red"),
        )
    return table


def _chaos_table(instance_id: str, faults: list[dict[str, Any]]) -> Table:
    """Active injected faults (``chaos inject``): a drill must never be mistaken for an outage."""
    table = Table(title=Text(f"{instance_id} chaos (injected faults)"), title_justify="left")
    for column in ("deployment", "fault", "probability", "ends (UTC)", "injected", "by"):
        table.add_column(column, no_wrap=True)
    for fault in faults:
        kind = fault.get("kind", "")
        what = {
            "error": f"error {fault.get('status', '')}",
            "latency": f"latency {_cell(fault.get('delay_s'))}s",
            "stream_cut": f"stream_cut after {fault.get('after_chunks', '')} chunks",
        }.get(kind, str(kind))
        table.add_row(
            Text(str(fault.get("deployment_id", ""))),
            Text(what, style="magenta"),
            f"p={_cell(fault.get('probability'))}",
            Text(str(fault.get("ends_at", "")).replace("+00:00", "")),
            _cell(fault.get("injected")),
            Text(str(fault.get("issued_by") or fault.get("source") or "")),
        )
    return table


async def live_status(args: argparse.Namespace) -> int:
    """``status --live``: ask the running replicas (through Redis or the database) for their
    routing state now, instead of reading the last state the writers stored."""
    outcome = await deliver(args, "status", args.group or "", {})
    if isinstance(outcome, int):
        return outcome
    return print_delivery(outcome, as_json=args.json, body=_print_live)


async def _operate(args: argparse.Namespace) -> int:
    outcome = await deliver(args, args.kind, args.target, args.build(args))
    if isinstance(outcome, int):
        return outcome
    return print_delivery(outcome, as_json=args.json)


_TARGET_HELP = {
    "DEPLOYMENT_ID": "the deployment (its model_info.id)",
    "GROUP": "the model group (model_name)",
}


def _parser(subparsers: Any, kind: str, help_text: str, target: str, build: Callable[..., dict]) -> Any:
    parser = subparsers.add_parser(kind, help=help_text, description=help_text)
    parser.add_argument("target", metavar=target, help=_TARGET_HELP[target])
    add_delivery_arguments(parser)
    parser.set_defaults(handler=_operate, kind=kind, build=build)
    return parser


def register(subparsers: Any) -> None:
    drain = _parser(
        subparsers,
        "drain",
        "Drain a deployment on every running proxy: no new requests, in-flight ones finish.",
        "DEPLOYMENT_ID",
        lambda args: {"timeout_s": args.timeout} if args.timeout is not None else {},
    )
    drain.add_argument(
        "--timeout",
        default=None,
        metavar="DURATION",
        help=f"drain timeout (default: the proxies' own setting); {DURATION_HELP}",
    )
    _parser(
        subparsers,
        "undrain",
        "Bring a drained deployment back (through the ramp) on every running proxy.",
        "DEPLOYMENT_ID",
        lambda args: {},
    )
    _parser(
        subparsers,
        "failover",
        "Planned failover of a model group to its standby tier (drains the primary tier).",
        "GROUP",
        lambda args: {},
    )
    _parser(
        subparsers,
        "failback",
        "Fail a model group back to its primary tier, ramping traffic back in steps.",
        "GROUP",
        lambda args: {},
    )
    shift = _parser(
        subparsers,
        "shift",
        "Canary shift: move a group's traffic to a deployment or tier in steps; rolls back on errors.",
        "GROUP",
        lambda args: {"to": args.to, "steps": args.steps, "interval_s": args.interval},
    )
    shift.add_argument("--to", required=True, metavar="DEPLOYMENT_OR_TIER", help="where traffic goes")
    shift.add_argument(
        "--steps",
        required=True,
        metavar="P1,P2,...",
        help="increasing percentages ending at 100, e.g. 5,25,50,100",
    )
    shift.add_argument(
        "--interval",
        required=True,
        metavar="DURATION",
        help=f"time between steps, more than 0; {DURATION_HELP}",
    )

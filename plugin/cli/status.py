"""``litellm-failover status``: every deployment's last recorded state and why, from the store.

This reads ``failover_deployment_state``, so it works from any machine that can reach the
database, without access to a running proxy; the state is as fresh as the writer's last flush.
That table holds health only: whether a deployment is drained, held after recovering or ramping
back is told by the switching events, so the latest of those per deployment is folded into a
``traffic`` column next to the health state (a healthy deployment that is drained must not look
like one that serves).
``--live`` (or ``--redis-url``) asks the running proxies instead, each answering with its routing
state now (``litellm_failover.cli.operate``), which also works for a fleet with no shared database.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table
from rich.text import Text

from litellm_failover.cli.db import add_url_argument, print_rows, report_error, resolve_url
from litellm_failover.cli.operate import add_transport_arguments, live_status
from litellm_failover.events import EventType
from litellm_failover.store.engine import redact_url
from litellm_failover.store.queries import list_deployment_states, list_traffic_events

# The events that change whether a deployment takes its share of traffic, and what each leaves it at
# (None: back to normal). Group-level ones name their deployments in ``details``.
_TRAFFIC_EVENTS = (
    EventType.DRAIN_STARTED,
    EventType.DRAIN_COMPLETED,
    EventType.UNDRAINED,
    EventType.FAILBACK_PENDING,
    EventType.FAILBACK_STEP,
    EventType.FAILBACK_COMPLETED,
    EventType.RAMP_STEP,
    EventType.RAMP_COMPLETED,
    EventType.RAMP_ABORTED,
)


def _traffic_word(event_type: str, details: dict[str, Any]) -> str | None:
    percent = details.get("percent")
    match event_type:
        case EventType.DRAIN_STARTED:
            return "draining"
        case EventType.DRAIN_COMPLETED:
            return "drained"
        case EventType.FAILBACK_PENDING:
            return "held (manual failback)" if details.get("mode") == "manual" else "held (hold-down)"
        case EventType.FAILBACK_STEP | EventType.RAMP_STEP if (
            isinstance(percent, int | float) and percent < 100
        ):
            return f"ramping {percent:g}%"
    return None  # undrained, a last step, completed, aborted (health then says ejected)


def traffic_by_deployment(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each deployment's traffic word from the latest switching event about it (oldest first in)."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        details = event.get("details") or {}
        named = details.get("deployments") if event["event_type"] == EventType.FAILBACK_STEP else None
        if event["event_type"] in (EventType.FAILBACK_COMPLETED, EventType.RAMP_ABORTED):
            named = details.get("deployments") or details.get("ejected")
        targets = named if isinstance(named, list) else [event.get("deployment_id")]
        word = _traffic_word(event["event_type"], details)
        for deployment_id in targets:
            if deployment_id:
                latest[str(deployment_id)] = {"traffic": word, "traffic_since": event["created_at"]}
    return latest


_STATE_STYLES = {
    "healthy": "green",
    "degraded": "yellow",
    "recovering": "cyan",
    "ramping": "cyan",
    "draining": "yellow",
    "ejected": "red",
    "unhealthy": "red",
    "removed": "dim",  # deleted from LiteLLM's model list while it ran
}


def check_lines(checks: Any) -> list[tuple[str, str]]:
    """``(mark, "name: reason")`` per check; tolerant of shapes, since the core owns what it stores.

    Expected: ``{name: {"ok": bool, "severity": "fail"|"degrade", "reason": str, ...}}``. A failed
    check marked ``degrade`` only lowered the weight, so it shows as DEGRADE rather than FAIL; a
    bare bool or other value is shown as it is rather than dropped.
    """
    if not isinstance(checks, dict):
        return [("?", str(checks))] if checks else []
    lines: list[tuple[str, str]] = []
    for name, value in checks.items():
        if isinstance(value, dict):
            ok = value.get("ok")
            reason = value.get("reason") or ""
            if ok is True:
                mark = "ok"
            elif ok is False:
                mark = "DEGRADE" if value.get("severity") == "degrade" else "FAIL"
            else:
                mark = "?"
            lines.append((mark, f"{name}: {reason}" if reason else str(name)))
        elif isinstance(value, bool):
            lines.append(("ok" if value else "FAIL", str(name)))
        else:
            lines.append(("?", f"{name}: {value}"))
    return lines


_MARK_STYLES = {"ok": "green", "FAIL": "red", "DEGRADE": "yellow", "?": "yellow"}


def _checks_text(checks: Any) -> Text:
    text = Text()
    for index, (mark, line) in enumerate(check_lines(checks)):
        if index:
            text.append("\n")
        text.append(mark + " ", style=_MARK_STYLES[mark])
        text.append(line)
    return text


def _traffic_text(row: dict[str, Any]) -> Text:
    """The traffic word and when its event came: a proxy stopped mid-ramp leaves its last word
    standing, and the time is what tells an operator how old it is."""
    if not row["traffic"]:
        return Text("")
    since = row["traffic_since"].strftime("%m-%d %H:%M:%S")
    return Text(f"{row['traffic']}\nsince {since}", style="yellow")


def _table(rows: list[dict[str, Any]]) -> Table:
    # The instance column only earns its width when several proxy replicas write to this store.
    show_instance = len({row["instance_id"] for row in rows}) > 1
    table = Table(title=f"deployment states ({len(rows)})", title_justify="left")
    # Ids fold rather than lose their end to an ellipsis on a narrow terminal.
    table.add_column("group", overflow="fold")
    table.add_column("deployment", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("traffic", no_wrap=True)
    table.add_column("reason", ratio=1, overflow="fold")
    table.add_column("ejections", justify="right", no_wrap=True)
    table.add_column("updated (UTC)", no_wrap=True)
    if show_instance:
        table.add_column("instance", overflow="fold")
    table.add_column("checks", ratio=1, overflow="fold")
    for row in rows:
        state = row["state"]
        cells: list[Any] = [
            row["model_group"],
            row["deployment_id"],
            Text(state, style=_STATE_STYLES.get(state.lower(), "")),
            _traffic_text(row),
            row["reason"],
            str(row["ejection_count"]),
            row["updated_at"].strftime("%m-%d %H:%M:%S"),
        ]
        if show_instance:
            cells.append(row["instance_id"])
        cells.append(_checks_text(row["checks"]))
        table.add_row(*cells)
    return table


async def _status(args: argparse.Namespace) -> int:
    if args.live or args.redis_url:  # the running proxies, through the operator commands' transport
        return await live_status(args)
    url = resolve_url(args)
    try:
        rows = await list_deployment_states(url)
        traffic = traffic_by_deployment(await list_traffic_events(url, _TRAFFIC_EVENTS))
    except Exception as exc:
        return report_error("status", exc, args)
    for row in rows:
        row.update(traffic.get(row["deployment_id"]) or {"traffic": None, "traffic_since": None})
    return print_rows(
        rows, as_json=args.json, table=_table, empty=f"no deployment state recorded in {redact_url(url)} yet"
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="Show every deployment's recorded state and its checks.")
    add_url_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per deployment per line")
    parser.add_argument(
        "--live",
        action="store_true",
        help="ask the running proxies now (through Redis with --redis-url, else the database)",
    )
    parser.add_argument("--group", default=None, help="with --live: only this model group")
    add_transport_arguments(parser)
    parser.set_defaults(handler=_status)

"""``litellm-failover sessions list|show|delete``: the conversation state in the store.

For operators answering "where is this conversation pinned, what was said, and make it go away"
(a user's deletion request cannot wait for the retention purge). Reads and deletes go straight
to the database given by ``--url``, like ``events`` and ``status``; no running proxy is needed.
Message text is shown only where it was stored: with ``store_content`` off, or over the size
cap, a message is ``<hash only>``.

Sessions belong to a caller (a hash of the key, team or application that sent them): one session
id used by two callers is two sessions, and ``--caller`` picks one; without it ``show`` and
``delete`` cover the id under every caller (a user's deletion request names the id they used).
A position held by more than one message is a branch (an edited or regenerated turn): ``show``
marks where each message continues from.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from litellm_failover.cli.db import (
    add_url_argument,
    print_json,
    print_rows,
    report_error,
    resolve_url,
    table_console,
)
from litellm_failover.cli.events import _positive_int
from litellm_failover.durations import DURATION_HELP, parse_since
from litellm_failover.store.conversations import (
    SessionGroup,
    StoredMessage,
    delete_session,
    list_sessions,
    load_messages,
    load_session,
)
from litellm_failover.store.engine import reading_engine, redact_url

_TIME = "%m-%d %H:%M:%S"


def _not_found(session_id: str, url: str) -> int:
    print(f"litellm-failover: session {session_id!r} not found in {redact_url(url)}", file=sys.stderr)
    return 1


def _list_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"sessions ({len(rows)}, most recently active first)", title_justify="left")
    table.add_column("session", overflow="fold")
    table.add_column("caller", no_wrap=True, max_width=16, overflow="ellipsis")
    table.add_column("group", no_wrap=True, max_width=16, overflow="ellipsis")
    table.add_column("pinned to", no_wrap=True, max_width=24, overflow="ellipsis")
    table.add_column("turns", justify="right", no_wrap=True)
    table.add_column("messages", justify="right", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("last active (UTC)", no_wrap=True)
    for row in rows:
        table.add_row(
            Text(row["session_id"]),  # Text: ids and content are data, never rich markup
            Text(row["caller"]),
            Text(row["model_group"]),
            Text(row["pinned_deployment"] or "-"),
            str(row["turn_count"]),
            str(row["messages"]),
            row["created_at"].strftime(_TIME),
            row["updated_at"].strftime(_TIME),
        )
    return table


def _content(message: StoredMessage) -> Text:
    if message.content is not None:
        return Text(message.content)
    why = "over the size cap" if message.truncated else "content not stored"
    note = f" ({why}; {message.content_chars:,} chars, sha256 {message.content_hash[:12]})"
    return Text("<hash only>", style="dim") + Text(note, style="dim")


def _tokens(message: StoredMessage) -> str:
    if message.prompt_tokens is None and message.completion_tokens is None:
        return ""
    return f"{message.prompt_tokens if message.prompt_tokens is not None else '-'}/" + (
        f"{message.completion_tokens if message.completion_tokens is not None else '-'}"
    )


def _show_table(session_id: str, groups: list[SessionGroup], messages: list[StoredMessage]) -> Table:
    pins = "; ".join(
        f"{g.caller} {g.model_group}: {g.pinned_deployment or 'not pinned'}, {g.turn_count} turns, "
        f"last active {g.updated_at.strftime(_TIME)}"
        for g in groups
    )
    title = Text(f"session {session_id!r}: {len(messages)} messages")
    if pins:
        title.append(f" ({pins})")
    table = Table(title=title, title_justify="left")
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("caller", no_wrap=True, max_width=16, overflow="ellipsis")
    table.add_column("branch", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("role", no_wrap=True)
    table.add_column("deployment", no_wrap=True, max_width=24, overflow="ellipsis")
    table.add_column("tokens in/out", justify="right", no_wrap=True)
    table.add_column("content", ratio=1, overflow="fold")
    for message in messages:
        table.add_row(
            str(message.seq),
            Text(message.caller),
            _branch(message),
            message.created_at.strftime(_TIME),
            Text(message.role),
            Text(message.deployment_id or ""),
            _tokens(message),
            _content(message),
        )
    return table


def _branch(message: StoredMessage) -> str:
    """The first characters of the message's chain hash, and of its parent's: enough to follow a
    branch down the table."""
    if message.parent_hash is None:
        return "legacy"
    parent = message.parent_hash[:8] or "root"
    return f"{message.chain_hash[:8]} < {parent}"


def _since(value: str) -> datetime:
    try:
        return parse_since(value)
    except ValueError as exc:  # argparse names the option and exits 2
        raise argparse.ArgumentTypeError(str(exc)) from None


async def _list(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    try:
        rows = await list_sessions(url, limit=args.limit, since=args.since, model_group=args.model_group)
    except Exception as exc:
        return report_error("sessions list", exc, args)
    return print_rows(rows, as_json=args.json, table=_list_table, empty="no sessions match")


async def _show(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    try:
        async with reading_engine(url) as engine:
            groups = await load_session(engine, args.session_id, caller=args.caller)
            messages = await load_messages(engine, args.session_id, caller=args.caller, up_to_seq=args.up_to)
    except Exception as exc:
        return report_error("sessions show", exc, args)
    if not groups and not messages:
        return _not_found(args.session_id, url)
    if not args.json:
        table_console().print(_show_table(args.session_id, groups, messages))
        return 0
    # One document, as the table shows it: the pins per group, then the messages in order.
    print_json(
        {
            "session_id": args.session_id,
            "groups": [group._asdict() for group in groups],
            "messages": [dataclasses.asdict(message) for message in messages],
        }
    )
    return 0


async def _delete(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    try:
        sessions, messages = await delete_session(url, args.session_id, caller=args.caller)
    except Exception as exc:
        return report_error("sessions delete", exc, args)
    if (sessions, messages) == (0, 0):
        return _not_found(args.session_id, url)
    if args.json:
        print_json({"session_id": args.session_id, "session_rows": sessions, "messages": messages})
        return 0
    print(f"deleted session {args.session_id!r}: {sessions} session rows, {messages} messages")
    return 0


def _seq(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {value})")
    return number


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sessions", help="List, show or delete stored conversations (sessions).")
    commands = parser.add_subparsers(dest="sessions_command", required=True, metavar="ACTION")

    listing = commands.add_parser("list", help="The most recently active sessions, one row per model group.")
    add_url_argument(listing)
    listing.add_argument(
        "--since",
        type=_since,
        metavar="DURATION_OR_TIME",
        help=f"only sessions active since this long ago or this ISO-8601 time; a duration is {DURATION_HELP}",
    )
    listing.add_argument("--group", dest="model_group", help="only this model group")
    listing.add_argument(
        "--limit", type=_positive_int, default=100, help="at most this many rows, the newest (default 100)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=_list)

    show = commands.add_parser("show", help="A session's pins and its messages in order.")
    show.add_argument("session_id", metavar="SESSION_ID", help="the session id (as `sessions list` shows it)")
    add_url_argument(show)
    show.add_argument(
        "--caller", default=None, help="only this caller's session (as `sessions list` shows it)"
    )
    show.add_argument("--up-to", type=_seq, default=None, metavar="SEQ", help="only messages up to this seq")
    show.add_argument(
        "--json", action="store_true", help="one JSON object: session_id, groups (pins) and messages"
    )
    show.set_defaults(handler=_show)

    remove = commands.add_parser(
        "delete",
        help="Delete a session (every model group, every caller unless --caller) and all its messages.",
    )
    remove.add_argument(
        "session_id", metavar="SESSION_ID", help="the session id (as `sessions list` shows it)"
    )
    add_url_argument(remove)
    remove.add_argument("--caller", default=None, help="only this caller's session (default: every caller's)")
    remove.add_argument(
        "--json", action="store_true", help="one JSON object: session_id, session_rows, messages deleted"
    )
    remove.set_defaults(handler=_delete)

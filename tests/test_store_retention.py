"""Retention beyond conversations (issue 11 §4): events and the command tables expire by their
own limits, the latest standing drain/failover stays, and the purge runs with sessions off.

Each store test once on SQLite and once on PostgreSQL (``store_url``). Before §4 only sessions
and messages were ever purged: every test here failed (events and commands stayed forever, and
a plugin with ``sessions.enabled: false`` never started its purger).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import litellm
from factories import message
from waiting import wait_until

from litellm_failover.control.commands import build_command
from litellm_failover.control.db_channel import (
    heartbeat,
    insert_command,
    read_results,
    standing_commands,
    write_results,
)
from litellm_failover.control.dispatch import CommandResult
from litellm_failover.events import FailoverEvent, utcnow
from litellm_failover.plugin import attach
from litellm_failover.settings import RetentionSettings, SessionSettings, WriterSettings
from litellm_failover.store.conversations import load_messages
from litellm_failover.store.expiry import purge_commands, purge_events
from litellm_failover.store.migrate import upgrade_database
from litellm_failover.store.queries import list_events
from litellm_failover.store.retention import RetentionPurger
from litellm_failover.store.writer import StoreWriter

pytest_plugins = ["services", "store_fixtures"]

FAST = WriterSettings(batch_size=50, flush_interval_s=0.05)


async def test_events_older_than_their_retention_go(store_url: str) -> None:
    now = utcnow()
    async with StoreWriter(store_url, FAST) as writer:
        for n, age in enumerate((timedelta(days=40), timedelta(days=31), timedelta(days=1), timedelta(0))):
            writer.submit_event(
                FailoverEvent(
                    event_type="session_repinned",
                    model_group="chat",
                    reason=f"upstream said: error text {n}",
                    details={"session_id": f"s{n}"},
                    created_at=now - age,
                )
            )
        assert await writer.flush(timeout=5)
    assert await purge_events(store_url, now - timedelta(days=30), batch_size=1) == 2  # batches of one
    left = await list_events(store_url, limit=10)
    assert sorted(e["details"]["session_id"] for e in left) == ["s2", "s3"]
    assert await purge_events(store_url, now - timedelta(days=30)) == 0


async def test_old_commands_go_but_the_standing_drain_stays(store_url: str) -> None:
    await upgrade_database(store_url)  # the CLI's tables: no writer here to migrate them
    now = utcnow()
    old = now - timedelta(days=40)
    superseded = build_command("drain", "p1", {}, issued_at=old - timedelta(hours=1), issued_by="ops")
    standing = build_command("drain", "p1", {}, issued_at=old, issued_by="ops")
    shifted = build_command("undrain", "p2", {}, issued_at=old, issued_by="ops")  # refused everywhere
    recent = build_command("drain", "p3", {}, issued_at=now, issued_by="ops")
    for command in (superseded, standing, shifted, recent):
        await insert_command(store_url, command)
    await write_results(
        store_url,
        [
            (superseded.command_id, CommandResult("r1", "applied", "ok", applied_at=old)),
            (standing.command_id, CommandResult("r1", "applied", "ok", applied_at=old)),
            (shifted.command_id, CommandResult("r1", "refused", "unknown", applied_at=old)),
            (recent.command_id, CommandResult("r1", "applied", "ok", applied_at=now)),
        ],
    )
    await heartbeat(store_url, "alive", now, now, 30.0)
    await heartbeat(store_url, "gone", old, old, 30.0)  # after: a heartbeat forgets day-old replicas

    assert await purge_commands(store_url, now - timedelta(days=30)) == (2, 2, 1)
    kept = {c.command_id for c in await standing_commands(store_url)}
    assert kept == {standing.command_id, recent.command_id}  # a later replica still restores p1's drain
    assert [r.outcome for r in await read_results(store_url, standing.command_id)] == ["applied"]
    assert await read_results(store_url, superseded.command_id) == []
    assert await purge_commands(store_url, now - timedelta(days=30)) == (0, 0, 0)


async def test_the_purger_covers_events_commands_and_sessions(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    now = utcnow()
    async with StoreWriter(url, FAST) as writer:
        writer.submit_event(FailoverEvent("failover", "chat", created_at=now - timedelta(hours=3)))
        writer.submit_message(message("old", 0, created_at=now - timedelta(hours=3)))
        assert await writer.flush(timeout=5)
        await insert_command(url, build_command("undrain", "p9", {}, issued_at=now - timedelta(hours=3)))
        purger = RetentionPurger(
            writer,
            SessionSettings(retention_s=3600, purge_interval_s=0.05),
            RetentionSettings(events_s=3600, commands_s=3600),
        )
        async with purger:
            await wait_until(lambda: purger.stats()["runs"] >= 1, timeout=5, what="a purge round")
        stats = purger.stats()
    assert (stats["events_purged"], stats["commands_purged"], stats["messages_purged"]) == (1, 1, 1)
    assert await list_events(url, limit=10) == [] and await load_messages(url, "old") == []


async def test_the_purge_runs_with_sessions_switched_off(tmp_path: Path) -> None:
    router = litellm.Router(
        model_list=[
            {
                "model_name": "chat",
                "litellm_params": {"model": "openai/x", "api_base": "http://127.0.0.1:9/v1", "api_key": "k"},
                "model_info": {"id": "d1"},
            }
        ]
    )
    plugin = attach(
        router,
        {
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/store.db",
            "sessions": {"enabled": False, "purge_interval_s": 0.05},
        },
    )
    try:
        await plugin.start()
        await wait_until(
            lambda: plugin.purger.stats()["runs"] >= 1, timeout=10, what="a purge with sessions off"
        )
    finally:
        await plugin.stop()
        plugin.detach()

"""Migration 0005_caller_sessions on a database holding rows from before it (issue 11 §4).

Old rows have no caller: they become caller ``legacy``, which no request has, so they are
never read into a caller's conversation and age out through retention. On SQLite (batch mode)
and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from factories import message
from sqlalchemy import text

from litellm_failover.settings import WriterSettings
from litellm_failover.store.conversations import find_response, load_chain, load_messages, load_session
from litellm_failover.store.engine import create_engine
from litellm_failover.store.migrate import current_revision, downgrade_database, upgrade_database
from litellm_failover.store.writer import StoreWriter

pytest_plugins = ["services", "store_fixtures"]

BEFORE = "0003"  # the last revision without callers (0004 adds command signatures)


async def _old_rows(url: str) -> None:
    engine = create_engine(url)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO failover_sessions (session_id, model_group, pinned_deployment, turn_count,"
                    " created_at, updated_at) VALUES ('shared', 'chat', 'p1', 1, :at, :at)"
                ),
                {"at": at},
            )
            for seq, role, content in ((0, "user", "old question"), (1, "assistant", "old answer")):
                await connection.execute(
                    text(
                        "INSERT INTO failover_messages (session_id, seq, role, content, content_hash,"
                        " content_chars, response_id, truncated, created_at)"
                        " VALUES ('shared', :seq, :role, :content, 'h', 3, :rid, false, :at)"
                    ),
                    {
                        "seq": seq,
                        "role": role,
                        "content": content,
                        "rid": "resp-old" if seq else None,
                        "at": at,
                    },
                )
    finally:
        await engine.dispose()


async def test_rows_from_before_the_migration_belong_to_no_caller(store_url: str) -> None:
    await upgrade_database(store_url, BEFORE)
    await _old_rows(store_url)
    await upgrade_database(store_url)
    assert await current_revision(store_url) == "0005_caller_sessions"

    legacy = await load_messages(store_url, "shared")
    assert [(m.caller, m.parent_hash, m.content) for m in legacy] == [
        ("legacy", None, "old question"),
        ("legacy", None, "old answer"),
    ]
    assert len({m.chain_hash for m in legacy}) == 2 and all(
        m.chain_hash.startswith("legacy-") for m in legacy
    )
    assert [(g.caller, g.pinned_deployment) for g in await load_session(store_url, "shared")] == [
        ("legacy", "p1")
    ]
    # No request's caller reaches them: not by session id, not by response id.
    assert await load_chain(store_url, "anonymous", "shared") == []
    assert await find_response(store_url, "resp-old", caller="anonymous") is None

    # The same session id written now is the caller's own session, beside the legacy one.
    async with StoreWriter(store_url, WriterSettings(flush_interval_s=0.05)) as writer:
        writer.submit_message(message("shared", 0, content="old question"))
        assert await writer.flush(timeout=5)
    assert [m.caller for m in await load_messages(store_url, "shared")] == ["anonymous", "legacy", "legacy"]
    assert [m.content for m in await load_chain(store_url, "anonymous", "shared")] == ["old question"]

    await downgrade_database(store_url, BEFORE)  # one history per session id again: the oldest
    engine = create_engine(store_url)
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(text("SELECT seq, content FROM failover_messages ORDER BY seq"))
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [(0, "old question"), (1, "old answer")]

"""Conversation state in SQL: the writer's session and message rows, the reads, the retention
purge, on real SQLite and real PostgreSQL (``store_url`` runs each test on both)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from factories import T0, default_chain, message, session
from waiting import free_port, wait_until

from litellm_failover.events import FailoverEvent, utcnow
from litellm_failover.records import SessionRow
from litellm_failover.settings import SessionSettings, WriterSettings
from litellm_failover.store.buffers import PendingSession, SessionBuffer
from litellm_failover.store.conversations import (
    StoredMessage,
    delete_session,
    find_response,
    list_sessions,
    load_chain,
    load_messages,
    load_session,
    purge_expired,
)
from litellm_failover.store.engine import create_engine
from litellm_failover.store.migrate import upgrade_database
from litellm_failover.store.retention import RetentionPurger
from litellm_failover.store.rows import MAX_STORED_CONTENT_CHARS, message_row
from litellm_failover.store.writer import StoreWriter

pytest_plugins = ["services", "store_fixtures"]

FAST = WriterSettings(flush_interval_s=0.05, retry_backoff_max_s=0.1)


def contents(messages: list[StoredMessage]) -> list[tuple[int, str | None]]:
    return [(m.seq, m.content) for m in messages]


async def test_messages_and_sessions_are_written_and_read_back(store_url: str) -> None:
    async with StoreWriter(store_url, WriterSettings(batch_size=3, flush_interval_s=0.05)) as writer:
        for seq in range(7):
            assert writer.submit_message(message("s1", seq, response_id=f"resp-{seq}" if seq % 2 else None))
        assert writer.submit_message(message("s2", 0, content=None, truncated=True, content_chars=40_000))
        writer.submit_session(session("s1", turns=3, at=T0 + timedelta(seconds=6)))
        writer.submit_session(session("s2", group="embed", pinned=None))
        assert await writer.flush(timeout=5)
        stats = writer.stats()
        assert (stats["messages_written"], stats["sessions_written"]) == (8, 2)
        assert stats["queued"] == stats["queued_messages"] == stats["queued_message_chars"] == 0

        engine = writer.engine  # the running plugin reads through the writer's own engine
        assert engine is not None
        stored = await load_messages(engine, "s1")
        assert contents(stored) == [(seq, f"s1 {seq}") for seq in range(7)]
        first, answer = stored[0], stored[1]
        assert (first.role, first.deployment_id, first.prompt_tokens, first.truncated) == (
            "user",
            None,
            None,
            False,
        )
        assert (answer.role, answer.deployment_id, answer.prompt_tokens, answer.completion_tokens) == (
            "assistant",
            "p1",
            11,
            5,
        )
        assert answer.created_at == T0 + timedelta(seconds=1) and answer.created_at.tzinfo is not None
        assert answer.content_hash == message("s1", 1).content_hash and answer.content_chars == 4
        assert contents(await load_messages(engine, "s1", up_to_seq=3)) == [(s, f"s1 {s}") for s in range(4)]
        assert (await find_response(engine, "resp-5"))[:2] == ("s1", 5)
        assert await find_response(engine, "resp-4") is None
        (hash_only,) = await load_messages(engine, "s2")
        assert (hash_only.content, hash_only.truncated, hash_only.content_chars) == (None, True, 40_000)
        assert await load_session(engine, "s1") == [("chat", "p1", 3, T0 + timedelta(seconds=6), "anonymous")]
        assert await load_session(engine, "s2") == [("embed", None, 1, T0, "anonymous")]
        assert await load_session(engine, "nobody") == [] and await load_messages(engine, "nobody") == []

    # The same functions with a URL (the CLI's way): a short-lived engine each.
    assert [m.seq for m in await load_messages(store_url, "s1", up_to_seq=1)] == [0, 1]
    assert (await find_response(store_url, "resp-1"))[:2] == ("s1", 1)


async def test_a_history_stored_again_adds_nothing_and_a_divergent_one_is_a_branch(store_url: str) -> None:
    """Before issue 11 §4, (session, seq) was unique and the first write won: an edited message
    at a stored position was silently dropped. Now the same history adds nothing, and a different
    one is kept beside it, each message linked to its own parent."""
    async with StoreWriter(store_url, FAST) as writer:
        for seq in range(3):
            writer.submit_message(message("s1", seq))
        assert await writer.flush(timeout=5)
        writer.submit_message(message("s1", 1))  # resent as it was, in a later batch
        writer.submit_message(message("s1", 1, content="regenerated"))  # a different answer
        writer.submit_message(message("s1", 3))
        writer.submit_message(message("s1", 3))  # a duplicate in the same batch
        assert await writer.flush(timeout=5)
        assert writer.stats()["rejected"] == 0  # ignored by the database, not refused
    stored = await load_messages(store_url, "s1")
    assert contents(stored) == [(0, "s1 0"), (1, "s1 1"), (1, "regenerated"), (2, "s1 2"), (3, "s1 3")]
    # The branch of "s1 3" runs through "s1 1", not through the regenerated answer.
    chain = await load_chain(store_url, "anonymous", "s1", tip_hash=default_chain("s1", 3))
    assert contents(chain) == [(s, f"s1 {s}") for s in range(4)]
    regenerated = next(m for m in stored if m.content == "regenerated")
    assert contents(await load_chain(store_url, "anonymous", "s1", tip_hash=regenerated.chain_hash)) == [
        (0, "s1 0"),
        (1, "regenerated"),
    ]


async def test_an_answer_first_stored_in_the_next_turns_history_gets_its_details(store_url: str) -> None:
    """A stream's success log runs after the client has its answer, and the client's next turn
    (its history carrying that answer) can be recorded first: the answer's row then came from the
    history, with no deployment, response id or token counts, and the answer's own row was ignored
    (1 run in 8 of test_sessions_router's streamed-answer test on LiteLLM 1.110). The answer now
    fills them in, whichever comes first; a history copy never clears them."""
    copy = {"deployment_id": None, "response_id": None, "prompt_tokens": None, "completion_tokens": None}
    async with StoreWriter(store_url, FAST) as writer:
        for seq in range(3):  # s1: the next turn's history first, the answer in it a copy
            writer.submit_message(message("s1", seq, **(copy if seq == 1 else {})))
        writer.submit_message(message("s2", 1, response_id="resp-s2"))  # s2: the answer first
        assert await writer.flush(timeout=5)
        writer.submit_message(message("s1", 1, response_id="resp-s1"))  # the answer's own row
        writer.submit_message(message("s2", 1, **copy))  # a copy in a later history
        assert await writer.flush(timeout=5)
        assert writer.stats()["rejected"] == 0
    for session_id in ("s1", "s2"):
        stored = await load_messages(store_url, session_id)
        answer = next(m for m in stored if m.seq == 1)
        assert (answer.deployment_id, answer.prompt_tokens, answer.completion_tokens) == ("p1", 11, 5)
        assert answer.content == f"{session_id} 1" and [m.seq for m in stored].count(1) == 1
        assert (await find_response(store_url, f"resp-{session_id}"))[:2] == (session_id, 1)


async def test_one_session_id_under_two_callers_is_two_sessions(store_url: str) -> None:
    """Before issue 11 §4 sessions were global: a second caller's rows went into the first's."""
    async with StoreWriter(store_url, FAST) as writer:
        for caller in ("key-a", "key-b"):
            for seq in range(2):
                writer.submit_message(
                    message("shared", seq, caller=caller, response_id=f"resp-{caller}" if seq else None)
                )
            writer.submit_session(SessionRow("shared", "chat", f"p-{caller}", 1, T0, caller))
        assert await writer.flush(timeout=5)
    assert [m.caller for m in await load_messages(store_url, "shared")] == [
        "key-a",
        "key-a",
        "key-b",
        "key-b",
    ]
    assert [len(await load_messages(store_url, "shared", caller=c)) for c in ("key-a", "key-b", "x")] == [
        2,
        2,
        0,
    ]
    assert [(g.caller, g.pinned_deployment) for g in await load_session(store_url, "shared")] == [
        ("key-a", "p-key-a"),
        ("key-b", "p-key-b"),
    ]
    assert await load_session(store_url, "shared", caller="key-c") == []
    assert (await find_response(store_url, "resp-key-a", caller="key-a"))[:2] == ("shared", 1)
    assert await find_response(store_url, "resp-key-a", caller="key-b") is None  # not another's
    assert await delete_session(store_url, "shared", caller="key-a") == (1, 2)
    assert [m.caller for m in await load_messages(store_url, "shared")] == ["key-b", "key-b"]
    rows = await list_sessions(store_url)
    assert [(r["caller"], r["session_id"], r["messages"]) for r in rows] == [("key-b", "shared", 2)]


async def test_turns_add_up_and_the_pin_moves_forward_only(store_url: str) -> None:
    writer = StoreWriter(store_url, FAST)
    # Before start: nothing drains, so these three coalesce into one row of 3 turns.
    writer.submit_session(session("s1", pinned="p1", at=T0))
    writer.submit_session(session("s1", pinned="p2", at=T0 + timedelta(seconds=2)))
    writer.submit_session(session("s1", pinned="p3", at=T0 + timedelta(seconds=1)))  # late arrival
    writer.submit_session(session("s1", group="other", pinned="o1", turns=2, at=T0))
    assert writer.stats()["queued_sessions"] == 2
    async with writer:
        assert await writer.flush(timeout=5)
        assert writer.stats()["sessions_written"] == 2
        assert await load_session(store_url, "s1") == [
            (
                "chat",
                "p2",
                3,
                T0 + timedelta(seconds=2),
                "anonymous",
            ),  # latest time, not last call
            ("other", "o1", 2, T0, "anonymous"),
        ]
        writer.submit_session(session("s1", pinned="p4", turns=2, at=T0 + timedelta(seconds=10)))
        assert await writer.flush(timeout=5)
        writer.submit_session(session("s1", pinned="stale", at=T0 + timedelta(seconds=5)))  # older
        writer.submit_session(session("s1", group="other", pinned=None, at=T0 + timedelta(seconds=9)))
        assert await writer.flush(timeout=5)
    assert await load_session(store_url, "s1") == [
        (
            "chat",
            "p4",
            6,
            T0 + timedelta(seconds=10),
            "anonymous",
        ),  # stale pin and time ignored
        ("other", "o1", 3, T0 + timedelta(seconds=9), "anonymous"),  # no pin in the row: the stored one stays
    ]
    (row,) = await list_sessions(store_url, model_group="chat")
    assert row["created_at"] == T0  # the first row's time, kept by every later upsert


async def test_two_writers_on_one_database_add_their_turns(store_url: str) -> None:
    """Replicas of a fleet each record the turns they served; none overwrites another's count."""
    await upgrade_database(store_url)
    async with StoreWriter(store_url, FAST) as a, StoreWriter(store_url, FAST) as b:
        for i in range(5):
            a.submit_session(session("s1", pinned="p1", at=T0 + timedelta(seconds=i)))
            assert await a.flush(timeout=5)
            b.submit_session(
                session("s1", pinned="p2", turns=2, at=T0 + timedelta(seconds=i, milliseconds=1))
            )
            assert await b.flush(timeout=5)
    assert await load_session(store_url, "s1") == [
        ("chat", "p2", 15, T0 + timedelta(seconds=4, milliseconds=1), "anonymous")
    ]


async def test_sessions_submitted_from_threads_while_writing_are_counted_once(tmp_path: Path) -> None:
    """Rows arriving while a write is in flight go to the next write: no turn lost or doubled."""
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    async with StoreWriter(url, WriterSettings(flush_interval_s=0.001)) as writer:

        def submit(thread: int) -> int:
            """Until the writer has written several times meanwhile (bounded in count)."""
            count = 0
            while count < 20_000 and (count < 100 or writer.stats()["sessions_written"] < 12):
                writer.submit_session(session(f"s{count % 3}", pinned=f"t{thread}", at=utcnow()))
                count += 1
            return count

        counts = await asyncio.gather(*(asyncio.to_thread(submit, n) for n in range(4)))
        assert await writer.flush(timeout=10)
        assert writer.stats()["sessions_written"] >= 12  # writes happened during the submissions
    rows = await list_sessions(url)
    assert sum(row["turn_count"] for row in rows) == sum(counts)
    assert sorted(row["session_id"] for row in rows) == ["s0", "s1", "s2"]


def test_session_buffer_puts_a_failed_write_back_in_front() -> None:
    buffer = SessionBuffer(max_rows=10)
    buffer.add(session("a", turns=1, at=T0))
    buffer.add(session("b", turns=1, at=T0))
    seq, taken = buffer.take()
    assert seq == 2 and [e.row.session_id for e in taken] == ["a", "b"]
    assert len(buffer) == 2  # being written still counts as queued
    buffer.add(session("c", turns=1, at=T0))
    buffer.add(session("b", pinned="p9", turns=5, at=T0 + timedelta(seconds=1)))
    assert len(buffer) == 4
    buffer.settle(seq, written=False)  # the write failed
    assert buffer.done == 0 and len(buffer) == 3
    seq, again = buffer.take()
    assert seq == 4
    assert [(e.row.session_id, e.row.turns, e.row.pinned_deployment) for e in again] == [
        ("a", 1, "p1"),
        ("b", 6, "p9"),
        ("c", 1, "p1"),
    ]
    assert again[1] == PendingSession(T0, session("b", pinned="p9", turns=6, at=T0 + timedelta(seconds=1)))
    buffer.settle(seq, written=True)
    assert (buffer.done, len(buffer)) == (4, 0)


async def test_message_buffer_is_bounded_and_separate_from_events(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    caplog.set_level(logging.WARNING, logger="litellm_failover.store")
    writer = StoreWriter(url, WriterSettings(max_buffer=4, flush_interval_s=0.05), message_buffer_chars=100)
    # nothing drains yet; what each drop costs is measured by bench/call_costs.py
    accepted = [writer.submit_message(message("s1", seq)) for seq in range(2_000)]
    assert accepted[:4] == [True] * 4 and not any(accepted[4:])
    assert writer.submit_event(FailoverEvent("failover", "chat", reason="audit"))  # its own bound
    big = message("s2", 0, content="x" * 90)
    assert writer.submit_message(big) is False  # within max_buffer, but over the character bound
    stats = writer.stats()
    assert (stats["messages_dropped"], stats["dropped"], stats["queued_messages"]) == (1_997, 0, 4)
    drops = [r.getMessage() for r in caplog.records if "dropping new messages" in r.getMessage()]
    assert len(drops) == 1 and "buffer full" in drops[0]

    async with writer:
        assert await writer.flush(timeout=5)
        assert writer.submit_message(big)  # room again
        assert await writer.flush(timeout=5)
    assert contents(await load_messages(url, "s1")) == [(s, f"s1 {s}") for s in range(4)]
    assert [m.content for m in await load_messages(url, "s2")] == ["x" * 90]
    assert writer.submit_message(message("s1", 9)) is False  # stopped: counted, never written
    assert writer.stats()["messages_dropped"] == 1_998


def test_message_rows_are_made_storable_whatever_the_producer_sent() -> None:
    long_id = "s" * 300
    row = message_row(
        message(
            long_id, 0, content="a\x00b\ud800c", role="r" * 100, deployment_id="d" * 300, prompt_tokens=-3
        )
    )
    assert len(row["session_id"]) == 256 and len(row["role"]) == 64 and len(row["deployment_id"]) == 255
    assert row["content"] == "a\ufffdb\ufffdc" and row["prompt_tokens"] == 0
    assert row["content_hash"] == message(long_id, 0, content="a\x00b\ud800c").content_hash  # of the original
    huge = message_row(message("s1", 1, content="y" * (MAX_STORED_CONTENT_CHARS + 1)))
    assert (huge["content"], huge["truncated"], huge["content_chars"]) == (
        None,
        True,
        MAX_STORED_CONTENT_CHARS + 1,
    )


async def test_odd_text_and_long_ids_are_stored_not_refused(store_url: str) -> None:
    """PostgreSQL refuses NUL in text and no driver encodes a lone surrogate: such a message
    would otherwise be rejected (lost) rather than stored."""
    long_id = "s" * 300
    async with StoreWriter(store_url, FAST) as writer:
        writer.submit_message(message(long_id, 0, content="a\x00b\ud800c"))
        writer.submit_session(session(long_id))
        assert await writer.flush(timeout=5)
        assert writer.stats()["rejected"] == 0
    assert contents(await load_messages(store_url, long_id[:256])) == [(0, "a\ufffdb\ufffdc")]
    assert len(await load_session(store_url, long_id[:256])) == 1


async def test_engine_is_exposed_only_once_connected(tmp_path: Path) -> None:
    blocker = tmp_path / "volume"
    blocker.write_text("not a directory yet")
    writer = StoreWriter(f"sqlite+aiosqlite:///{blocker}/store.db", FAST)
    assert writer.engine is None
    await writer.start()
    try:
        assert writer.engine is None  # the database cannot be reached: no tables to read
        blocker.unlink()
        await wait_until(lambda: writer.engine is not None, timeout=5, what="the engine once connected")
    finally:
        await writer.stop()
    assert writer.engine is None


async def test_sqlite_unreachable_then_back_writes_everything_in_order(tmp_path: Path) -> None:
    blocker = tmp_path / "volume"
    blocker.write_text("not a directory yet")
    url = f"sqlite+aiosqlite:///{blocker}/store.db"
    async with StoreWriter(url, FAST) as writer:
        for seq in range(6):
            writer.submit_message(message("s1", seq))
            writer.submit_session(session("s1", at=T0 + timedelta(seconds=seq)))
        await wait_until(lambda: writer.stats()["last_error"] is not None, timeout=5, what="the error seen")
        assert writer.stats()["queued_messages"] == 6 and writer.stats()["queued_sessions"] == 1
        blocker.unlink()
        assert await writer.flush(timeout=5)
    assert contents(await load_messages(url, "s1")) == [(s, f"s1 {s}") for s in range(6)]
    assert await load_session(url, "s1") == [("chat", "p1", 6, T0 + timedelta(seconds=5), "anonymous")]


@pytest.mark.postgres
async def test_postgres_down_and_back_loses_no_message_and_no_turn(postgres_relay: Any) -> None:
    relay = postgres_relay
    writer = StoreWriter(
        relay.url, WriterSettings(batch_size=4, flush_interval_s=0.05, retry_backoff_max_s=0.1)
    )
    await writer.start()  # the relay is not listening: the database is "down"
    try:
        for seq in range(5):
            writer.submit_message(message("s1", seq))
            writer.submit_session(session("s1", at=T0 + timedelta(seconds=seq)))
        assert writer.stats()["connected"] is False and writer.stats()["queued_messages"] == 5
        await relay.start()
        await wait_until(lambda: writer.stats()["messages_written"] == 5, timeout=10, what="first rows")

        await relay.stop()  # an outage after the pool holds connections
        for seq in range(5, 12):
            writer.submit_message(message("s1", seq))
            writer.submit_session(session("s1", pinned="s9", at=T0 + timedelta(seconds=seq)))
        await wait_until(lambda: not writer.stats()["connected"], timeout=10, what="the outage noticed")
        await wait_until(lambda: writer.stats()["last_error"] is not None, timeout=10, what="an error")
        assert writer.stats()["queued_messages"] == 7 and writer.stats()["queued_sessions"] == 1

        await relay.start()
        assert await writer.flush(timeout=10)
    finally:
        await writer.stop()
    assert contents(await load_messages(relay.url, "s1")) == [(s, f"s1 {s}") for s in range(12)]
    assert await load_session(relay.url, "s1") == [
        ("chat", "s9", 12, T0 + timedelta(seconds=11), "anonymous")
    ]


async def seed_for_retention(url: str) -> None:
    """Relative to now, with a retention of one hour:

    - old: idle 2 h (expired); fresh: active 1 min ago (kept);
    - mixed: group "chat" idle 2 h, group "embed" active (the chat row goes, the messages stay);
    - orphan-old: messages 2 h old without any session row (expired); orphan-new: 1 min old (kept).
    """
    now = utcnow()
    old, recent = now - timedelta(hours=2), now - timedelta(minutes=1)
    async with StoreWriter(url, FAST) as writer:
        for name, at in (
            ("old", old),
            ("fresh", recent),
            ("mixed", old),
            ("orphan-old", old),
            ("orphan-new", recent),
        ):
            for seq in range(3):
                writer.submit_message(message(name, seq, created_at=at - timedelta(minutes=3 - seq)))
        for name, at in (("old", old), ("fresh", recent), ("mixed", old)):
            writer.submit_session(session(name, at=at))
        writer.submit_session(session("old", group="embed", at=old))
        writer.submit_session(session("mixed", group="embed", at=recent))
        assert await writer.flush(timeout=5)


async def test_purge_deletes_what_is_expired_and_nothing_else(store_url: str) -> None:
    await seed_for_retention(store_url)
    cutoff = utcnow() - timedelta(hours=1)
    assert await purge_expired(store_url, cutoff, batch_size=2) == (3, 6)  # small batches: several rounds
    remaining = {row["session_id"]: row for row in await list_sessions(store_url)}
    assert sorted((r["session_id"], r["model_group"]) for r in remaining.values()) == [
        ("fresh", "chat"),
        ("mixed", "embed"),
    ]
    for name, count in (("old", 0), ("orphan-old", 0), ("fresh", 3), ("mixed", 3), ("orphan-new", 3)):
        assert len(await load_messages(store_url, name)) == count, name
    assert await purge_expired(store_url, cutoff) == (0, 0)


async def test_list_and_delete(store_url: str) -> None:
    await seed_for_retention(store_url)
    rows = await list_sessions(store_url)
    assert [(r["session_id"], r["model_group"]) for r in rows[:2]] == [("fresh", "chat"), ("mixed", "embed")]
    assert {r["session_id"]: r["messages"] for r in rows} == {"fresh": 3, "mixed": 3, "old": 3}
    recent = await list_sessions(store_url, since=utcnow() - timedelta(minutes=30))
    assert sorted(r["session_id"] for r in recent) == ["fresh", "mixed"]
    assert [r["session_id"] for r in await list_sessions(store_url, model_group="embed", limit=1)] == [
        "mixed"
    ]
    assert len(await list_sessions(store_url, limit=2)) == 2

    assert await delete_session(store_url, "old") == (2, 3)
    assert await load_session(store_url, "old") == [] and await load_messages(store_url, "old") == []
    assert await delete_session(store_url, "old") == (0, 0)
    assert await delete_session(store_url, "orphan-new") == (0, 3)  # messages without a session row
    assert len(await load_messages(store_url, "fresh")) == 3


async def test_retention_purger_runs_on_the_writers_engine(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    await seed_for_retention(url)
    settings = SessionSettings(retention_s=3600, purge_interval_s=0.05)
    async with StoreWriter(url, FAST) as writer, RetentionPurger(writer, settings) as purger:
        await wait_until(lambda: purger.stats()["runs"] >= 2, timeout=5, what="two purge rounds")
        stats = purger.stats()
        assert (stats["sessions_purged"], stats["messages_purged"]) == (3, 6)
        assert (stats["last_purge_sessions"], stats["last_purge_messages"]) == (0, 0)  # nothing new
        assert stats["running"] and stats["last_error"] is None and stats["last_purge_at"] is not None
        writer.submit_message(message("fresh", 3, created_at=utcnow()))  # the writer works alongside
        assert await writer.flush(timeout=5)
    assert purger.stats()["running"] is False
    assert len(await load_messages(url, "fresh")) == 4 and await load_messages(url, "old") == []


async def test_retention_purger_waits_for_an_engine_and_survives_database_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    await seed_for_retention(url)
    secret = "Purge-S3cret"
    down = create_engine(f"postgresql+asyncpg://postgres:{secret}@127.0.0.1:{free_port()}/test")
    good = create_engine(url)
    source: dict[str, Any] = {"engine": None}
    purger = RetentionPurger(
        lambda: source["engine"], SessionSettings(retention_s=3600, purge_interval_s=0.05)
    )
    assert await purger.purge_now() is None  # no engine yet (the writer not connected): nothing done
    await purger.start()
    try:
        source["engine"] = down
        await wait_until(lambda: purger.stats()["last_error"] is not None, timeout=10, what="an error")
        assert (
            purger.stats()["runs"] == 0 and secret not in repr(purger.stats()) and secret not in caplog.text
        )
        assert any("retention purge failed" in r.getMessage() for r in caplog.records)
        source["engine"] = good  # the database is back: the same loop carries on
        await wait_until(lambda: purger.stats()["runs"] >= 1, timeout=10, what="a purge after the error")
        assert purger.stats()["messages_purged"] == 6 and purger.stats()["last_error"] is None
    finally:
        await purger.stop()
        await asyncio.gather(down.dispose(), good.dispose())

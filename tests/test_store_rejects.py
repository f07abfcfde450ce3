"""The store writer survives any row (issue 11 §3), on SQLite and PostgreSQL.

A row with a NUL character or a non-finite number in it is cleaned on the way in and stored; a
row the database refuses for its content (SQLSTATE classes 22 and 23, or SQLite's equivalents) is
rejected alone and counted. Neither is ever taken for a database outage, which would stop every
table behind it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sqlite3
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from factories import message, session
from prometheus_client import CollectorRegistry, generate_latest
from test_store_writer import event, state

from litellm_failover.metrics import PluginCollector
from litellm_failover.settings import WriterSettings
from litellm_failover.store.batches import is_row_error
from litellm_failover.store.buffers import SessionBuffer
from litellm_failover.store.conversations import load_messages, load_session
from litellm_failover.store.engine import create_engine
from litellm_failover.store.migrate import upgrade_database
from litellm_failover.store.queries import list_deployment_states, list_events
from litellm_failover.store.rows import event_row, jsonable
from litellm_failover.store.statements import insert_events
from litellm_failover.store.writer import StoreWriter

pytest_plugins = ["services", "store_fixtures"]

FAST = WriterSettings(flush_interval_s=0.05, retry_backoff_max_s=0.1)


def assert_never_an_outage(writer: StoreWriter) -> None:
    stats = writer.stats()
    assert stats["connected"] is True and stats["last_error"] is None, stats


async def test_nul_and_non_finite_values_are_stored_clean_in_every_table(store_url: str) -> None:
    nul = "upstream said \x00 here"
    async with StoreWriter(store_url, FAST) as writer:
        writer.submit_event(event(0))
        writer.submit_event(event(1, reason=nul, details={"error": nul, "k\x00ey": [nul]}))
        writer.submit_event(event(2))
        writer.submit_event(event(3, details={"nan": math.nan, "inf": math.inf, "deep": [-math.inf]}))
        writer.submit_event(event(4, deployment_id="p\x00q"))
        writer.submit_state(state("p\x001", "ejected", 1, reason=nul, checks={"probe": {"reason": nul}}))
        writer.submit_state(state("s1", "healthy", 1, checks={"latency": math.nan}))
        writer.submit_session(session("sess\x00a", pinned="p\x001"))
        writer.submit_message(message("sess\x00a", 0, role="us\x00er", response_id="r\x00"))
        writer.submit_message(message("sess\x00a", 1, content=nul))
        assert await writer.flush(timeout=10)
        assert_never_an_outage(writer)
        assert writer.stats()["rejected"] == 0
        assert writer.stats()["written"] == 5 and writer.stats()["messages_written"] == 2
    events = await list_events(store_url)
    assert [e["reason"] for e in events] == ["r0", "upstream said \ufffd here", "r2", "r3", "r4"]
    assert events[1]["details"] == {
        "error": "upstream said \ufffd here",
        "k\ufffdey": ["upstream said \ufffd here"],
    }
    assert events[3]["details"] == {"nan": "NaN", "inf": "Infinity", "deep": ["-Infinity"]}
    assert events[4]["deployment_id"] == "p\ufffdq"
    states = {s["deployment_id"]: s for s in await list_deployment_states(store_url)}
    assert states["p\ufffd1"]["reason"] == "upstream said \ufffd here"
    assert states["s1"]["checks"] == {"latency": "NaN"}
    assert len(await load_session(store_url, "sess\ufffda")) == 1
    stored = await load_messages(store_url, "sess\ufffda")
    assert [(m.role, m.content) for m in stored] == [
        ("us\ufffder", "sess\ufffda 0"),
        ("assistant", "upstream said \ufffd here"),
    ]


async def test_a_refused_row_of_each_kind_is_rejected_alone(store_url: str) -> None:
    """NOT NULL violations (SQLSTATE 23502, sqlite3.IntegrityError) with good rows around them."""
    async with StoreWriter(store_url, FAST) as writer:
        for i in range(5):
            writer.submit_event(event(i, model_group=None) if i == 2 else event(i))
        writer.submit_state(state("p1", "ejected", 1, model_group=None))
        writer.submit_state(state("s1", "healthy", 1))
        writer.submit_session(session("a"))
        writer.submit_session(session("b", group=None))  # type: ignore[arg-type]
        writer.submit_session(session("c"))
        writer.submit_message(message("a", 0))
        writer.submit_message(message("a", 1, role=None))
        writer.submit_message(message("a", 2))
        assert await writer.flush(timeout=10)
        assert_never_an_outage(writer)
        stats = writer.stats()
        assert (stats["written"], stats["rejected"]) == (4, 4), stats
        assert (stats["messages_written"], stats["sessions_written"]) == (2, 2), stats
    assert [e["reason"] for e in await list_events(store_url)] == ["r0", "r1", "r3", "r4"]
    assert [s["deployment_id"] for s in await list_deployment_states(store_url)] == ["s1"]
    assert [m.seq for m in await load_messages(store_url, "a")] == [0, 2]
    assert len(await load_session(store_url, "c")) == 1


@pytest.mark.postgres
async def test_a_value_out_of_range_is_rejected_not_an_outage(postgres_schema_url: str) -> None:
    """SQLSTATE class 22 from the server (integer overflow in the turn-count upsert): before
    issue 11 asyncpg's generic error was taken for an outage and the writer retried forever."""
    url = postgres_schema_url
    async with StoreWriter(url, FAST) as writer:
        writer.submit_session(session("big", turns=2**31 - 1))
        assert await writer.flush(timeout=10)
        writer.submit_event(event(0))
        writer.submit_session(session("big", turns=1))  # 2**31: out of range for integer
        writer.submit_session(session("small", turns=1))
        writer.submit_message(message("small", 0))
        assert await writer.flush(timeout=10)
        assert_never_an_outage(writer)
        assert writer.stats()["rejected"] == 1
        assert writer.stats()["written"] == 1 and writer.stats()["messages_written"] == 1
    assert [s.turn_count for s in await load_session(url, "big")] == [2**31 - 1]
    assert len(await load_session(url, "small")) == 1


def test_json_is_cleaned_of_non_finite_numbers_and_nul() -> None:
    cleaned = jsonable({"a": math.nan, "b": (math.inf, -math.inf, 1.5), "c\x00": "x\x00y", 2: None})
    assert cleaned == {"a": "NaN", "b": ["Infinity", "-Infinity", 1.5], "c\ufffd": "x\ufffdy", "2": None}


def test_session_buffer_is_bounded_and_counts_its_drops() -> None:
    buffer = SessionBuffer(max_rows=2)
    assert buffer.add(session("a")) and buffer.add(session("b"))
    assert buffer.add(session("a", turns=2))  # merges into a held row: no new entry
    assert not buffer.add(session("c"))
    assert (len(buffer), buffer.dropped) == (2, 1)
    seq, _ = buffer.take()
    assert not buffer.add(session("d"))  # rows being written still count
    buffer.settle(seq, written=True)
    assert buffer.add(session("d")) and buffer.dropped == 2


async def test_the_writer_drops_sessions_over_its_bound_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    writer = StoreWriter(url, WriterSettings(max_buffer=3))  # not started: rows wait
    for name in "abcde":
        writer.submit_session(session(name))
    stats = writer.stats()
    assert (stats["queued_sessions"], stats["sessions_dropped"]) == (3, 2)
    registry = CollectorRegistry()  # the metric: the other sections fail on this bare source
    registry.register(PluginCollector(SimpleNamespace(writer=writer)))  # type: ignore[arg-type]
    scraped = generate_latest(registry).decode()
    assert 'litellm_failover_writer_dropped_rows_total{kind="sessions"} 2.0' in scraped
    await writer.stop(timeout=0.1)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_sqlite_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "store.db"
    old = os.umask(0o022)
    try:
        async with StoreWriter(f"sqlite+aiosqlite:///{path}", FAST) as writer:
            writer.submit_event(event(0))
            assert await writer.flush(timeout=5)
        assert mode(path) == 0o600
        # Journal files take the database file's mode (SQLite's rule): WAL's -wal and -shm too.
        connection = sqlite3.connect(path)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("DELETE FROM failover_events")
            connection.commit()
            extra = {n: mode(Path(f"{path}{n}")) for n in ("-wal", "-shm")}
        finally:
            connection.close()
        assert extra == {"-wal": 0o600, "-shm": 0o600}
    finally:
        os.umask(old)


async def test_an_existing_sqlite_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.touch()
    path.chmod(0o640)
    async with StoreWriter(f"sqlite+aiosqlite:///{path}", FAST) as writer:
        writer.submit_event(event(0))
        assert await writer.flush(timeout=5)
    assert mode(path) == 0o640


async def test_db_upgrade_creates_the_sqlite_file_owner_only_too(tmp_path: Path) -> None:
    path = tmp_path / "cli" / "store.db"
    old = os.umask(0o022)
    try:
        await upgrade_database(f"sqlite+aiosqlite:///{path}")
    finally:
        os.umask(old)
    assert mode(path) == 0o600


async def test_a_non_finite_number_that_skipped_the_rows_is_refused_not_written(store_url: str) -> None:
    """The engine's JSON serialiser is strict too: such a value fails to bind (a row error, so
    rejected alone) instead of reaching the table as ``NaN``."""
    await upgrade_database(store_url)
    engine = create_engine(store_url)
    try:
        row = event_row(event(0)) | {"details": {"x": math.nan}}
        with pytest.raises(Exception) as raised:
            async with engine.begin() as connection:
                await connection.execute(insert_events(engine.dialect.name), [row])
        assert is_row_error(raised.value)
    finally:
        await engine.dispose()
    assert await list_events(store_url) == []


async def test_a_value_the_driver_cannot_bind_is_rejected_alone(store_url: str) -> None:
    """A position past any integer column: sqlite3 raises a bare OverflowError, asyncpg a
    client-side DataError wrapped as an InterfaceError; both were taken for an outage."""
    async with StoreWriter(store_url, FAST) as writer:
        writer.submit_message(message("a", 0))
        writer.submit_message(dataclasses.replace(message("a", 1), seq=2**70))
        writer.submit_message(message("a", 2))
        assert await writer.flush(timeout=10)
        assert_never_an_outage(writer)
        assert (writer.stats()["messages_written"], writer.stats()["rejected"]) == (2, 1)
    assert [m.seq for m in await load_messages(store_url, "a")] == [0, 2]

"""The store writer against real SQLite and PostgreSQL: batching, order, outages, drops, secrets."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from waiting import free_port, wait_until

from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.records import DeploymentStateRow
from litellm_failover.settings import WriterSettings
from litellm_failover.store.engine import create_engine
from litellm_failover.store.migrate import upgrade_database
from litellm_failover.store.queries import list_deployment_states, list_events
from litellm_failover.store.writer import StoreWriter

pytest_plugins = ["services"]

FAST = WriterSettings(flush_interval_s=0.05, retry_backoff_max_s=0.1)
BASE = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def event(i: int, **overrides: Any) -> FailoverEvent:
    fields: dict[str, Any] = {
        "event_type": EventType.FAILOVER,
        "model_group": "chat",
        "from_deployment": "p1",
        "to_deployment": "s1",
        "reason": f"r{i}",
        "instance_id": "proxy-a",
        "details": {"i": i},
        "created_at": BASE + timedelta(milliseconds=i),
    }
    fields.update(overrides)
    return FailoverEvent(**fields)


def state(deployment: str, value: str, minute: int, **overrides: Any) -> DeploymentStateRow:
    fields: dict[str, Any] = {
        "deployment_id": deployment,
        "model_group": "chat",
        "state": value,
        "reason": f"{value} at {minute}",
        "instance_id": "proxy-a",
        "checks": {"probe": {"ok": value == "healthy", "reason": "" if value == "healthy" else "refused"}},
        "ejection_count": minute,
        "updated_at": BASE + timedelta(minutes=minute),
    }
    fields.update(overrides)
    return DeploymentStateRow(**fields)


async def sqlite_reasons_in_insert_order(url: str) -> list[str]:
    engine = create_engine(url, create_directory=False)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text("SELECT reason FROM failover_events ORDER BY rowid"))
            return [row[0] for row in result]
    finally:
        await engine.dispose()


def sqlite_url(tmp_path: Path, name: str = "store.db") -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/{name}"


async def test_events_in_order_and_states_coalesced(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    settings = WriterSettings(batch_size=10, flush_interval_s=0.05)
    async with StoreWriter(url, settings) as writer:
        for i in range(25):
            assert writer.submit_event(event(i))
        writer.submit_state(state("p1", "healthy", 1))
        writer.submit_state(state("s1", "healthy", 1))
        writer.submit_state(state("p1", "ejected", 2))  # replaces p1's first row before any write
        assert await writer.flush(timeout=5)
        stats = writer.stats()
        assert stats["written"] == 25 and stats["states_written"] == 2 and stats["queued"] == 0
        assert stats["connected"] is True and stats["last_error"] is None

        writer.submit_state(state("p1", "healthy", 3))  # newer: replaces the stored row
        writer.submit_state(state("s1", "ejected", 0))  # older than the stored one: ignored
        assert await writer.flush(timeout=5)

    assert await sqlite_reasons_in_insert_order(url) == [f"r{i}" for i in range(25)]
    rows = await list_events(url)
    assert [r["reason"] for r in rows] == [f"r{i}" for i in range(25)]
    assert rows[0]["created_at"] == BASE and rows[0]["created_at"].tzinfo is not None
    assert rows[3]["details"] == {"i": 3} and rows[3]["event_type"] == "failover"
    states = {r["deployment_id"]: r for r in await list_deployment_states(url)}
    assert (states["p1"]["state"], states["p1"]["ejection_count"]) == ("healthy", 3)
    assert states["s1"]["state"] == "healthy"
    assert states["s1"]["checks"] == {"probe": {"ok": True, "reason": ""}}


async def test_a_full_batch_is_written_without_waiting_for_the_interval(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    writer = StoreWriter(url, WriterSettings(batch_size=5, flush_interval_s=60))
    await writer.start()
    try:
        for i in range(5):
            writer.submit_event(event(i))
        await wait_until(lambda: writer.stats()["written"] == 5, timeout=5, what="a full batch written")
        writer.submit_event(event(5))  # below batch size: it waits for the interval, or for stop()
        writer.submit_state(state("p1", "ejected", 1))
    finally:
        await writer.stop()
    assert writer.stats()["written"] == 6 and writer.stats()["queued"] == 0
    assert await sqlite_reasons_in_insert_order(url) == [f"r{i}" for i in range(6)]
    assert [r["state"] for r in await list_deployment_states(url)] == ["ejected"]


async def test_full_buffer_drops_new_rows_counts_them_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = sqlite_url(tmp_path)
    writer = StoreWriter(url, WriterSettings(max_buffer=5, flush_interval_s=0.05))
    caplog.set_level(logging.WARNING, logger="litellm_failover.store")
    accepted = [writer.submit_event(event(i)) for i in range(5_000)]  # before start(): nothing drains
    assert accepted[:5] == [True] * 5 and not any(accepted[5:])
    assert writer.stats()["dropped"] == 4_995 and writer.stats()["queued"] == 5
    # What a submission into a full buffer costs is measured by bench/call_costs.py.
    drop_warnings = [r for r in caplog.records if "dropping new events" in r.getMessage()]
    assert len(drop_warnings) == 1

    async with writer:
        assert await writer.flush(timeout=5)
        assert writer.submit_event(event(99))  # room again once written
        assert await writer.flush(timeout=5)
    assert await sqlite_reasons_in_insert_order(url) == ["r0", "r1", "r2", "r3", "r4", "r99"]
    assert writer.submit_event(event(100)) is False  # stopped: nothing would ever write it


async def test_sqlite_unavailable_at_start_then_available(tmp_path: Path) -> None:
    """The database's directory is not there yet (a volume not mounted): rows wait, then land."""
    blocker = tmp_path / "volume"
    blocker.write_text("not a directory yet")
    url = f"sqlite+aiosqlite:///{blocker}/store.db"
    writer = StoreWriter(url, FAST)
    started = time.perf_counter()
    await writer.start()
    try:
        assert time.perf_counter() - started < 1.0
        for i in range(3):
            assert writer.submit_event(event(i))
        writer.submit_state(state("p1", "ejected", 1))
        stats = writer.stats()
        assert stats["connected"] is False and stats["queued"] == 4
        assert "volume" in stats["last_error"]

        blocker.unlink()
        await wait_until(lambda: writer.stats()["queued"] == 0, timeout=5, what="rows flushed after recovery")
        assert writer.stats()["connected"] is True
    finally:
        await writer.stop()
    assert await sqlite_reasons_in_insert_order(url) == ["r0", "r1", "r2"]


async def test_without_migrate_it_waits_for_the_tables(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    async with StoreWriter(url, FAST, migrate=False) as writer:
        writer.submit_event(event(0))
        await wait_until(lambda: writer.stats()["last_error"] is not None, timeout=5, what="an error")
        assert "no such table" in writer.stats()["last_error"]
        await upgrade_database(url)
        assert await writer.flush(timeout=5)
    assert await sqlite_reasons_in_insert_order(url) == ["r0"]


async def test_a_row_the_database_refuses_does_not_hold_back_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = sqlite_url(tmp_path)
    async with StoreWriter(url, FAST) as writer:
        for i in range(5):
            writer.submit_event(event(i, model_group=None) if i == 2 else event(i))
        writer.submit_state(state("p1", "ejected", 1, model_group=None))
        writer.submit_state(state("s1", "healthy", 1))
        assert await writer.flush(timeout=5)
        assert writer.stats()["rejected"] == 2 and writer.stats()["written"] == 4
    assert await sqlite_reasons_in_insert_order(url) == ["r0", "r1", "r3", "r4"]
    assert [s["deployment_id"] for s in await list_deployment_states(url)] == ["s1"]
    assert any("rejected event" in r.getMessage() for r in caplog.records)


async def test_submissions_from_another_thread_wake_the_writer(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    async with StoreWriter(url, FAST) as writer:
        await wait_until(lambda: writer.stats()["connected"], timeout=5, what="connected")
        thread = threading.Thread(target=lambda: [writer.submit_event(event(i)) for i in range(3)])
        thread.start()
        thread.join()
        await wait_until(lambda: writer.stats()["written"] == 3, timeout=5, what="thread's rows written")


async def test_stop_is_bounded_when_the_database_is_down(caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test"
    writer = StoreWriter(url, FAST)
    await writer.start()
    writer.submit_event(event(0))
    assert await writer.flush(timeout=0.2) is False
    started = time.perf_counter()
    await writer.stop(timeout=0.5)
    assert time.perf_counter() - started < 1.5
    assert writer.stats()["queued"] == 1
    assert any("1 rows unwritten" in r.getMessage() for r in caplog.records)


@pytest.mark.postgres
async def test_a_password_never_shows_in_stats_errors_or_logs(
    caplog: pytest.LogCaptureFixture, postgres_base_url: str
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Sup3r-S3cret"
    closed = f"postgresql+asyncpg://postgres:{secret}@127.0.0.1:{free_port()}/test"
    # Trust auth accepts any password; a database that does not exist fails after connecting.
    missing_db = (
        make_url(postgres_base_url)
        .set(password=secret, database=f"no_such_db_{free_port()}")
        .render_as_string(hide_password=False)
    )
    for url in (closed, missing_db):
        writer = StoreWriter(url, FAST)
        await writer.start()
        writer.submit_event(event(0))
        await wait_until(lambda w=writer: w.stats()["last_error"] is not None, timeout=5, what="an error")
        await writer.stop(timeout=0.3)
        stats = writer.stats()
        assert secret not in repr(stats)
        assert "***" in stats["url"]
    assert "does not exist" in stats["last_error"]
    assert caplog.records and secret not in caplog.text


@pytest.mark.postgres
async def test_postgres_writes_events_and_upserts_states(postgres_schema_url: str) -> None:
    url = postgres_schema_url
    async with StoreWriter(url, WriterSettings(batch_size=4, flush_interval_s=0.05)) as writer:
        for i in range(10):
            writer.submit_event(event(i, event_type=EventType.STATE_CHANGE if i % 2 else EventType.FAILOVER))
        writer.submit_event(event(10, model_group=None))  # NOT NULL: refused, and alone
        writer.submit_state(state("p1", "healthy", 1))
        writer.submit_state(state("p1", "ejected", 2))
        assert await writer.flush(timeout=5)
        writer.submit_state(state("p1", "healthy", 3))
        assert await writer.flush(timeout=5)
        assert (writer.stats()["written"], writer.stats()["rejected"]) == (10, 1)
    rows = await list_events(url)
    assert [r["reason"] for r in rows] == [f"r{i}" for i in range(10)]
    assert rows[0]["created_at"] == BASE and rows[1]["details"] == {"i": 1}
    assert [r["reason"] for r in await list_events(url, event_type="state_change", limit=2)] == ["r7", "r9"]
    assert len(await list_events(url, since=BASE + timedelta(milliseconds=5))) == 5
    states = await list_deployment_states(url)
    assert [(s["deployment_id"], s["state"], s["ejection_count"]) for s in states] == [("p1", "healthy", 3)]


@pytest.mark.postgres
async def test_postgres_down_at_start_and_mid_run_loses_nothing(postgres_relay: Any) -> None:
    relay = postgres_relay
    writer = StoreWriter(relay.url, FAST)
    started = time.perf_counter()
    await writer.start()  # the relay is not listening: the database is "down"
    try:
        assert time.perf_counter() - started < 1.0
        for i in range(5):
            writer.submit_event(event(i))
        assert writer.stats()["connected"] is False and writer.stats()["queued"] == 5

        await relay.start()
        await wait_until(lambda: writer.stats()["written"] == 5, timeout=10, what="rows after first start")

        await relay.stop()  # an outage after the pool holds connections
        for i in range(5, 10):
            writer.submit_event(event(i))
        writer.submit_state(state("p1", "ejected", 1))
        await wait_until(lambda: not writer.stats()["connected"], timeout=10, what="the outage noticed")
        assert writer.stats()["queued"] == 6

        await relay.start()
        assert await writer.flush(timeout=10)
    finally:
        await writer.stop()
    rows = await list_events(relay.url)
    assert [r["reason"] for r in rows] == [f"r{i}" for i in range(10)]
    assert [s["state"] for s in await list_deployment_states(relay.url)] == ["ejected"]


async def test_a_timeout_while_the_loop_stood_still_names_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    """A server that accepts and never answers times the connection out. When that deadline passes
    while something blocks the event loop, the warning says so instead of blaming the database."""
    import asyncio

    from litellm_failover.looplag import BLOCKED_S

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # hold the connection open until the client gives up

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    caplog.set_level(logging.WARNING, logger="litellm_failover.store")
    writer = StoreWriter(
        f"postgresql+asyncpg://u@127.0.0.1:{port}/db?connect_timeout=0.3", FAST, start_timeout=0
    )

    async def block_the_loop() -> None:
        await asyncio.sleep(0.05)
        time.sleep(BLOCKED_S + 0.5)  # noqa: ASYNC251 (the connect's 0.3 s deadline passes in here)

    try:
        blocker = asyncio.create_task(block_the_loop())
        await writer.start()
        await blocker
        await wait_until(
            lambda: "event loop was blocked" in caplog.text, timeout=10, what="the blocked loop named"
        )
        warning = next(r.getMessage() for r in caplog.records if "event loop was blocked" in r.getMessage())
        assert "call timed out, keeping" in warning and "unavailable" not in warning
        assert "TimeoutError: the event loop was blocked for 1." in warning
        # The next attempts time out with the loop running: that is the database's doing again.
        await wait_until(
            lambda: writer.stats()["last_error"] == "TimeoutError", timeout=10, what="a plain timeout"
        )
    finally:
        await writer.stop(timeout=1)
        server.close()


async def test_a_row_arriving_mid_write_never_lands_before_its_companion(tmp_path: Path) -> None:
    """The plugin submits a transition's event just before its state, and a turn's messages just
    before its session. A pair that arrives while the writer is writing the table before its own
    must wait for the next flush as a whole: a state row without its event, or a message without
    its session, would be visible to readers in between. The pairs are submitted from the
    engine's ``before_execute`` hook, i.e. at the moment the earlier table's INSERT runs."""
    from sqlalchemy import event as sqlalchemy_event

    from litellm_failover.records import MessageRow, SessionRow

    def message(session: str) -> MessageRow:
        return MessageRow(
            session_id=session, seq=0, role="user", content="hi", content_hash="h", content_chars=2
        )

    written: dict[str, set[str]] = {"failover_events": set(), "failover_sessions": set()}
    early: list[str] = []
    injected: set[str] = set()

    async with StoreWriter(sqlite_url(tmp_path), FAST) as writer:

        def on_execute(conn: Any, statement: Any, many: Any, params: Any, options: Any) -> None:
            table = getattr(getattr(statement, "table", None), "name", None)
            rows = many or [params]  # several rows come as a list, one as a dict
            if table == "failover_events":
                written[table] |= {row["deployment_id"] for row in rows}
                if "late" not in injected:  # a transition while the events are being written
                    injected.add("late")
                    writer.submit_event(event(1, event_type=EventType.STATE_CHANGE, deployment_id="late"))
                    writer.submit_state(state("late", "ejected", 1))
            elif table == "failover_sessions":
                written[table] |= {row["session_id"] for row in rows}
                if "late-session" not in injected:  # a turn while the sessions are being written
                    injected.add("late-session")
                    writer.submit_message(message("late-session"))
                    writer.submit_session(SessionRow("late-session", "chat", "p1", turns=1))
            elif table == "failover_deployment_state":
                alone = [
                    r["deployment_id"] for r in rows if r["deployment_id"] not in written["failover_events"]
                ]
                early.extend(f"state {d}" for d in alone)
            elif table == "failover_messages":
                alone = [r["session_id"] for r in rows if r["session_id"] not in written["failover_sessions"]]
                early.extend(f"message {s}" for s in alone)

        engine = writer.engine
        assert engine is not None
        sqlalchemy_event.listen(engine.sync_engine, "before_execute", on_execute)
        writer.submit_event(event(0, event_type=EventType.STATE_CHANGE, deployment_id="first"))
        writer.submit_state(state("first", "ejected", 0))
        writer.submit_message(message("first-session"))
        writer.submit_session(SessionRow("first-session", "chat", "p1", turns=1))
        assert await writer.flush(timeout=10)
        await wait_until(lambda: writer.stats()["queued"] == 0, timeout=10, what="the late pairs written")
    assert injected == {"late", "late-session"}
    assert written == {
        "failover_events": {"first", "late"},
        "failover_sessions": {"first-session", "late-session"},
    }
    assert early == []

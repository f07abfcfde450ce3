"""Message rows per second the store writer sustains into SQLite and into PostgreSQL.

Conversation storage writes two message rows and one session upsert per turn; the issue asks
the writer to keep up with at least 2,000 message rows a second on each database, so a busy
proxy's conversations never overflow its buffer. The load is what the plugin's success hooks
submit: conversations of 10 turns, a user message and an assistant answer of ~600 characters
each (text stored: the heavier case), and one ``submit_session`` per turn, all through
``StoreWriter`` with its default settings (batch 200, flush interval 0.2 s, buffer 10,000).

The producer submits as fast as the buffer takes rows, never letting it overflow (a drop would
abort the bench: the point is the rate without losses). The clock runs from the first
submission to ``flush()`` returning, i.e. until every row is committed; then the rows are
counted in the table. Each round uses a fresh database: a temporary SQLite file, and a
PostgreSQL schema of its own (created before, dropped after). Rounds alternate between the
two; the figure is the median round. Without a reachable PostgreSQL the bench says so and
reports that goal as not measured.

Run: ``.venv/bin/python bench/writer_throughput.py`` (``--quick`` for a smoke run). PostgreSQL:
``LITELLM_FAILOVER_BENCH_POSTGRES_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

try:  # python -m bench.writer_throughput
    from bench import _common as common
except ImportError:  # python bench/writer_throughput.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]

GOAL_ROWS_PER_S = 2000.0
POSTGRES_ENV = "LITELLM_FAILOVER_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
TURNS_PER_SESSION = 10
CONTENT_CHARS = 600
ROUND_LIMIT_S = 120.0  # a round that takes longer has failed; the bench stops rather than hang

_WORDS = "the node answered within budget while the queue drained and the cache kept its prefix".split()


def _text(index: int) -> str:
    words = [_WORDS[(index + i) % len(_WORDS)] for i in range(CONTENT_CHARS // 5)]
    return " ".join(words)[:CONTENT_CHARS]


def build_load(messages: int) -> tuple[list[Any], list[Any]]:
    """(message rows, session rows): per turn two messages and one session row, in turn order."""
    from litellm_failover.records import MessageRow, SessionRow

    start = datetime.now(UTC)
    rows: list[Any] = []
    sessions: list[Any] = []
    turns = messages // 2
    for turn in range(turns):
        session_id = f"bench-{turn // TURNS_PER_SESSION:06d}"
        at = start + timedelta(milliseconds=turn)
        for offset, role in enumerate(("user", "assistant")):
            seq = 2 * (turn % TURNS_PER_SESSION) + offset
            content = _text(turn * 2 + offset)
            rows.append(
                MessageRow(
                    session_id=session_id,
                    seq=seq,
                    role=role,
                    content=content,
                    content_hash=hashlib.sha256(content.encode()).hexdigest(),
                    content_chars=len(content),
                    deployment_id="vllm-a" if role == "assistant" else None,
                    response_id=f"resp-{turn}" if role == "assistant" else None,
                    prompt_tokens=120 if role == "assistant" else None,
                    completion_tokens=150 if role == "assistant" else None,
                    created_at=at,
                )
            )
        sessions.append(SessionRow(session_id, "chat", "vllm-a", 1, at))
    return rows, sessions


async def _count(engine: Any) -> tuple[int, int]:
    from sqlalchemy import text

    async with engine.connect() as connection:
        messages = (await connection.execute(text("SELECT count(*) FROM failover_messages"))).scalar()
        turns = (await connection.execute(text("SELECT sum(turn_count) FROM failover_sessions"))).scalar()
    return int(messages or 0), int(turns or 0)


async def one_round(url: str, messages: int) -> dict[str, float]:
    """Write one load through a fresh writer; rows/s from first submission to everything committed."""
    from litellm_failover.settings import WriterSettings
    from litellm_failover.store.writer import StoreWriter

    rows, sessions = build_load(messages)
    settings = WriterSettings()
    async with StoreWriter(url, settings, start_timeout=30.0) as writer:
        if writer.engine is None:
            raise RuntimeError(f"the writer could not reach the database: {writer.stats()['last_error']}")
        deadline = time.monotonic() + ROUND_LIMIT_S
        started = time.perf_counter()
        for turn, session_row in enumerate(sessions):
            while writer.stats()["queued_messages"] + 2 > settings.max_buffer:  # full: let it write
                if time.monotonic() > deadline:
                    raise RuntimeError("the writer fell behind for the whole round limit")
                await asyncio.sleep(0.001)
            for row in rows[2 * turn : 2 * turn + 2]:
                if not writer.submit_message(row):
                    raise RuntimeError("a message was dropped: the bench must measure a lossless rate")
            writer.submit_session(session_row)
            if turn % 50 == 49:
                await asyncio.sleep(0)  # the hooks run on the event loop too: share it with the writer
        if not await writer.flush(timeout=max(deadline - time.monotonic(), 1.0)):
            raise RuntimeError(f"flush did not complete: {writer.stats()}")
        elapsed = time.perf_counter() - started
        stats = writer.stats()
        stored, turns = await _count(writer.engine)
    if (stored, turns) != (len(rows), len(sessions)) or stats["messages_dropped"] or stats["rejected"]:
        raise RuntimeError(f"stored {stored} messages and {turns} turns of {len(rows)} and {len(sessions)}")
    return {"rows_per_s": len(rows) / elapsed, "seconds": elapsed, "messages": len(rows)}


def postgres_url() -> str:
    return os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)


def postgres_reachable(url: str) -> str | None:
    """None when the server answers on its port, else why not (for the report)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host, port = parsed.host or "127.0.0.1", parsed.port or 5432
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return None
    except OSError as exc:
        return f"PostgreSQL not reachable at {host}:{port} ({exc.strerror or exc})"


async def _postgres_sql(url: str, sql: str) -> None:
    from sqlalchemy import text

    from litellm_failover.store.engine import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()


@asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    """A fresh, empty database for one round, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-writer-") as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'store.db'}"
        return
    from sqlalchemy.engine import make_url

    base = postgres_url()
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    await _postgres_sql(base, f'CREATE SCHEMA "{schema}"')
    try:
        yield make_url(base).update_query_dict({"search_path": schema}).render_as_string(hide_password=False)
    finally:
        await _postgres_sql(base, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def run(rounds: int, messages: int) -> dict[str, Any]:
    from litellm_failover.store.engine import redact_url

    kinds = ["sqlite"]
    postgres_missing = postgres_reachable(postgres_url())
    if postgres_missing is None:
        kinds.append("postgres")
    else:
        print(f"{postgres_missing}: the PostgreSQL half of this bench is not measured")
    per_round: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for index in range(rounds):
        for kind in kinds if index % 2 == 0 else list(reversed(kinds)):  # alternate the order
            async with database(kind) as url:
                per_round[kind].append(await one_round(url, messages))

    def median_rate(kind: str) -> float:
        return (
            common.median(r["rows_per_s"] for r in per_round.get(kind, [])) if kind in per_round else math.nan
        )

    sqlite_rate, postgres_rate = median_rate("sqlite"), median_rate("postgres")
    metrics = {
        "sqlite_message_rows_per_s": sqlite_rate,
        "postgres_message_rows_per_s": postgres_rate,
        "messages_per_round": messages,
        "rounds": rounds,
    }
    goals = [
        common.Goal("writer -> SQLite, message rows/s", sqlite_rate, ">=", GOAL_ROWS_PER_S),
        common.Goal("writer -> PostgreSQL, message rows/s", postgres_rate, ">=", GOAL_ROWS_PER_S),
    ]
    details = {
        "rounds": per_round,
        "postgres": redact_url(postgres_url()) if postgres_missing is None else postgres_missing,
        "load": f"{TURNS_PER_SESSION}-turn conversations, {CONTENT_CHARS}-char messages, "
        "one session upsert per turn, default WriterSettings",
    }
    return common.result("writer_throughput", metrics, goals, details)


def report(data: dict[str, Any]) -> None:
    rows = []
    for kind, rounds in data["details"]["rounds"].items():
        rates = [r["rows_per_s"] for r in rounds]
        rows.append([kind, common.median(rates), min(rates), max(rates), rounds[0]["messages"]])
    if isinstance(data["details"]["postgres"], str) and "not reachable" in data["details"]["postgres"]:
        rows.append(["postgres", math.nan, math.nan, math.nan, 0])
    common.print_rows(
        "store writer: message rows per second, first submission to all committed",
        ["database", "median rows/s", "slowest round", "fastest round", "messages per round"],
        rows,
    )


def main() -> int:
    p = common.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    data = asyncio.run(run(rounds=1, messages=4_000) if args.quick else run(rounds=5, messages=30_000))
    report(data)
    return common.finish(args, data)


if __name__ == "__main__":
    raise SystemExit(main())

"""``litellm-failover db|events|status`` through the real entry point, on real databases."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from waiting import free_port

from litellm_failover.cli import main
from litellm_failover.durations import parse_since
from litellm_failover.events import FailoverEvent
from litellm_failover.records import DeploymentStateRow
from litellm_failover.settings import WriterSettings
from litellm_failover.store.writer import StoreWriter

pytest_plugins = ["services"]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps tables to the terminal; keep cells on one line so assertions can find them."""
    monkeypatch.setenv("COLUMNS", "250")


def seed(url: str) -> None:
    """Events at 2 h, 5 min, 1 min and 30 s ago (relative to now: the CLI's --since is too)."""
    now = datetime.now(UTC)
    events = [
        FailoverEvent(
            "failover",
            "chat",
            from_deployment="p1",
            to_deployment="s1",
            reason="old",
            created_at=now - timedelta(hours=2),
        ),
        FailoverEvent(
            "state_change",
            "chat",
            deployment_id="p1",
            reason="recent-state",
            created_at=now - timedelta(minutes=5),
        ),
        FailoverEvent(
            "failover",
            "chat",
            from_deployment="s1",
            to_deployment="p1",
            reason="recent-failover",
            request_id="req-42",
            details={"attempt": 2},
            created_at=now - timedelta(minutes=1),
        ),
        FailoverEvent(
            "failover",
            "embed",
            deployment_id="e1",
            reason="embed-failover",
            created_at=now - timedelta(seconds=30),
        ),
    ]
    states = [
        DeploymentStateRow(
            "p1",
            "chat",
            "ejected",
            "connection refused",
            "proxy-a",
            {
                "probe": {"ok": False, "severity": "fail", "reason": "refused"},
                "gpu": {"ok": True},
                "kv_cache": {"ok": False, "severity": "degrade", "reason": "kv 95%"},
            },
            3,
        ),
        DeploymentStateRow("s1", "chat", "healthy", "", "proxy-b", {"probe": {"ok": True}}, 0),
    ]

    async def write() -> None:
        async with StoreWriter(url, WriterSettings(flush_interval_s=0.01)) as writer:
            for item in events:
                writer.submit_event(item)
            for row in states:
                writer.submit_state(row)
            assert await writer.flush(timeout=5)

    asyncio.run(write())


@pytest.fixture
def seeded(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    seed(url)
    return url


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_db_upgrade_current_and_downgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/new/dir/store.db"
    assert main(["db", "upgrade", "--url", url]) == 0
    assert "at revision 0005_caller_sessions" in capsys.readouterr().out
    assert (tmp_path / "new" / "dir" / "store.db").is_file()
    assert main(["db", "current", "--url", url]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["db", "downgrade", "--url", url, "--revision", "base"]) == 0
    assert "at revision base" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:  # downgrading drops data: the target must be explicit
        main(["db", "downgrade", "--url", url])
    assert info.value.code == 2


def test_db_upgrade_reads_the_url_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LITELLM_FAILOVER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/env.db")
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "env.db").is_file()


def test_db_upgrade_sql_prints_ddl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--url", "sqlite:///unused.db", "--sql"]) == 0
    out = capsys.readouterr().out
    assert "CREATE TABLE failover_events" in out and "CREATE INDEX ix_failover_events_created_at" in out
    assert not Path("unused.db").exists()


def test_events_filters_and_json(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    def reasons(*extra: str) -> list[str]:
        assert main(["events", "--url", seeded, "--json", *extra]) == 0
        return [row["reason"] for row in json_lines(capsys.readouterr().out)]

    assert reasons() == ["old", "recent-state", "recent-failover", "embed-failover"]
    assert reasons("--since", "10m") == ["recent-state", "recent-failover", "embed-failover"]
    assert reasons("--since", "2m", "--type", "failover") == ["recent-failover", "embed-failover"]
    assert reasons("--since", "1d", "--group", "chat", "--type", "failover") == ["old", "recent-failover"]
    assert reasons("--limit", "2") == ["recent-failover", "embed-failover"]
    assert reasons("--since", (datetime.now(UTC) - timedelta(minutes=3)).isoformat()) == [
        "recent-failover",
        "embed-failover",
    ]
    assert reasons("--type", "panic_mode") == []

    assert main(["events", "--url", seeded, "--json", "--since", "2m", "--group", "chat"]) == 0
    (row,) = json_lines(capsys.readouterr().out)
    assert row["request_id"] == "req-42" and row["details"] == {"attempt": 2}
    age = datetime.now(UTC) - datetime.fromisoformat(row["created_at"])
    assert timedelta(minutes=1) <= age < timedelta(minutes=2)


def test_events_table(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "--url", seeded, "--since", "10m"]) == 0
    out = capsys.readouterr().out
    assert "failover events (3, newest last)" in out
    assert "s1 -> p1" in out and "recent-failover" in out and "req-42" in out
    assert out.index("recent-state") < out.index("embed-failover")


@pytest.mark.parametrize("value", ["yesterday", "10x", "2025-13-45"])
def test_bad_since_exits_2_naming_the_value(
    seeded: str, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert main(["events", "--url", seeded, "--since", value]) == 2
    err = capsys.readouterr().err
    assert repr(value) in err and len(err.strip().splitlines()) == 1


def test_parse_since() -> None:
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1d", now) == now - timedelta(days=1)
    assert parse_since("90s", now) == now - timedelta(seconds=90)
    assert parse_since("2025-05-31T08:00:00Z") == datetime(2025, 5, 31, 8, tzinfo=UTC)
    assert parse_since("2025-05-31 08:00") == datetime(2025, 5, 31, 8, tzinfo=UTC)  # naive means UTC
    assert parse_since("2025-05-31T10:00:00+02:00") == datetime(2025, 5, 31, 8, tzinfo=UTC)


def test_status_table_and_json(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--url", seeded, "--json"]) == 0
    rows = json_lines(capsys.readouterr().out)
    assert [(r["model_group"], r["deployment_id"], r["state"]) for r in rows] == [
        ("chat", "p1", "ejected"),
        ("chat", "s1", "healthy"),
    ]
    assert rows[0]["ejection_count"] == 3 and rows[0]["checks"]["probe"]["reason"] == "refused"
    datetime.fromisoformat(rows[0]["updated_at"])

    assert main(["status", "--url", seeded]) == 0
    out = capsys.readouterr().out
    assert "deployment states (2)" in out
    assert "ejected" in out and "connection refused" in out and "FAIL probe: refused" in out
    assert "DEGRADE kv_cache: kv 95%" in out
    assert "ok gpu" in out and "proxy-a" in out and "proxy-b" in out  # two replicas: instance shown


def test_status_of_an_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    assert main(["db", "upgrade", "--url", url]) == 0
    capsys.readouterr()
    assert main(["status", "--url", url]) == 0
    assert "no deployment state recorded" in capsys.readouterr().out
    assert main(["status", "--url", url, "--json"]) == 0
    assert capsys.readouterr().out == ""


def test_database_errors_exit_1_with_one_line_and_no_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "Hunter2-pw"
    closed = f"postgresql+asyncpg://postgres:{secret}@127.0.0.1:{free_port()}/test"
    for argv in (
        ["events", "--url", closed],
        ["status", "--url", closed],
        ["db", "upgrade", "--url", closed],
    ):
        assert main(argv) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert len(captured.err.strip().splitlines()) == 1
        assert secret not in captured.err and "litellm-failover:" in captured.err

    missing = f"sqlite+aiosqlite:///{tmp_path}/typo/store.db"
    assert main(["status", "--url", missing]) == 1
    assert "database file not found" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()  # reading never creates a database

    empty = tmp_path / "empty.db"
    empty.touch()
    assert main(["events", "--url", f"sqlite+aiosqlite:///{empty}"]) == 1
    assert "db upgrade" in capsys.readouterr().err

    assert main(["events", "--url", f"mysql://root:{secret}@h/db"]) == 2
    assert secret not in capsys.readouterr().err


@pytest.mark.postgres
def test_cli_on_postgres(postgres_schema_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = postgres_schema_url
    assert main(["db", "upgrade", "--url", url]) == 0
    seed(url)
    capsys.readouterr()
    assert main(["events", "--url", url, "--json", "--since", "10m", "--type", "failover"]) == 0
    assert [r["reason"] for r in json_lines(capsys.readouterr().out)] == ["recent-failover", "embed-failover"]
    assert main(["status", "--url", url, "--json"]) == 0
    assert [r["state"] for r in json_lines(capsys.readouterr().out)] == ["ejected", "healthy"]
    assert main(["db", "downgrade", "--url", url, "--revision", "base"]) == 0
    assert main(["status", "--url", url]) == 1
    assert "db upgrade" in capsys.readouterr().err


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`events --json | head -1`: the closed pipe ends the command quietly, exit 0."""
    import subprocess
    import sys

    url = f"sqlite+aiosqlite:///{tmp_path}/many.db"

    async def write() -> None:
        async with StoreWriter(url, WriterSettings(flush_interval_s=0.01)) as writer:
            for i in range(600):  # well past a pipe buffer of JSON lines
                writer.submit_event(FailoverEvent("failover", "chat", reason=f"event {i} " + "x" * 200))
            assert await writer.flush(timeout=10)

    asyncio.run(write())
    process = subprocess.Popen(
        [sys.executable, "-m", "litellm_failover.cli", "events", "--url", url, "--json", "--limit", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0
    assert json.loads(first)["event_type"] == "failover"
    assert "Traceback" not in stderr


def test_plain_status_shows_a_drained_healthy_deployment_as_drained(
    seeded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The state table holds health only; the switching events say drained, held or ramping."""
    now = datetime.now(UTC)
    events = [
        FailoverEvent("drain_started", "chat", deployment_id="s1", created_at=now - timedelta(seconds=50)),
        FailoverEvent("drain_completed", "chat", deployment_id="s1", created_at=now - timedelta(seconds=40)),
        FailoverEvent(
            "failback_pending", "chat", deployment_id="p1", details={"mode": "auto"},
            created_at=now - timedelta(seconds=30),
        ),
        FailoverEvent(
            "failback_step", "chat", details={"percent": 10.0, "deployments": ["p1"]},
            created_at=now - timedelta(seconds=20),
        ),
    ]  # fmt: skip

    async def write() -> None:
        async with StoreWriter(seeded, WriterSettings(flush_interval_s=0.01)) as writer:
            for item in events:
                writer.submit_event(item)
            assert await writer.flush(timeout=5)

    asyncio.run(write())
    assert main(["status", "--url", seeded, "--json"]) == 0
    rows = {r["deployment_id"]: r for r in json_lines(capsys.readouterr().out)}
    assert (rows["s1"]["state"], rows["s1"]["traffic"]) == ("healthy", "drained")
    assert rows["p1"]["traffic"] == "ramping 10%"
    datetime.fromisoformat(rows["s1"]["traffic_since"])
    assert main(["status", "--url", seeded]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if " s1 " in line)
    assert line.index("healthy") < line.index("drained")  # next to the health state
    events[:] = [FailoverEvent("undrained", "chat", deployment_id="s1", created_at=now)]
    asyncio.run(write())
    assert main(["status", "--url", seeded, "--json"]) == 0
    rows = {r["deployment_id"]: r for r in json_lines(capsys.readouterr().out)}
    assert rows["s1"]["traffic"] is None and rows["p1"]["traffic"] == "ramping 10%"

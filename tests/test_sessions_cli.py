"""``litellm-failover sessions list|show|delete`` through the real entry point, on real databases."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from factories import message, session
from waiting import free_port

from litellm_failover.cli import main
from litellm_failover.events import utcnow
from litellm_failover.records import SessionRow
from litellm_failover.settings import WriterSettings
from litellm_failover.store.writer import StoreWriter

pytest_plugins = ["services", "store_fixtures"]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps tables to the terminal; keep cells on one line so assertions can find them."""
    monkeypatch.setenv("COLUMNS", "250")


def seed(url: str) -> datetime:
    """chat-1: 4 messages (one hash only, one with rich markup in its text), active 1 min ago, in
    two groups; chat-2: active 2 h ago. Returns "now"."""
    now = utcnow()

    async def write() -> None:
        async with StoreWriter(url, WriterSettings(flush_interval_s=0.01)) as writer:
            writer.submit_message(message("chat-1", 0, content="hello [bold]there[/bold]"))
            writer.submit_message(message("chat-1", 1, content="general kenobi"))
            writer.submit_message(message("chat-1", 2, content=None, content_chars=50_000, truncated=True))
            writer.submit_message(message("chat-1", 3, content=None, content_chars=12))
            writer.submit_message(message("chat-2", 0))
            writer.submit_session(session("chat-1", pinned="vllm-a", turns=2, at=now - timedelta(minutes=1)))
            writer.submit_session(
                session("chat-1", group="embed", pinned=None, at=now - timedelta(minutes=3))
            )
            writer.submit_session(session("chat-2", pinned="vllm-b", at=now - timedelta(hours=2)))
            assert await writer.flush(timeout=5)

    asyncio.run(write())
    return now


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_list_table_json_and_filters(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(store_url)

    def listed(*extra: str) -> list[tuple[str, str]]:
        assert main(["sessions", "list", "--url", store_url, "--json", *extra]) == 0
        return [(row["session_id"], row["model_group"]) for row in json_lines(capsys.readouterr().out)]

    assert listed() == [("chat-1", "chat"), ("chat-1", "embed"), ("chat-2", "chat")]  # most recent first
    assert listed("--since", "10m") == [("chat-1", "chat"), ("chat-1", "embed")]
    assert listed("--group", "chat", "--limit", "1") == [("chat-1", "chat")]
    assert listed("--group", "nothing") == []

    assert main(["sessions", "list", "--url", store_url, "--json", "--group", "chat"]) == 0
    first, second = json_lines(capsys.readouterr().out)
    assert (first["pinned_deployment"], first["turn_count"], first["messages"]) == ("vllm-a", 2, 4)
    assert second["messages"] == 1
    assert timedelta(0) < utcnow() - datetime.fromisoformat(first["updated_at"]) < timedelta(minutes=2)

    assert main(["sessions", "list", "--url", store_url]) == 0
    out = capsys.readouterr().out
    assert "sessions (3, most recently active first)" in out
    assert "chat-1" in out and "vllm-a" in out and "vllm-b" in out
    assert out.index("vllm-a") < out.index("vllm-b")

    assert main(["sessions", "list", "--url", store_url, "--group", "nothing"]) == 0
    assert "no sessions match" in capsys.readouterr().out


def test_show_prints_messages_in_order_with_hash_only_ones_marked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/store.db"
    seed(url)
    assert main(["sessions", "show", "chat-1", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "session 'chat-1': 4 messages" in out
    assert "chat: vllm-a, 2 turns" in out and "embed: not pinned, 1 turns" in out
    assert "hello [bold]there[/bold]" in out  # shown as text, not taken for rich markup
    assert out.index("hello") < out.index("general kenobi") < out.index("<hash only>")
    assert "<hash only> (over the size cap; 50,000 chars" in out
    assert "<hash only> (content not stored; 12 chars" in out
    assert "11/5" in out  # tokens in/out of the assistant's answer

    assert main(["sessions", "show", "chat-1", "--url", url, "--json", "--up-to", "2"]) == 0
    (document,) = json_lines(capsys.readouterr().out)  # one document: the pins, then the messages
    assert document["session_id"] == "chat-1"
    pins = [(g["model_group"], g["pinned_deployment"], g["turn_count"]) for g in document["groups"]]
    assert pins == [("chat", "vllm-a", 2), ("embed", None, 1)]
    rows = document["messages"]
    assert [(r["seq"], r["role"], r["content"]) for r in rows] == [
        (0, "user", "hello [bold]there[/bold]"),
        (1, "assistant", "general kenobi"),
        (2, "user", None),
    ]
    assert rows[2]["truncated"] is True and len(rows[2]["content_hash"]) == 64
    datetime.fromisoformat(rows[0]["created_at"])


def test_delete_and_missing_sessions(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(store_url)
    assert main(["sessions", "delete", "chat-1", "--url", store_url]) == 0
    assert "deleted session 'chat-1': 2 session rows, 4 messages" in capsys.readouterr().out
    seed(store_url)
    assert main(["sessions", "delete", "chat-1", "--url", store_url, "--json"]) == 0
    assert json_lines(capsys.readouterr().out) == [{"session_id": "chat-1", "session_rows": 2, "messages": 4}]
    for argv in (["sessions", "show", "chat-1"], ["sessions", "delete", "chat-1"]):
        assert main([*argv, "--url", store_url]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and "session 'chat-1' not found in" in captured.err
        assert len(captured.err.strip().splitlines()) == 1
    assert main(["sessions", "list", "--url", store_url, "--json"]) == 0
    assert [row["session_id"] for row in json_lines(capsys.readouterr().out)] == ["chat-2"]


def test_bad_urls_and_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "Hunter2-sessions"
    closed = f"postgresql+asyncpg://postgres:{secret}@127.0.0.1:{free_port()}/test"
    for argv in (["sessions", "list"], ["sessions", "show", "x"], ["sessions", "delete", "x"]):
        assert main([*argv, "--url", closed]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
        assert secret not in captured.err and captured.err.startswith(
            f"litellm-failover: {argv[0]} {argv[1]}"
        )

    missing = f"sqlite+aiosqlite:///{tmp_path}/typo/store.db"
    assert main(["sessions", "delete", "x", "--url", missing]) == 1
    assert "database file not found" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()  # reading or deleting never creates a database

    empty = tmp_path / "empty.db"
    empty.touch()
    assert main(["sessions", "list", "--url", f"sqlite+aiosqlite:///{empty}"]) == 1
    assert "db upgrade" in capsys.readouterr().err

    assert main(["sessions", "list", "--url", f"mysql://root:{secret}@h/db"]) == 2
    assert secret not in capsys.readouterr().err
    for bad in (
        ["sessions", "list", "--since", "soon"],
        ["sessions", "show", "x", "--up-to", "-1"],
        ["sessions", "list", "--limit", "0"],
    ):
        with pytest.raises(SystemExit) as info:
            main(bad)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert bad[-2] in err and bad[-1] in err  # names the option and the value
    with pytest.raises(SystemExit) as info:
        main(["sessions"])  # an action is required
    assert info.value.code == 2


def test_show_and_delete_pick_a_caller(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """One session id under two callers (issue 11 §4): listed apart, shown and deleted by caller."""

    async def write() -> None:
        async with StoreWriter(store_url, WriterSettings(flush_interval_s=0.01)) as writer:
            for caller in ("key-aaa", "key-bbb"):
                writer.submit_message(message("same", 0, content=f"{caller} asks", caller=caller))
                writer.submit_session(SessionRow("same", "chat", "p1", 1, utcnow(), caller))
            writer.submit_message(message("same", 0, content="an edited first turn", caller="key-aaa"))
            assert await writer.flush(timeout=5)

    asyncio.run(write())
    assert main(["sessions", "list", "--url", store_url, "--json"]) == 0
    assert sorted(row["caller"] for row in json_lines(capsys.readouterr().out)) == ["key-aaa", "key-bbb"]
    assert main(["sessions", "show", "same", "--url", store_url, "--caller", "key-aaa", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sorted(m["content"] for m in shown["messages"]) == ["an edited first turn", "key-aaa asks"]
    assert [g["caller"] for g in shown["groups"]] == ["key-aaa"]
    assert main(["sessions", "show", "same", "--url", store_url]) == 0
    out = capsys.readouterr().out
    assert "key-bbb asks" in out and "an edited first turn" in out and "root" in out  # both branches
    assert main(["sessions", "delete", "same", "--url", store_url, "--caller", "key-bbb", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["messages"] == 1
    assert main(["sessions", "show", "same", "--url", store_url, "--caller", "key-bbb"]) == 1
    assert main(["sessions", "show", "same", "--url", store_url, "--caller", "key-aaa"]) == 0

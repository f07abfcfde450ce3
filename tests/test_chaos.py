"""Fault injection (``chaos inject`` / ``chaos clear``) through the real ``litellm.Router`` after
``attach()``, against fake vLLM servers, and its operator commands end to end through the
database and Redis with the real CLI entry point.

Two tiers, one node each: p1 serves while it can, p2 is the standby. Outlier ejection is set out
of reach unless a test is about it, so where a request goes says what the fault did, not what
the health machine decided. Every injected error must be invisible to the client (LiteLLM
retries, the plugin keeps the retry off p1) and no injected request may reach p1's server.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import litellm
import pytest
from control_support import run_cli, wide_terminal  # noqa: F401 (wide_terminal: autouse)
from fake_nodes import serving, tiered_model_list
from streams_support import QUESTION, read_stream
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.chaos import parse_fault_args
from litellm_failover.chaos.faults import FaultInputError
from litellm_failover.control import CommandError, build_command
from litellm_failover.control.db_channel import fetch_commands
from litellm_failover.drill.loadgen import RequestResult, router_sender
from litellm_failover.plugin import FailoverPlugin
from litellm_failover.providers.fake.text import DEFAULT_WORDS, expected_answer
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.store.queries import list_events
from litellm_failover.switching import OperatorError

pytest_plugins = ["services"]

TIERS = {"p1": 1, "p2": 2}
FAST_CONTROL = {"poll_interval_s": 0.05, "heartbeat_interval_s": 0.5}
NO_EJECTION = {"consecutive_errors": 1000, "eject_on_connect_error": False}


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, FakeVLLM]]:
    async with serving({name: FakeVLLM(name, tokens_per_s=0) for name in TIERS}) as started:
        yield started


def model_list(servers: dict[str, FakeVLLM]) -> list[dict[str, Any]]:
    return tiered_model_list(servers, TIERS, api_key="fake", probe=False)


@pytest.fixture
async def replicas(tmp_path: Any) -> AsyncIterator[Any]:
    """``await replica(servers, **settings)``: a Router with its started plugin (chaos enabled,
    ejection out of reach, fast control polls), stopped and detached after the test."""
    started: list[FailoverPlugin] = []

    async def start(servers: dict[str, FakeVLLM], **settings: Any) -> tuple[Any, FailoverPlugin]:
        router = litellm.Router(model_list=model_list(servers), num_retries=2, retry_after=0)
        merged: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db",
            "chaos": {"enabled": True},
            "outlier": NO_EJECTION,
            "control": FAST_CONTROL,
        }
        merged.update(settings)
        plugin = attach(router, merged)
        started.append(plugin)
        await plugin.start()
        return router, plugin

    yield start
    for plugin in started:
        await plugin.stop()
        plugin.detach()


async def send_all(router: Any, count: int, *, stream: bool = False) -> list[RequestResult]:
    send = router_sender(router, "chat")
    return [await send(index, stream) for index in range(count)]


def events(plugin: FailoverPlugin, event_type: str) -> list[Any]:
    return [e for e in plugin.core.recent_events if e.event_type == event_type]


def active(plugin: FailoverPlugin) -> list[dict[str, Any]]:
    return plugin.status()["chaos"]["active"]


# -- the three kinds of fault through the Router -----------------------------------------------


async def test_an_injected_error_is_retried_elsewhere_and_counted(servers, replicas):
    router, plugin = await replicas(servers, outlier={"consecutive_errors": 3})
    result = plugin.chaos_inject("p1", "error", 1.0, duration_s=60, issued_by="alice@ops")
    assert result["fault"]["status"] == 503 and result["group"] == "chat"

    answers = await send_all(router, 8)
    assert [r.error for r in answers if not r.ok] == []  # the client never saw the fault
    assert Counter(r.served_by for r in answers) == {"p2": 8}
    assert list(servers["p1"].received) == []  # injected in front of p1: nothing reached it
    # Each injection was an ordinary failed attempt for the plugin: three in a row ejected p1.
    [fault] = active(plugin)
    assert fault["injected"] == 3 and fault["kind"] == "error" and fault["issued_by"] == "alice@ops"
    assert plugin.core.health["p1"].state.value == "unhealthy"

    [started] = events(plugin, "chaos_injected")
    assert started.deployment_id == "p1" and started.model_group == "chat"
    assert "by alice@ops" in started.reason and started.details["probability"] == 1.0
    assert await plugin.writer.flush(5)
    stored = await list_events(plugin.settings.database_url, event_type="chaos_injected")
    assert [e["deployment_id"] for e in stored] == ["p1"]
    # No event per injected request: the count lives in status and in the end event.
    assert len(await list_events(plugin.settings.database_url, event_type="chaos_cleared")) == 0


async def test_other_statuses_fail_the_attempt_the_way_that_status_would(servers, replicas):
    router, plugin = await replicas(servers)
    plugin.chaos_inject("p1", "error", 1.0, duration_s=60, status=429)
    answers = await send_all(router, 3)
    assert Counter(r.served_by for r in answers) == {"p2": 3}
    assert plugin.core.health["p1"].outlier.consecutive_errors == 0  # 429 is overload, not a 5xx
    # A 400 is the client's fault to the plugin: LiteLLM's retry goes on, p1 is not blamed.
    plugin.chaos_inject("p1", "error", 1.0, duration_s=60, status=400)
    [answer] = await send_all(router, 1)
    assert answer.served_by == "p2" and plugin.core.health["p1"].outlier.consecutive_errors == 0
    assert [e.details.get("status") for e in events(plugin, "chaos_cleared")] == [429]  # replaced


async def test_injected_latency_delays_the_attempt(servers, replicas):
    router, plugin = await replicas(servers)
    [plain] = await send_all(router, 1)
    plugin.chaos_inject("p1", "latency", 1.0, duration_s=60, delay_s="400ms")
    slow = await send_all(router, 2)
    assert [r.served_by for r in slow] == ["p1", "p1"]
    for answer in slow:
        assert answer.ended_at - answer.started_at >= 0.4
    assert plain.ok and active(plugin)[0]["injected"] == 2


async def test_a_cut_stream_reaches_the_client_whole(servers, replicas):
    router, plugin = await replicas(servers)
    plugin.chaos_inject("p1", "stream_cut", 1.0, duration_s=60, after_chunks=5)
    for _ in range(2):
        stream = await router.acompletion(
            model="chat", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
        seen = await read_stream(stream)
        seen.assert_one_unbroken_answer(expected_answer(QUESTION), words=DEFAULT_WORDS)
        assert seen.served_by == ["p1", "p2"]
    resumed = events(plugin, "stream_resumed")
    assert [(e.from_deployment, e.to_deployment) for e in resumed] == [("p1", "p2")] * 2
    assert "chaos" in resumed[0].details["cause"]
    assert active(plugin)[0]["injected"] == 2
    # A request that does not stream is not touched by a stream cut.
    assert Counter(r.served_by for r in await send_all(router, 2)) == {"p1": 2}


async def test_a_probability_hits_some_attempts_and_not_all(servers, replicas):
    router, plugin = await replicas(servers)
    plugin.chaos_inject("p1", "error", 0.5, duration_s=60)
    answers = await send_all(router, 60)
    assert all(r.ok for r in answers)
    served = Counter(r.served_by for r in answers)
    injected = active(plugin)[0]["injected"]
    # Each request is one draw on p1: a hit goes to p2. 60 draws at 0.5 land in 12..48 with a
    # probability of 1 - 2e-6.
    assert 12 <= injected <= 48
    assert served == {"p1": 60 - injected, "p2": injected}


async def test_a_fault_ends_by_itself(servers, replicas):
    router, plugin = await replicas(servers)
    plugin.chaos_inject("p1", "error", 1.0, duration_s=0.6, issued_by="bob@ops")
    assert Counter(r.served_by for r in await send_all(router, 2)) == {"p2": 2}
    await wait_until(lambda: events(plugin, "chaos_expired"), 5, "the fault to expire")
    [ended] = events(plugin, "chaos_expired")
    assert ended.deployment_id == "p1" and ended.details["injected"] == 2
    assert active(plugin) == [] and not plugin.chaos.armed
    assert Counter(r.served_by for r in await send_all(router, 3)) == {"p1": 3}
    assert await plugin.writer.flush(5)
    [stored] = await list_events(plugin.settings.database_url, event_type="chaos_expired")
    assert stored["details"]["injected"] == 2 and stored["details"]["issued_by"] == "bob@ops"


async def test_clear_ends_faults_on_one_deployment_or_all(servers, replicas):
    router, plugin = await replicas(servers)
    plugin.chaos_inject("p1", "error", 1.0, duration_s=60)
    plugin.chaos_inject("p1", "latency", 1.0, duration_s=60, delay_s=0.01)
    plugin.chaos_inject("p2", "stream_cut", 1.0, duration_s=60)
    await send_all(router, 1)
    cleared = plugin.chaos_clear("p1", issued_by="carol@ops")
    assert sorted(f["kind"] for f in cleared["cleared"]) == ["error", "latency"]
    assert [f["deployment_id"] for f in active(plugin)] == ["p2"]
    assert Counter(r.served_by for r in await send_all(router, 2)) == {"p1": 2}
    assert len(plugin.chaos_clear()["cleared"]) == 1 and active(plugin) == []
    assert plugin.chaos_clear()["cleared"] == []  # nothing left: not an error
    ends = events(plugin, "chaos_cleared")
    assert len(ends) == 3 and ends[0].details["ended_by"] == "carol@ops"
    assert {e.details["kind"]: e.details["injected"] for e in ends[:2]} == {"error": 1, "latency": 1}


async def test_an_error_on_a_call_without_mock_support_fails_the_attempt(servers, tmp_path):
    # Embeddings take no ``mock_response``: the error is raised by the hook, reported first.
    embed = {
        "model_name": "embed",
        "litellm_params": {"model": "openai/fake-embed", "api_base": servers["p1"].api_base, "api_key": "x"},
        "model_info": {"id": "e1", "failover": {"probe": False}},
    }
    router = litellm.Router(model_list=[embed], num_retries=0)
    plugin = attach(
        router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/e.db", "chaos": {"enabled": True}}
    )
    try:
        async with plugin:
            plugin.chaos_inject("e1", "error", 1.0, duration_s=60, status=500)
            with pytest.raises(litellm.InternalServerError, match="chaos: injected error 500 on e1"):
                await router.aembedding(model="embed", input=["hello"])
            assert plugin.core.health["e1"].outlier.consecutive_errors == 1
            assert active(plugin)[0]["injected"] == 1
    finally:
        plugin.detach()


# -- bad input: a clear error and nothing injected ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "options", "words"),
    [
        (("p1", "explode", 1.0), {"duration_s": 60}, "--kind: unknown fault kind 'explode'"),
        (
            ("p1", "error", -0.1),
            {"duration_s": 60},
            "--probability: must be above 0 and at most 1 (got -0.1)",
        ),
        (("p1", "error", 1.5), {"duration_s": 60}, "--probability: must be above 0 and at most 1 (got 1.5)"),
        (("p1", "error", math.nan), {"duration_s": 60}, "--probability"),
        (("p1", "error", 0), {"duration_s": 60}, "--probability"),
        (("p1", "error", 1.0), {}, "a fault needs an end"),
        (
            ("p1", "error", 1.0),
            {"until": "2020-01-01T00:00:00Z"},
            "--until: '2020-01-01T00:00:00Z' is in the past",
        ),
        (("p1", "error", 1.0), {"duration_s": 7200}, "over chaos.max_duration_s=3600"),
        (("p1", "error", 1.0), {"duration_s": 60, "status": 302}, "--status: must be from 400 to 599"),
        (("p1", "latency", 1.0), {"duration_s": 60}, "--delay: required for --kind latency"),
        (("p1", "error", 1.0), {"duration_s": 60, "delay_s": 1}, "--delay: only for --kind latency"),
        (("nope", "error", 1.0), {"duration_s": 60}, "unknown deployment 'nope' (known: p1, p2)"),
    ],
)
async def test_bad_input_is_refused_and_nothing_injected(servers, replicas, args, options, words):
    _, plugin = await replicas(servers)
    with pytest.raises(OperatorError) as refused:
        plugin.chaos_inject(*args, **options)
    assert words in str(refused.value)
    assert active(plugin) == [] and events(plugin, "chaos_injected") == []


async def test_chaos_is_refused_unless_enabled(servers, replicas):
    router, plugin = await replicas(servers, chaos={})  # the default: off
    for call in (lambda: plugin.chaos_inject("p1", "error", 1.0, duration_s=60), plugin.chaos_clear):
        with pytest.raises(
            OperatorError, match=re.escape("chaos is disabled: set failover_settings.chaos.enabled: true")
        ):
            call()
    assert plugin.status()["chaos"] == {"enabled": False, "max_duration_s": 3600.0, "active": []}
    assert Counter(r.served_by for r in await send_all(router, 2)) == {"p1": 2}


def test_the_command_rules_name_the_cli_options():
    now = datetime.now(UTC)
    later = (now + timedelta(minutes=5)).isoformat()
    clean = parse_fault_args({"kind": "stream_cut", "probability": "0.25", "until": later}, now)
    assert clean == {
        "kind": "stream_cut",
        "probability": 0.25,
        "until": pytest.approx((now + timedelta(minutes=5)).timestamp()),
        "after_chunks": 3,
    }
    assert parse_fault_args(
        {"kind": "latency", "probability": 1, "duration_s": "2m", "delay_s": "250ms"}, now
    )["delay_s"] == pytest.approx(0.25)
    for raw, words in [
        ({"kind": "error", "probability": "nan", "duration_s": 1}, "--probability"),
        ({"kind": "error", "probability": 1, "duration_s": "soon"}, "--for: not a duration"),
        ({"kind": "error", "probability": 1, "duration_s": 1, "until": later}, "give one of them"),
        ({"kind": "error", "probability": 1, "until": "tomorrow"}, "--until: not an ISO time"),
        ({"kind": "stream_cut", "probability": 1, "duration_s": 1, "after_chunks": "2.5"}, "--after-chunks"),
        ({"kind": "stream_cut", "probability": 1, "duration_s": 1, "status": 500}, "--status: only for"),
    ]:
        with pytest.raises(FaultInputError, match=words.replace("(", r"\(")):
            parse_fault_args(raw, now)
    command = build_command("chaos_inject", "p1", {"kind": "error", "probability": 1, "duration_s": 60})
    assert command.describe().startswith("chaos inject p1 --kind error --probability 1 --until ")
    assert build_command("chaos_clear", "").describe() == "chaos clear"
    with pytest.raises(CommandError, match="--kind: unknown fault kind None"):
        build_command("chaos_inject", "p1", {"probability": 1, "duration_s": 60})


# -- the operator commands, end to end -------------------------------------------------------


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """SQLite, or a PostgreSQL schema of the test's own (skipped without PostgreSQL, failed under
    CI=true)."""
    if getattr(request, "param", "sqlite") == "postgres":
        return request.getfixturevalue("postgres_schema_url")
    return f"sqlite+aiosqlite:///{tmp_path}/store.db"


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_chaos_commands_through_the_database(servers, database_url, replicas, capsys):
    # database_url first: its schema (PostgreSQL) is dropped after the replicas have stopped.
    url = database_url
    router, plugin = await replicas(servers, database_url=url)
    replica = plugin.instance_id

    # Bad input: exit 2, and nothing reaches the command table.
    for bad in (
        ("--kind", "explode", "--probability", "1", "--for", "1m"),
        ("--kind", "error", "--probability", "1.5", "--for", "1m"),
        ("--kind", "error", "--probability", "-0.1", "--for", "1m"),
        ("--kind", "error", "--probability", "nan", "--for", "1m"),
        ("--kind", "error", "--probability", "1"),
        ("--kind", "error", "--probability", "1", "--until", "2020-01-01T00:00:00Z"),
    ):
        assert await run_cli("chaos", "inject", "p1", *bad, "--url", url) == 2
        assert "(nothing sent)" in capsys.readouterr().err
    assert await fetch_commands(url, 0) == []

    inject = ("chaos", "inject", "p1", "--kind", "error", "--probability", "1", "--for", "1m", "--url", url)
    assert await run_cli(*inject) == 0
    out = capsys.readouterr().out
    assert f"{replica}  applied  injecting error 503 at p=1 on p1 until" in out
    assert Counter(r.served_by for r in await send_all(router, 4)) == {"p2": 4}

    # status --live shows the fault and its count.
    assert await run_cli("status", "--live", "--url", url, "--json") == 0
    [live] = json.loads(capsys.readouterr().out)["results"]
    [fault] = live["details"]["chaos"]["active"]
    assert (fault["deployment_id"], fault["kind"], fault["injected"]) == ("p1", "error", 4)
    assert await run_cli("status", "--live", "--url", url) == 0
    table = capsys.readouterr().out
    assert "chaos" in table and "error 503" in table and "p=1" in table

    # The replica refuses what only it can know: an unknown deployment.
    assert await run_cli("chaos", "inject", "nope", *inject[3:]) == 1
    out = capsys.readouterr()
    assert f"{replica}  refused  unknown deployment 'nope' (known: p1, p2)" in out.out
    assert len(active(plugin)) == 1

    assert await run_cli("chaos", "clear", "--url", url) == 0
    assert "cleared 1 fault(s) on all deployments" in capsys.readouterr().out
    assert active(plugin) == []
    assert Counter(r.served_by for r in await send_all(router, 2)) == {"p1": 2}

    assert await plugin.writer.flush(5)
    [started] = await list_events(url, event_type="chaos_injected")
    [ended] = await list_events(url, event_type="chaos_cleared")
    assert started["details"]["issued_by"] and started["details"]["source"] == "control"
    assert (
        ended["details"]["injected"] == 4 and ended["details"]["ended_by"] == started["details"]["issued_by"]
    )
    kinds = [e["details"]["kind"] for e in await list_events(url, event_type="operator_command")]
    assert kinds.count("chaos_inject") == 2 and kinds.count("chaos_clear") == 1


async def test_chaos_commands_are_refused_by_a_replica_that_has_chaos_off(
    servers, replicas, tmp_path, capsys
):
    url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    _, plugin = await replicas(servers, database_url=url, chaos={"enabled": False})
    code = await run_cli(
        "chaos", "inject", "p1", "--kind", "latency", "--probability", "1", "--for", "1m", "--delay", "1s",
        "--url", url,
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 1
    assert "refused  chaos is disabled: set failover_settings.chaos.enabled: true" in out.out
    assert await run_cli("chaos", "clear", "p1", "--url", url) == 1
    assert active(plugin) == [] and events(plugin, "chaos_injected") == []


@pytest.mark.redis
async def test_chaos_commands_reach_two_replicas_through_redis(
    servers, replicas, tmp_path, redis_base_url, channel, capsys
):
    plugins = []
    for name in ("proxy-a", "proxy-b"):
        router, plugin = await replicas(
            servers,
            instance_id=name,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/{name}.db",
            redis_url=redis_base_url,
            fleet={"channel": channel, "operation_timeout_s": 0.5, "reconnect_max_s": 0.5},
        )
        plugins.append((router, plugin))
    where = ("--redis-url", redis_base_url, "--channel", channel)
    until = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    code = await run_cli(
        "chaos", "inject", "p1", "--kind", "stream_cut", "--probability", "1", "--until", until,
        "--after-chunks", "4", *where,
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "proxy-a  applied" in out.out and "proxy-b  applied" in out.out
    for router, plugin in plugins:
        [fault] = active(plugin)
        assert fault["after_chunks"] == 4 and fault["source"] == "control"
        stream = await router.acompletion(model="chat", messages=QUESTION, stream=True)
        seen = await read_stream(stream)
        assert seen.error is None and seen.text == expected_answer(QUESTION)
        assert seen.served_by == ["p1", "p2"]

    assert await run_cli("chaos", "clear", "p1", *where) == 0
    assert "cleared 1 fault(s) on p1" in capsys.readouterr().out
    assert all(active(plugin) == [] for _, plugin in plugins)
    started = time.monotonic()
    assert (
        await run_cli("chaos", "inject", "p9", "--kind", "error", "--probability", "1", "--for", "1m", *where)
        == 1
    )
    assert capsys.readouterr().out.count("unknown deployment 'p9'") == 2
    assert time.monotonic() - started < 10

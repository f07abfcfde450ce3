"""No secret reaches a log line, an event, a metric or the CLI, even on the error paths.

One unique canary string is the deployments' ``api_key``, the Redis password, the database
password, the alert destinations' token and the signing key's secret. A Router with the plugin
runs at DEBUG through a failover (one backend echoes the key in its error, as OpenAI's
"Incorrect API key provided" does), a broken stream, a forged command, alerts that fail to send,
a config error and ``litellm-failover status/events --json``; then everything the run produced
is searched for the canary.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import replace
from pathlib import Path

import litellm
import pytest
import yaml
from aiohttp import web
from alert_receiver import AlertReceiver
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy.engine import make_url
from streams_support import QUESTION, ClosingVLLM, read_stream
from test_router_failover import FAST_HEALTH
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.alerts import Alerter
from litellm_failover.cli import main
from litellm_failover.config_file import load_proxy_config
from litellm_failover.control import build_command, db_channel
from litellm_failover.control.client import signed
from litellm_failover.control.signing import keys_from_env
from litellm_failover.outlier import Outcome
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.settings import FailoverConfigError, parse_settings
from litellm_failover.streams.resume import Part, StreamBreak

pytest_plugins = ["services"]

CANARY = f"canary{uuid.uuid4().hex}"


class EchoingBackend:
    """An OpenAI-compatible backend that refuses every request with a 500 whose message quotes
    the API key it was sent, as some providers' error texts do."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _refuse(self, request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        message = f"Internal error for key {key} at redis://:{key}@cache:6379"
        return web.json_response({"error": {"message": message, "type": "server_error"}}, status=500)

    async def __aenter__(self) -> EchoingBackend:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._refuse)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def model_list(echo: EchoingBackend, nodes: dict[str, FakeVLLM]) -> list[dict]:
    entries = [
        ("e1", echo.api_base, None, 1),
        *[(n, s.api_base, s.url, 1 if n == "p1" else 2) for n, s in nodes.items()],
    ]
    return [
        {
            "model_name": "chat",
            "litellm_params": {
                "model": "hosted_vllm/fake-model" if gpu_url else "openai/fake-model",
                "api_base": api_base,
                "api_key": CANARY,
                "order": order,
                "timeout": 5,
                "stream_timeout": 5,
            },
            "model_info": {"id": name, "failover": {"gpu_url": gpu_url} if gpu_url else {"probe": False}},
        }
        for name, api_base, gpu_url, order in entries
    ]


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


def with_password(url: str) -> str:
    return make_url(url).set(password=CANARY).render_as_string(hide_password=False)


def config_errors(tmp_path: Path) -> list[str]:
    """What a config typo and a wrong type print: the exceptions' text and ``config check``'s."""
    bad = {
        "redis_ur": f"redis://:{CANARY}@cache:6379",
        "database_url": 5,
        "alerts": {
            "timeout_s": CANARY,
            "webhook_urls": f"https://hooks.invalid/{CANARY}",
            "apprise_url": [CANARY],
        },
        "streams": {"max_resumes": f"sk-{CANARY}"},
        "strategy": f"https://{CANARY}@x",
    }
    texts = []
    with pytest.raises(FailoverConfigError) as info:
        parse_settings(bad)
    texts.append(str(info.value))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model_list": [], "failover_settings": bad}))
    with pytest.raises(FailoverConfigError) as info:
        load_proxy_config(str(path))
    texts.append(str(info.value))
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"failover_settings:\n  redis_url: redis://:{CANARY}@h: x\n")
    with pytest.raises(FailoverConfigError) as info:
        load_proxy_config(str(broken))
    texts.append(str(info.value))
    return texts


@pytest.mark.postgres
async def test_a_canary_secret_appears_nowhere(
    tmp_path, caplog, capsys, monkeypatch, postgres_schema_url, redis_base_url
):
    monkeypatch.setenv("LITELLM_FAILOVER_SIGNING_KEYS", f"canary-key:{CANARY}")  # signs, never shown
    database_url = with_password(postgres_schema_url)
    redis_url = with_password(redis_base_url)  # the test Redis has no password: AUTH fails, and says so
    caplog.set_level(logging.DEBUG)
    litellm.set_verbose = False  # LiteLLM's own debug print of the raw request is not the plugin's
    nodes = {"p1": ClosingVLLM("p1", tokens_per_s=0), "s1": FakeVLLM("s1", tokens_per_s=0)}
    for node in nodes.values():
        await node.start()
    async with AlertReceiver() as receiver, EchoingBackend() as echo:
        receiver.fail_next(1000)
        settings = {
            "database_url": database_url,
            "redis_url": redis_url,
            "health": FAST_HEALTH,
            "alerts": {
                "webhook_urls": [receiver.url(f"/hook/{CANARY}")],
                "webhook_headers": {"Authorization": f"Bearer {CANARY}"},
                "apprise_urls": [f"json://127.0.0.1:{receiver.port}/apprise/{CANARY}"],
                "max_attempts": 2,
                "retry_backoff_s": 0.05,
                "dedup_window_s": 0,
            },
        }
        settings_repr = repr(parse_settings(settings))
        router = litellm.Router(model_list=model_list(echo, nodes), num_retries=3, retry_after=0)
        plugin = attach(router, settings)
        alerter = Alerter(plugin.settings.alerts, instance_id=plugin.instance_id, emit=plugin.core.emit)
        plugin.core.listeners.append(alerter.on_event)
        try:
            async with plugin:
                await alerter.start()
                for _ in range(4):  # e1 answers with the key in its error: failed over to p1 or s1
                    await router.acompletion(model="chat", messages=QUESTION)
                assert logged(caplog, "e1")  # e1 was tried and failed
                nodes["p1"].set_fault("drop_midstream", after_chunks=3)
                for _ in range(10):  # until one of them was sent to p1 (the plugin may pick e1)
                    await read_stream(await router.acompletion(model="chat", messages=QUESTION, stream=True))
                    if logged(caplog, "stream broke on p1"):
                        break
                await nodes["p1"].stop()  # the primary dies: probes fail, a failover to s1, its alert
                # the ejection's alert is sent, refused by the receiver and given up: alert_failed
                await wait_until(
                    lambda: alerter.stats()["failed"] >= 1,
                    timeout=20,
                    what=f"a failed alert {alerter.stats()}",
                )
                await alerter.stop()
                # A command signed with the key, then changed: rejected, logged, recorded, counted.
                forged = replace(signed(build_command("drain", "s1"), keys_from_env()), target="p1")
                await db_channel.insert_command(database_url, forged)
                await wait_until(lambda: plugin.control.gate.rejected, 10, "the forged command rejected")
                metrics = generate_latest(REGISTRY).decode()
                status = plugin.status()
        finally:
            await alerter.stop()
            plugin.detach()
            for node in nodes.values():
                await node.stop()
    capsys.readouterr()
    good = tmp_path / "good.yaml"
    good.write_text(
        yaml.safe_dump({"model_list": model_list(echo, {}), "failover_settings": {**settings, "health": {}}})
    )
    config_errors(tmp_path)  # writes config.yaml and broken.yaml
    for argv in (
        ["status", "--url", database_url, "--json"],
        ["events", "--url", database_url, "--json"],
        ["config", "check", str(good)],
        ["config", "check", str(good), "--json"],
        ["config", "check", str(tmp_path / "config.yaml")],
        ["config", "check", str(tmp_path / "broken.yaml"), "--json"],
    ):
        await asyncio.to_thread(main, argv)
    cli = capsys.readouterr()
    assert '"event_type"' in cli.out  # the events were written (to PostgreSQL, with the password)

    produced = {
        "log records": "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records),
        "formatted log": caplog.text,
        "settings repr": settings_repr,
        "metrics page": metrics,
        "status()": json.dumps(status, default=str),
        "CLI stdout": cli.out,
        "CLI stderr": cli.err,
        "config errors": "\n".join(config_errors(tmp_path)),
        "alert bodies": json.dumps([r.body for r in receiver.received], default=str),
    }
    assert logged(caplog, "stream broke on p1")
    leaks = {where: text.count(CANARY) for where, text in produced.items() if CANARY in text}
    leaking_loggers = sorted({r.name for r in caplog.records if CANARY in f"{r.getMessage()} {r.exc_text}"})
    assert not leaks, f"the canary secret leaked into {leaks} (loggers: {leaking_loggers})"


def test_a_stream_breaks_cause_is_logged_through_the_redactor(tmp_path, caplog):
    # The cause of a break is the upstream's error text, which may quote the key (as e1's does).
    deployment = {
        "model_name": "chat",
        "litellm_params": {
            "model": "openai/fake-model",
            "api_base": "http://127.0.0.1:1/v1",
            "api_key": CANARY,
        },
        "model_info": {"id": "p1", "failover": {"probe": False}},
    }
    router = litellm.Router(model_list=[deployment])
    plugin = attach(router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db"})
    caplog.set_level(logging.DEBUG, logger="litellm_failover")
    try:
        cause = f"OpenAIException - Internal error for key {CANARY}"
        plugin.streams.report_break(Part("p1", ("k1",), []), StreamBreak(cause, Outcome.SERVER_ERROR))
    finally:
        plugin.detach()
    [line] = [r.getMessage() for r in caplog.records if "stream broke on p1" in r.getMessage()]
    assert CANARY not in line and "Internal error for key ***" in line


def test_litellms_log_records_are_masked_never_cut(caplog):
    from litellm_failover.redact import LITELLM_LOGGERS, guard_loggers

    guard_loggers(LITELLM_LOGGERS, [CANARY])
    caplog.set_level(logging.DEBUG, logger="LiteLLM Router")
    long_tail = "x" * 3000  # longer than an event reason, shorter than LiteLLM cuts its own
    logging.getLogger("LiteLLM Router").debug("failed: key %s %s", CANARY, long_tail)
    logging.getLogger("LiteLLM Router").debug("a bad record %s %s", "only one argument")
    [masked, malformed] = caplog.records
    assert masked.getMessage() == f"failed: key *** {long_tail}"
    assert malformed.msg == "a bad record %s %s"  # left as it was, for the handler to report

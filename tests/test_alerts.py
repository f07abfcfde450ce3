"""Alerting against a real local HTTP receiver: webhooks and apprise, dedup and rate limits under
flapping, retries, give-ups recorded as events, a hot path that never waits, shutdown flushes,
and destinations that are refused at start-up without showing their secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import asdict

import litellm
import pytest
import yaml
from alert_receiver import AlertReceiver
from factories import Clock, bad_report, good_report, model_list, specs_for
from waiting import free_port, wait_until

from litellm_failover import attach
from litellm_failover.alerts import ALERT_FAILED, Admission, Alerter, AlertPolicy, build_message
from litellm_failover.alerts.message import severity_of
from litellm_failover.config_file import load_proxy_config
from litellm_failover.core import FailoverCore
from litellm_failover.events import FailoverEvent
from litellm_failover.settings import AlertSettings, FailoverConfigError, parse_settings

FAST = {"retry_backoff_s": 0.02, "retry_backoff_max_s": 0.1, "timeout_s": 2.0}


def failover(reason: str = "1 failed probe rounds: http_health: HTTP 500", **fields) -> FailoverEvent:
    values = {
        "event_type": "failover",
        "model_group": "chat",
        "deployment_id": "p1",
        "from_deployment": "p1,p2",
        "to_deployment": "p2",
        "reason": reason,
        "details": {"from": ["p1", "p2"], "to": ["p2"], "from_tier": 1, "to_tier": 1, "panic": False},
    }
    values.update(fields)
    return FailoverEvent(**values)


@pytest.fixture
async def receiver():
    async with AlertReceiver() as server:
        yield server


@pytest.fixture
async def make_alerter():
    """``make(**alert_settings) -> (alerter, emitted)``; every alerter is stopped at the end."""
    made: list[Alerter] = []

    def make(**settings) -> tuple[Alerter, list[FailoverEvent]]:
        emitted: list[FailoverEvent] = []
        alerter = Alerter(AlertSettings(**{**FAST, **settings}), instance_id="inst-1", emit=emitted.append)
        made.append(alerter)
        return alerter, emitted

    yield make
    for alerter in made:
        await alerter.stop(timeout=2)


def flapping_core(alerter: Alerter) -> tuple[FailoverCore, Clock]:
    """A real core (p1, p2 in tier 1, s1 in tier 2) whose events go to ``alerter``."""
    settings = parse_settings({"health": {"unhealthy_threshold": 1, "healthy_threshold": 1}})
    entries = model_list(("chat", "p1", 1, 1.0), ("chat", "p2", 1, 1.0), ("chat", "s1", 2, 1.0))
    clock = Clock()
    core = FailoverCore(
        settings, specs_for(entries, settings), instance_id="inst-1", probed=lambda s: True, clock=clock
    )
    core.listeners.append(alerter.on_event)
    return core, clock


def flap(core: FailoverCore, clock: Clock, deployment: str = "p1", reason: str = "HTTP 500") -> None:
    core.apply_probe(deployment, bad_report(reason))
    clock.advance(1)
    core.apply_probe(deployment, good_report())
    clock.advance(1)


# ---------------------------------------------------------------- delivery


async def test_a_webhook_gets_the_event_as_json_with_its_headers(receiver, make_alerter):
    alerter, emitted = make_alerter(
        webhook_urls=[receiver.url("/hook")], webhook_headers={"Authorization": "Bearer tok-123"}
    )
    await alerter.start()
    event = failover()
    alerter.on_event(event)
    await wait_until(lambda: len(receiver.delivered()) == 1, timeout=5, what="the webhook alert")
    body = receiver.delivered()[0]
    assert {k: body[k] for k in ("type", "group", "deployment", "from", "to", "reason", "instance")} == {
        "type": "failover",
        "group": "chat",
        "deployment": "p1",
        "from": "p1,p2",
        "to": "p2",
        "reason": event.reason,
        "instance": "inst-1",
    }
    assert body["time"] == event.created_at.isoformat()
    assert body["details"] == event.details
    assert body["severity"] == "warning"  # capacity lost inside the tier
    assert body["title"] == "failover in group chat: p1,p2 -> p2"
    assert body["suppressed"] == {"total": 0, "duplicates": 0, "rate_limited": 0}
    assert body["digest"] is False
    headers = receiver.received[0].headers
    assert headers["Authorization"] == "Bearer tok-123"
    assert headers["Content-Type"].startswith("application/json")
    assert await alerter.flush(5)
    stats = alerter.stats()
    assert (stats["sent"], stats["failed"], stats["queued"], stats["dropped"]) == (1, 0, 0, 0)
    assert emitted == []


async def test_an_apprise_json_url_reaches_the_receiver(receiver, make_alerter):
    alerter, _ = make_alerter(apprise_urls=[f"json://127.0.0.1:{receiver.port}/apprise"])
    await alerter.start()
    alerter.on_event(
        FailoverEvent(
            event_type="panic_mode",
            model_group="chat",
            reason="every deployment is out: routing to all of them (panic mode)",
            details={"entered": True, "deployments": ["p1", "p2"]},
        )
    )
    await wait_until(lambda: receiver.delivered("/apprise"), timeout=10, what="the apprise alert")
    body = receiver.delivered("/apprise")[0]
    assert body["title"] == "PANIC MODE in group chat: every deployment is out, routing to all of them"
    assert "routing to all of them (panic mode)" in body["message"]
    assert "instance: inst-1" in body["message"]
    assert body["type"] == "failure"  # apprise's notify type for a critical alert
    assert alerter.stats()["targets"] == ["apprise_urls[0] json:// (JSON)"]


async def test_only_the_configured_event_types_alert(receiver, make_alerter):
    alerter, _ = make_alerter(webhook_urls=[receiver.url()])
    await alerter.start()
    for event_type in ("state_change", "request_failover", "session_repinned", "failback_step", ALERT_FAILED):
        alerter.on_event(failover(event_type=event_type, from_deployment="s1", to_deployment="p1"))
    assert await alerter.flush(5)
    # failback_step comes from another module: a name is enough to alert on it.
    assert [b["type"] for b in receiver.delivered()] == ["failback_step"]
    assert receiver.delivered()[0]["title"] == "failback step in group chat: p1 (s1 -> p1)"

    only_drains, _ = make_alerter(webhook_urls=[receiver.url("/drains")], event_types=["drain_started"])
    await only_drains.start()
    only_drains.on_event(failover())
    only_drains.on_event(failover(event_type="drain_started", from_deployment=None, to_deployment=None))
    assert await only_drains.flush(5)
    assert [b["type"] for b in receiver.delivered("/drains")] == ["drain_started"]


# ---------------------------------------------------------------- flapping


async def test_a_flapping_node_alerts_once_per_change_and_the_next_alert_counts_the_rest(
    receiver, make_alerter
):
    alerter, _ = make_alerter(webhook_urls=[receiver.url()], dedup_window_s=3600, rate_limit_count=100)
    await alerter.start()
    core, clock = flapping_core(alerter)
    for _ in range(20):
        flap(core, clock)
    assert await alerter.flush(5)
    assert [(b["from"], b["to"]) for b in receiver.delivered()] == [("p1,p2", "p2"), ("p2", "p1,p2")]
    assert alerter.stats()["suppressed_dedup"] == 38

    core.apply_probe("p2", bad_report("connection refused"))  # something new in the group
    assert await alerter.flush(5)
    last = receiver.delivered()[-1]
    assert (last["from"], last["to"]) == ("p1,p2", "p1")
    assert last["suppressed"] == {"total": 38, "duplicates": 38, "rate_limited": 0}
    assert "38 similar alert(s) for group chat were suppressed since the last one" in last["message"]


async def test_flapping_with_changing_reasons_is_rate_limited_then_digested(receiver, make_alerter):
    alerter, _ = make_alerter(
        webhook_urls=[receiver.url()], dedup_window_s=3600, rate_limit_count=3, rate_limit_window_s=1.0
    )
    await alerter.start()
    core, clock = flapping_core(alerter)
    for i in range(10):
        flap(core, clock, reason=f"HTTP 5{i:02d}")  # every ejection reads differently: no dedup
    assert await alerter.flush(5)
    assert len(receiver.delivered()) == 3  # the rate limit
    stats = alerter.stats()
    assert (stats["suppressed_rate"], stats["suppressed_dedup"]) == (8, 9)

    # Once the window has room, the latest suppressed alert (p1 back in) arrives as a digest.
    await wait_until(lambda: len(receiver.delivered()) == 4, timeout=5, what="the digest")
    digest = receiver.delivered()[3]
    assert digest["digest"] is True
    assert (digest["from"], digest["to"]) == ("p2", "p1,p2")
    assert digest["suppressed"] == {"total": 17, "duplicates": 9, "rate_limited": 8}
    assert digest["title"].endswith("(latest of 17 suppressed alerts)")
    assert await alerter.flush(5)
    assert len(receiver.delivered()) == 4  # 20 events, 4 alerts: 3 + 1 digest


# ---------------------------------------------------------------- failures and retries


async def test_a_receiver_that_fails_then_recovers_gets_the_alert_after_retries(receiver, make_alerter):
    receiver.fail_next(2, status=500)
    alerter, emitted = make_alerter(webhook_urls=[receiver.url()], max_attempts=5)
    await alerter.start()
    alerter.on_event(failover())
    assert await alerter.flush(5)
    assert [r.status for r in receiver.received] == [500, 500, 200]
    assert len(receiver.delivered()) == 1
    stats = alerter.stats()
    assert (stats["sent"], stats["retries"], stats["failed"]) == (1, 2, 0)
    assert stats["last_error"] == f"webhook_urls[0] http://127.0.0.1:{receiver.port}: HTTP 500"
    assert emitted == []


async def test_a_destination_that_never_works_is_recorded_as_alert_failed_without_secrets(
    receiver, make_alerter, caplog
):
    caplog.set_level(logging.DEBUG)
    receiver.always_fail(503)
    secrets = ["SECRET-PATH-TOKEN", "SECRET-QUERY", "SECRET-HEADER", "SECRET-APPRISE-PW"]
    closed_port = free_port()  # nothing listens there: connection refused
    alerter, emitted = make_alerter(
        webhook_urls=[f"http://127.0.0.1:{receiver.port}/hook/SECRET-PATH-TOKEN?token=SECRET-QUERY"],
        webhook_headers={"Authorization": "Bearer SECRET-HEADER"},
        apprise_urls=[f"json://alice:SECRET-APPRISE-PW@127.0.0.1:{closed_port}/x"],
        max_attempts=3,
    )
    # The core feeds its own events back to its listeners: alert_failed must not loop.
    original_emit = alerter._emit
    alerter._emit = lambda event: (original_emit(event), alerter.on_event(event))
    await alerter.start()
    alerter.on_event(failover())
    assert await alerter.flush(10)

    failed = sorted((e for e in emitted if e.event_type == ALERT_FAILED), key=lambda e: e.details["target"])
    assert [e.details["target"] for e in failed] == [
        "apprise_urls[0] json:// (JSON)",
        f"webhook_urls[0] http://127.0.0.1:{receiver.port}",
    ]
    for event in failed:
        assert event.model_group == "chat" and event.deployment_id == "p1"
        assert event.details["attempts"] == 3 and event.details["alert_type"] == "failover"
        assert "not delivered to" in event.reason and "after 3 attempt(s)" in event.reason
    assert failed[1].details["error"] == "HTTP 503"
    assert [r.status for r in receiver.received] == [503, 503, 503]
    stats = alerter.stats()
    assert (stats["sent"], stats["failed"], stats["admitted"], stats["queued"]) == (0, 2, 1, 0)

    shown = json.dumps([asdict(e) for e in emitted], default=str) + json.dumps(stats) + caplog.text
    for secret in secrets:
        assert secret not in shown


async def test_an_alert_nobody_received_is_tried_again_when_it_recurs(receiver, make_alerter):
    receiver.always_fail(500)
    alerter, emitted = make_alerter(webhook_urls=[receiver.url()], max_attempts=1, dedup_window_s=3600)
    await alerter.start()
    alerter.on_event(failover())
    assert await alerter.flush(5)
    receiver._always = None  # the receiver works again
    alerter.on_event(failover())  # same alert: not a duplicate of one nobody got
    assert await alerter.flush(5)
    assert len(receiver.delivered()) == 1
    assert [e.event_type for e in emitted] == [ALERT_FAILED]


# ---------------------------------------------------------------- the hot path and shutdown


async def test_on_event_never_blocks_and_a_full_queue_drops_and_counts(receiver, make_alerter):
    receiver.hold()  # the destination hangs: every delivery waits
    alerter, _ = make_alerter(webhook_urls=[receiver.url()], max_queue=5, dedup_window_s=0, timeout_s=30)
    await alerter.start()
    events = [failover(reason=f"reason {i}") for i in range(2000)]
    alerter.on_event(events[0])
    await wait_until(lambda: receiver.waiting == 1, timeout=5, what="a delivery hanging at the receiver")
    for event in events[1:]:  # what each call costs is measured by bench/call_costs.py
        alerter.on_event(event)
    assert receiver.waiting == 1  # every call returned while the first delivery still hangs
    stats = alerter.stats()
    assert (stats["admitted"], stats["dropped"], stats["queued"]) == (5, 1995, 5)

    receiver.release()
    assert await alerter.flush(10)
    assert len(receiver.delivered()) == 5


async def test_on_event_from_another_thread_is_delivered(receiver, make_alerter):
    alerter, _ = make_alerter(webhook_urls=[receiver.url()], rate_limit_count=50)
    await alerter.start()
    events = [failover(reason=f"reason {i}") for i in range(20)]
    worker = threading.Thread(target=lambda: [alerter.on_event(e) for e in events])
    worker.start()
    await asyncio.to_thread(worker.join, 5)
    await wait_until(lambda: len(receiver.delivered()) == 20, timeout=5, what="alerts from a thread")
    assert sorted(b["reason"] for b in receiver.delivered()) == sorted(e.reason for e in events)


async def test_stop_flushes_what_is_queued_and_refuses_what_comes_after(receiver, make_alerter):
    alerter, _ = make_alerter(webhook_urls=[receiver.url()])
    for i in range(5):
        alerter.on_event(failover(reason=f"reason {i}"))  # before start: they wait
    await alerter.start()
    await alerter.stop(timeout=5)
    assert [b["reason"] for b in receiver.delivered()] == [f"reason {i}" for i in range(5)]
    alerter.on_event(failover(reason="after stop"))
    stats = alerter.stats()
    assert (stats["sent"], stats["dropped"], stats["queued"], stats["running"]) == (5, 1, 0, False)


async def test_stop_keeps_its_deadline_when_a_destination_is_down(receiver, make_alerter):
    receiver.always_fail(500)
    alerter, _ = make_alerter(webhook_urls=[receiver.url()], max_attempts=1000, retry_backoff_s=10)
    await alerter.start()
    alerter.on_event(failover())
    await wait_until(lambda: receiver.received, timeout=5, what="a first attempt")
    began = time.monotonic()
    await alerter.stop(timeout=0.5)
    assert time.monotonic() - began < 2.0
    assert len(receiver.received) >= 2  # stop() retried at once instead of sitting out 10 s
    stats = alerter.stats()
    assert (stats["dropped"], stats["queued"]) == (1, 0)


async def test_without_destinations_nothing_is_queued_or_started(make_alerter):
    alerter, _ = make_alerter()
    await alerter.start()
    alerter.on_event(failover())
    stats = alerter.stats()
    assert (stats["enabled"], stats["running"], stats["admitted"], stats["queued"]) == (False, False, 0, 0)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("alerts", "path", "said", "secret"),
    [
        (
            {"apprise_urls": ["json://127.0.0.1:1/ok", "slak://SECRET-TOKEN-1/abc"]},
            "failover_settings.alerts.apprise_urls[1]",
            "slak://",
            "SECRET-TOKEN-1",
        ),
        (
            {"apprise_urls": ["slack://SECRET-TOKEN-2"]},
            "alerts.apprise_urls[0]",
            "slack://",
            "SECRET-TOKEN-2",
        ),
        (
            {"webhook_urls": ["ftp://u:SECRET-PW-3@example.com/x"]},
            "alerts.webhook_urls[0]",
            "ftp://",
            "SECRET-PW-3",
        ),
        (
            {"webhook_urls": ["https://hooks.example.com/ok", "hooks.example.com/SECRET-4"]},
            "alerts.webhook_urls[1]",
            "<no scheme>",
            "SECRET-4",
        ),
        (
            {"webhook_headers": {"Authorization": "Bearer SECRET-5\r\nX-Evil: 1"}},
            "alerts.webhook_headers.Authorization",
            "line break",
            "SECRET-5",
        ),
        ({"event_types": ["failover", "alert_failed"]}, "alerts.event_types", "alert_failed", None),
        ({"max_attempts": 0}, "alerts.max_attempts", "greater than or equal to 1", None),
    ],
)
def test_bad_alert_settings_are_refused_with_the_key_path_and_no_secret(alerts, path, said, secret, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FailoverConfigError) as caught:
        parse_settings({"alerts": alerts})
    message = str(caught.value)
    assert path in message and said in message
    if secret is not None:
        assert secret not in message and secret not in caplog.text


def test_attach_and_the_proxy_config_refuse_a_bad_destination(tmp_path):
    alerts = {"apprise_urls": ["slak://SECRET-TOKEN-6/x"]}
    router = litellm.Router(model_list=model_list(("chat", "p1", 1, 1.0)))
    with pytest.raises(FailoverConfigError, match=r"failover_settings\.alerts\.apprise_urls\[0\]") as caught:
        attach(router, {"alerts": alerts})
    assert "SECRET-TOKEN-6" not in str(caught.value)

    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"model_list": model_list(("chat", "p1", 1, 1.0)), "failover_settings": {"alerts": alerts}}
        )
    )
    with pytest.raises(FailoverConfigError, match=r"failover_settings\.alerts\.apprise_urls\[0\]") as caught:
        load_proxy_config(str(config))
    assert "SECRET-TOKEN-6" not in str(caught.value)


def test_destinations_stay_out_of_the_settings_repr():
    settings = AlertSettings(
        apprise_urls=["json://u:SECRET-7@127.0.0.1:1/x"],
        webhook_urls=["https://127.0.0.1/hook/SECRET-8"],
        webhook_headers={"Authorization": "SECRET-9"},
    )
    shown = repr(settings) + str(settings)
    assert not any(s in shown for s in ("SECRET-7", "SECRET-8", "SECRET-9"))


# ---------------------------------------------------------------- the parts on their own


def test_the_policy_forgets_duplicates_after_the_window_and_rolls_the_rate_window():
    clock = Clock()
    policy = AlertPolicy(
        AlertSettings(dedup_window_s=10, rate_limit_count=2, rate_limit_window_s=60), clock=clock
    )
    assert policy.admit(failover()) is not None
    assert policy.admit(failover()) is None  # duplicate
    clock.advance(10)
    again = policy.admit(failover())  # the dedup window has passed
    assert again is not None and (again.suppressed_dedup, again.suppressed_rate) == (1, 0)
    assert policy.admit(failover(reason="other")) is None  # 2 per 60 s: rate-limited
    assert policy.next_digest_at() == 1000.0 + 60
    assert policy.take_digests() == []
    clock.advance(50)
    [digest] = policy.take_digests()
    assert digest.digest and digest.event.reason == "other"
    assert (digest.suppressed_dedup, digest.suppressed_rate) == (0, 1)
    assert policy.next_digest_at() is None
    assert policy.admit(failover(event_type="state_change")) is None  # not an alerting type


@pytest.mark.parametrize(
    ("fields", "severity"),
    [
        ({}, "warning"),
        ({"details": {"from": ["p1"], "to": ["s1"], "from_tier": 1, "to_tier": 2}}, "warning"),
        ({"details": {"from": ["s1"], "to": ["p1"], "from_tier": 2, "to_tier": 1}}, "success"),
        ({"details": {"from": ["p2"], "to": ["p1", "p2"], "from_tier": 1, "to_tier": 1}}, "success"),
        ({"details": {"from": ["p1"], "to": [], "from_tier": 1, "to_tier": None}}, "critical"),
        ({"event_type": "panic_mode", "details": {"entered": False}}, "success"),
        ({"event_type": "drain_completed", "details": {"in_flight": 3, "cut": 1}}, "warning"),
        ({"event_type": "drain_completed", "details": {"in_flight": 3, "cut": 0}}, "info"),
        ({"event_type": "ramp_aborted", "details": {}}, "warning"),
        ({"event_type": "something_new", "details": {}}, "info"),
    ],
)
def test_severity_follows_what_happened(fields, severity):
    event = failover(**fields)
    assert severity_of(event) == severity
    message = build_message(Admission(event, ("k",)), "inst-1")  # type: ignore[arg-type]
    assert message.severity == severity and message.payload["severity"] == severity

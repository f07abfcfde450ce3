"""The fleet's wire format and what a replica does with a message, without Redis.

A real ``FailoverCore`` and ``Fleet`` (whose Redis link is never started) receive raw messages as
they would arrive from pub/sub or a state key; the core's clock is a variable so ejection times
can be stepped through without sleeping.
"""

from __future__ import annotations

import json
import logging
import time

import pytest

from litellm_failover.control.signing import keys_from_env, sign
from litellm_failover.core import FailoverCore
from litellm_failover.deployments import read_model_list
from litellm_failover.fleet import Ejection, Fleet, MessageError, Pin, Recovery, fleet_for
from litellm_failover.fleet import sync as fleet_sync
from litellm_failover.fleet.messages import MAX_MESSAGE_BYTES, SCHEMA_VERSION, decode, encode, make
from litellm_failover.outlier import Outcome
from litellm_failover.providers.base import CheckResult, ProbeReport
from litellm_failover.settings import FailoverConfigError, FailoverSettings, FleetSettings

MODEL_LIST = [
    {
        "model_name": "chat",
        "litellm_params": {
            "model": "hosted_vllm/m",
            "api_base": f"http://127.0.0.1:9/{name}/v1",
            "order": order,
        },
        "model_info": {"id": name},
    }
    for name, order in (("p1", 1), ("s1", 2))
]
PASS = ProbeReport(checks=(CheckResult.passed("http_health", "200"),), latency_s=0.01)
FAIL = ProbeReport(checks=(CheckResult.failed("http_health", "connection refused"),), latency_s=0.01)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def replica():
    """Replica "B": a core with p1 (primary) and s1 (standby), its fleet wired as the plugin does."""
    settings = FailoverSettings(redis_url="redis://:hunter2@127.0.0.1:6379/0", instance_id="B")
    clock = Clock()
    specs = read_model_list(MODEL_LIST, settings.health)
    core = FailoverCore(settings, specs, instance_id="B", probed=lambda spec: True, clock=clock)
    fleet = fleet_for(core, settings)
    events = []
    core.listeners.append(events.append)
    return core, fleet, clock, events


def raw(kind: str, origin: str, payload, changes: dict | None = None) -> str:
    """A message as replica ``origin`` sends it: tagged with the fleet's key (tests/conftest.py)."""
    data = json.loads(encode(make(kind, origin, payload, node=f"node-of-{origin}")))
    data.update(changes or {})
    return signed(data)


def signed(data: dict) -> str:
    data = {key: value for key, value in data.items() if key != "sig"}
    return json.dumps({**data, "sig": sign(keys_from_env(), "fleet", data, time.time())})


def ejection(remaining_s: float = 30.0, deployment_id: str = "p1") -> Ejection:
    return Ejection(
        model_group="chat", deployment_id=deployment_id, reason="refused", remaining_s=remaining_s
    )


def queued(fleet: Fleet) -> list[tuple[str | None, dict]]:
    return [(key, json.loads(value)) for key, value in fleet.link._queue]


# -- the wire format ---------------------------------------------------------------------


def test_every_kind_round_trips_and_ejection_and_recovery_share_one_state_key():
    payloads = {
        "eject": ejection(),
        "recover": Recovery(model_group="chat", deployment_id="p1", reason="probes pass"),
        "pin": Pin(session_id="s-1", model_group="chat", deployment_id="p1"),
    }
    for kind, payload in payloads.items():
        envelope = make(kind, "A", payload, node="n1")
        back = decode(encode(envelope))
        assert (back.kind, back.origin, back.payload, back.msg_id) == (kind, "A", payload, envelope.msg_id)
        assert json.loads(encode(envelope))["v"] == SCHEMA_VERSION
    subjects = {kind: make(kind, "A", p, node="n1").subject for kind, p in payloads.items()}
    assert subjects == {"eject": "health:p1", "recover": "health:p1", "pin": "pin:chat:s-1"}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("not json at all", "malformed"),
        (b"\xff\xfe", "malformed"),
        ("[1, 2]", "malformed"),
        ('{"kind": "eject"}', "version"),
        (raw("eject", "A", ejection(), {"v": SCHEMA_VERSION + 1}), "version"),
        (raw("eject", "A", ejection(), {"kind": "reboot"}), "kind"),
        (raw("eject", "A", ejection(), {"origin": ""}), "malformed"),
        (raw("eject", "A", ejection(), {"payload": {"model_group": "chat"}}), "malformed"),
        (
            raw("eject", "A", ejection(), {"payload": {**ejection().model_dump(), "remaining_s": -1}}),
            "malformed",
        ),
        ("x" * (MAX_MESSAGE_BYTES + 1), "malformed"),
    ],
)
def test_decode_refuses_what_is_not_a_message_of_this_version(message, reason):
    with pytest.raises(MessageError) as caught:
        decode(message)
    assert caught.value.reason == reason


def test_make_refuses_an_unknown_kind_or_the_wrong_payload():
    with pytest.raises(ValueError, match="unknown fleet message kind 'drain'"):
        make("drain", "A", ejection(), node="n1")
    with pytest.raises(TypeError, match="carries a Pin"):
        make("pin", "A", ejection(), node="n1")


def test_a_bad_redis_url_is_refused_at_start_up_without_its_password():
    settings = FailoverSettings(redis_url="http://user:s3cret-pw@127.0.0.1:6379")
    core = FailoverCore(settings, [], instance_id="B", probed=lambda spec: True)
    with pytest.raises(FailoverConfigError, match=r"failover_settings\.redis_url") as caught:
        fleet_for(core, settings)
    assert "s3cret-pw" not in str(caught.value)


def test_status_never_shows_the_redis_password(replica):
    _, fleet, _, _ = replica
    status = fleet.status()
    assert "hunter2" not in json.dumps(status)
    assert status["url"] == "redis://:***@127.0.0.1:6379/0"
    assert {"connected", "last_error", "published", "applied", "ignored"} <= set(status)


# -- receiving ---------------------------------------------------------------------------


def test_a_remote_ejection_is_applied_with_its_origin_and_never_published_again(replica):
    core, fleet, _, events = replica
    fleet._on_raw(raw("eject", "A", ejection(remaining_s=30.0)), "pubsub")
    record = core.health["p1"]
    assert record.state.value == "unhealthy"
    assert record.reason == "ejected by A: refused"
    assert record.ejected_by == "A"
    assert core.table("chat").serving == ("s1",)
    change = next(e for e in events if e.event_type == "state_change")
    assert change.details["source"] == "fleet" and change.details["origin_instance"] == "A"
    assert change.instance_id == "B"
    assert core.status()["groups"]["chat"]["deployments"][0]["ejected_by"] == "A"
    assert queued(fleet) == []  # applying it published nothing: no echo
    assert fleet.status()["applied"] == 1


def test_own_duplicate_and_invalid_messages_are_ignored_counted_and_warned_about_once(replica, caplog):
    core, fleet, _, _ = replica
    own = signed(json.loads(encode(make("eject", "B", ejection(), node=fleet.node))))
    fleet._on_raw(own, "pubsub")  # our own, echoed by pub/sub
    assert core.health["p1"].state.value == "healthy"
    message = raw("eject", "A", ejection())
    fleet._on_raw(message, "pubsub")
    fleet._on_raw(message, "keys")  # the same message again, read from its state key
    with caplog.at_level(logging.WARNING, logger="litellm_failover.fleet"):
        for _ in range(3):
            fleet._on_raw("{broken", "pubsub")
        fleet._on_raw(raw("eject", "A", ejection(), {"v": 99}), "keys")
    status = fleet.status()
    assert status["applied"] == 1
    assert status["ignored_by_reason"] == {"own": 1, "duplicate": 1, "malformed": 3, "version": 1}
    assert status["ignored"] == 6
    warnings = [r for r in caplog.records if "ignoring a message" in r.getMessage()]
    assert len(warnings) == 1 and "not JSON" in warnings[0].getMessage()


def test_a_replica_given_the_same_instance_id_is_still_heard_and_warned_about(replica, caplog):
    core, fleet, _, _ = replica
    with caplog.at_level(logging.WARNING, logger="litellm_failover.fleet"):
        fleet._on_raw(raw("eject", "B", ejection()), "pubsub")  # "B" too, but another process
    assert core.health["p1"].state.value == "unhealthy"
    assert any("also calls itself 'B'" in r.getMessage() for r in caplog.records)


def test_a_timer_recovery_is_not_published(replica):
    core, fleet, clock, _ = replica
    record = core.health["p1"]
    record.probed = False  # nobody probes it: only the timer brings it back
    core.record_failure("p1", Outcome.CONNECT_ERROR, error="connection refused")
    clock.now += core.settings.outlier.base_ejection_s + 1
    core.tick()
    assert record.state.value == "healthy"
    assert [m["kind"] for _, m in queued(fleet)] == ["eject"]  # every replica has its own timer


def test_messages_for_deployments_this_replica_does_not_have_change_nothing(replica):
    core, fleet, _, _ = replica
    fleet._on_raw(raw("eject", "A", ejection(deployment_id="elsewhere")), "pubsub")
    assert fleet.status()["ignored_by_reason"] == {"not_applicable": 1}
    assert all(r.state.value == "healthy" for r in core.health.values())


def test_after_a_remote_ejection_the_local_probes_decide_recovery(replica):
    core, fleet, clock, _ = replica
    # Sent 10 s ago with 30 s left: 20 s left here.
    fleet._on_raw(raw("eject", "A", ejection(remaining_s=30.0), {"sent_at": time.time() - 10}), "pubsub")
    record = core.health["p1"]
    assert record.outlier.ejected_until == pytest.approx(clock.now + 20, abs=0.5)
    core.apply_probe("p1", PASS)  # half-open rounds only count once the ejection time is over
    assert record.state.value == "unhealthy"
    clock.now += 21
    core.apply_probe("p1", PASS)
    assert record.state.value == "recovering" and record.ejected_by == "A"
    core.apply_probe("p1", PASS)
    assert record.state.value == "healthy" and record.ejected_by is None
    # A local recovery is a local decision: it is published for the other replicas.
    assert [(key, m["kind"]) for key, m in queued(fleet)] == [
        (fleet.link.key_prefix + "health:p1", "recover")
    ]


def test_a_remote_recovery_lifts_only_a_remote_ejection(replica):
    core, fleet, _, _ = replica
    recovery = Recovery(model_group="chat", deployment_id="p1", reason="probes pass again")
    fleet._on_raw(raw("eject", "A", ejection()), "pubsub")
    fleet._on_raw(raw("recover", "A", recovery), "pubsub")
    record = core.health["p1"]
    assert record.state.value == "healthy" and record.reason == "recovered on A: probes pass again"

    # Out because of a local failing probe: a remote recovery does not override it.
    core.apply_probe("p1", FAIL)
    core.apply_probe("p1", FAIL)
    assert record.state.value == "unhealthy" and record.ejected_by is None
    fleet._on_raw(raw("recover", "C", recovery), "pubsub")
    assert record.state.value == "unhealthy"

    # Out remotely, but this replica's latest probe fails: the remote recovery waits for it.
    core.apply_probe("s1", FAIL)
    fleet._on_raw(raw("eject", "A", ejection(deployment_id="s1")), "pubsub")
    fleet._on_raw(raw("recover", "A", recovery.model_copy(update={"deployment_id": "s1"})), "pubsub")
    assert core.health["s1"].state.value == "unhealthy"
    assert fleet.status()["ignored_by_reason"] == {"not_applicable": 2}


def test_a_local_ejection_is_published_with_its_remaining_time(replica):
    core, fleet, _, _ = replica
    core.record_failure("p1", Outcome.CONNECT_ERROR, error="connection refused")
    [(key, message)] = queued(fleet)
    assert key == fleet.link.key_prefix + "health:p1"
    assert message["kind"] == "eject" and message["origin"] == "B"
    payload = message["payload"]
    assert payload["deployment_id"] == "p1" and "connection refused" in payload["reason"]
    assert payload["remaining_s"] == pytest.approx(core.settings.outlier.base_ejection_s)


def test_pins_go_to_the_pin_listener_and_out_under_their_own_key(replica):
    _, fleet, _, _ = replica
    pin = Pin(session_id="sess-9", model_group="chat", deployment_id="s1")
    fleet._on_raw(raw("pin", "A", pin), "pubsub")  # no pin store yet: nothing to apply it to
    assert fleet.status()["ignored_by_reason"] == {"not_applicable": 1}
    seen = []
    fleet.applier.pin_listener = lambda *args: seen.append(args)
    fleet._on_raw(raw("pin", "A", pin), "pubsub")
    assert seen == [("sess-9", "chat", "s1")]
    assert not fleet.publish_pin("x" * 321, "chat", "p1")  # refused, not raised into a request
    assert fleet.publish_pin("sess-10", "chat", "p1")
    [(key, message)] = queued(fleet)
    assert key == fleet.link.key_prefix + "pin:chat:sess-10" and message["kind"] == "pin"


def test_the_publish_queue_is_bounded_and_counts_what_it_drops(monkeypatch):
    monkeypatch.setattr(fleet_sync, "MAX_QUEUE", 3)
    link = fleet_sync.RedisLink(
        "redis://127.0.0.1:6379", FleetSettings(channel="litellm_failover"), lambda raw, source: None
    )
    results = [link.enqueue(None, str(i)) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert [value for _, value in link._queue] == ["2", "3", "4"]  # the newest are kept
    assert link.stats()["dropped"] == 2


# -- hostile input ------------------------------------------------------------------------

_GOOD = ejection().model_dump()


def _hostile() -> list[str]:
    def eject(**payload) -> str:
        return raw("eject", "A", ejection(), {"payload": {**_GOOD, **payload}})

    return [
        eject(remaining_s=float("inf")),
        eject(remaining_s=float("nan")),
        eject(remaining_s=1e300),
        eject(remaining_s=True),
        eject(deployment_id="p1\x00"),
        eject(model_group="chat\n[fake log line]"),
        eject(deployment_id="p" * 256),
        eject(reason="x" * 5000),
        raw("eject", "A", ejection(), {"sent_at": float("inf")}),
        raw("eject", "A", ejection(), {"sent_at": 1e20}),
        raw("eject", "A", ejection(), {"origin": "A\x1b[31m"}),
        raw("eject", "A", ejection(), {"id": "i" * 300}),
        raw("eject", "A", ejection(), {"sent_at": "now"}),
    ]


def test_hostile_numbers_and_strings_are_dropped_and_counted(replica, caplog):
    """Before: ``remaining_s: Infinity`` ejected p1 here for ever; control characters and
    unbounded strings went into events and logs."""
    core, fleet, _, events = replica
    messages = _hostile()
    with caplog.at_level(logging.WARNING, logger="litellm_failover.fleet"):
        for message in messages:
            fleet._on_raw(message, "pubsub")
    assert core.health["p1"].state.value == "healthy"
    assert events == []
    assert fleet.status()["ignored_by_reason"] == {"malformed": len(messages)}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # rate-limited: one line for the burst
    fleet._on_raw(raw("eject", "A", ejection(remaining_s=30.0)), "pubsub")  # a valid one still applies
    assert core.health["p1"].state.value == "unhealthy"


def test_an_ejection_longer_than_the_local_max_ejection_is_dropped_and_counted(replica, caplog):
    core, fleet, clock, _ = replica
    limit = core.settings.outlier.max_ejection_s
    with caplog.at_level(logging.WARNING, logger="litellm_failover.fleet"):
        fleet._on_raw(raw("eject", "A", ejection(remaining_s=limit * 1000)), "pubsub")
    assert core.health["p1"].state.value == "healthy"
    assert fleet.status()["ignored_by_reason"] == {"out_of_bounds": 1}
    assert "outlier.max_ejection_s" in caplog.text
    fleet._on_raw(raw("eject", "A", ejection(remaining_s=limit)), "pubsub")
    assert core.health["p1"].state.value == "unhealthy"
    assert core.health["p1"].outlier.ejected_until <= clock.now + limit


# -- authentication (issue 11 §1) --------------------------------------------------------------


def _tagged(data: dict, keys: str, signed_at: float) -> str:
    from litellm_failover.control.signing import parse_keys

    data = {key: value for key, value in data.items() if key != "sig"}
    return json.dumps({**data, "sig": sign(parse_keys(keys), "fleet", data, signed_at)})


def test_unsigned_mis_signed_and_replayed_messages_are_rejected_and_never_applied(replica, caplog):
    """Before: any message on the channel ejected p1 on every replica."""
    core, fleet, _, _ = replica
    message = json.loads(raw("eject", "A", ejection()))
    now = time.time()
    window = fleet._max_age_s  # fleet.key_ttl_s + control.max_clock_skew_s
    secret = "test-key:litellm-failover-test-signing-secret"
    attempts = {
        "unsigned": json.dumps({k: v for k, v in message.items() if k != "sig"}),
        "unknown_key": _tagged(message, "stranger:" + "s" * 20, now),
        "bad_signature": _tagged(message, "test-key:" + "w" * 20, now),
        "malformed_tag": json.dumps({**message, "sig": "v1:test-key:not-a-tag"}),
        "too_old": _tagged(message, secret, now - window - 5),
        "future": _tagged(message, secret, now + 3600),
    }
    tampered = json.loads(raw("eject", "A", ejection(remaining_s=1.0)))
    tampered["payload"]["remaining_s"] = 3000.0  # the tag no longer matches
    with caplog.at_level(logging.WARNING):
        for attempt in attempts.values():
            fleet._on_raw(attempt, "pubsub")
        fleet._on_raw(json.dumps(tampered), "keys")
    assert core.health["p1"].state.value == "healthy"
    expected = dict.fromkeys(attempts, 1) | {"bad_signature": 2}
    assert fleet.status()["ignored_by_reason"] == expected
    assert fleet.gate.status()["rejected_by"] == {"redis": expected}
    assert "litellm-failover-test-signing-secret" not in caplog.text
    # The same message, validly signed, applies; a copy of it (a replay) is discarded.
    fleet._on_raw(json.dumps(message), "pubsub")
    fleet._on_raw(json.dumps(message), "pubsub")
    assert core.health["p1"].state.value == "unhealthy"
    assert fleet.status()["applied"] == 1 and fleet.status()["ignored_by_reason"]["duplicate"] == 1


def test_what_a_replica_publishes_is_signed(replica):
    from litellm_failover.control.signing import verify

    core, fleet, _, _ = replica
    core.record_failure("p1", Outcome.CONNECT_ERROR, error="connection refused")
    [(_, message)] = queued(fleet)
    tag = message.pop("sig")
    verified = verify(keys_from_env(), "fleet", message, tag, time.time(), max_age_s=60, max_skew_s=60)
    assert verified.kid == "test-key"


def test_without_a_key_the_fleet_link_is_off_and_says_so(monkeypatch, caplog):
    message = raw("eject", "A", ejection())  # signed by a replica that has the key
    monkeypatch.delenv("LITELLM_FAILOVER_SIGNING_KEYS")
    settings = FailoverSettings(redis_url="redis://127.0.0.1:6379/0", instance_id="B")
    core = FailoverCore(
        settings, read_model_list(MODEL_LIST, settings.health), instance_id="B", probed=lambda s: True
    )
    fleet = fleet_for(core, settings)
    assert fleet.publish_pin("s", "chat", "p1") is False and queued(fleet) == []
    fleet._on_raw(message, "pubsub")
    assert core.health["p1"].state.value == "healthy"
    status = fleet.status()
    assert status["enabled"] is False and status["authentication"] == "off"


def test_the_insecure_opt_in_accepts_unsigned_messages(monkeypatch):
    monkeypatch.delenv("LITELLM_FAILOVER_SIGNING_KEYS")
    settings = FailoverSettings(
        redis_url="redis://127.0.0.1:6379/0", instance_id="B", control={"insecure_unsigned": True}
    )
    core = FailoverCore(
        settings, read_model_list(MODEL_LIST, settings.health), instance_id="B", probed=lambda s: True
    )
    fleet = fleet_for(core, settings)
    unsigned = encode(make("eject", "A", ejection(), node="node-of-A"))
    fleet._on_raw(unsigned, "pubsub")
    assert core.health["p1"].state.value == "unhealthy"
    assert fleet.status()["authentication"] == "insecure" and fleet.gate.accepted_unsigned == 1

"""Authentication tags (``litellm_failover.control.signing``): what a key list may be, what a tag
covers, and that a command survives every transport's round trip with its tag still valid."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from litellm_failover.control.client import signed
from litellm_failover.control.commands import build_command, from_wire
from litellm_failover.control.signing import (
    SignatureError,
    SigningConfigError,
    parse_keys,
    sign,
    verify,
)

SECRET = "s" * 24
RING = parse_keys(f"k1:{SECRET}")


def check(ring, body, tag, now=None, max_age_s=60.0):
    return verify(
        ring, "command", body, tag, time.time() if now is None else now, max_age_s=max_age_s, max_skew_s=60
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("k1", "entry 1 must be KEY_ID:SECRET"),
        ("k 1:" + SECRET, "key id 'k 1'"),
        ("k1:short-secret", "at least 16 characters"),
        (f"k1:{SECRET},k1:{SECRET}", "listed twice"),
    ],
)
def test_a_bad_key_list_is_refused_by_name_without_the_secret(text, error):
    with pytest.raises(SigningConfigError, match=error) as caught:
        parse_keys(text)
    assert "LITELLM_FAILOVER_SIGNING_KEYS" in str(caught.value)
    assert "short-secret" not in str(caught.value) and SECRET not in str(caught.value)
    assert SECRET not in repr(parse_keys(f"k1:{SECRET}"))


def test_a_tag_covers_the_body_the_key_the_time_and_the_purpose():
    body = {"a": 1, "b": [1.5, "x"]}
    tag = sign(RING, "command", body, time.time())
    assert check(RING, {"b": [1.5, "x"], "a": 1}, tag).kid == "k1"  # key order does not matter
    for bad_body in ({"a": 2, "b": [1.5, "x"]}, {"a": 1}):
        with pytest.raises(SignatureError, match="bad_signature"):
            check(RING, bad_body, tag)
    with pytest.raises(SignatureError, match="bad_signature"):
        verify(
            RING, "fleet", body, tag, time.time(), max_age_s=60, max_skew_s=60
        )  # a command is no fleet message
    kid, ts, nonce, mac = tag.split(":")[1:]
    with pytest.raises(SignatureError, match="bad_signature"):
        check(RING, body, f"v1:{kid}:{int(ts) + 1}:{nonce}:{mac}")  # its time cannot be moved
    reasons = {
        "unsigned": "",
        "malformed_tag": "v1:k1:abc",
        "unknown_key": sign(parse_keys(f"k2:{SECRET}"), "command", body, time.time()),
    }
    for reason, bad in reasons.items():
        with pytest.raises(SignatureError) as caught:
            check(RING, body, bad)
        assert caught.value.reason == reason
    with pytest.raises(SignatureError, match="too_old"):
        check(RING, body, sign(RING, "command", body, time.time() - 120))
    with pytest.raises(SignatureError, match="future"):
        check(RING, body, sign(RING, "command", body, time.time() + 120))
    assert check(RING, body, sign(RING, "command", body, time.time() - 120), max_age_s=None)


def test_the_first_key_signs_and_every_key_verifies():
    old, new = parse_keys(f"old:{SECRET}"), parse_keys(f"new:{'n' * 20},old:{SECRET}")
    body = {"x": 1}
    assert check(new, body, sign(old, "command", body, time.time())).kid == "old"
    assert check(new, body, sign(new, "command", body, time.time())).kid == "new"
    with pytest.raises(SignatureError, match="unknown_key"):
        check(old, body, sign(new, "command", body, time.time()))


@pytest.mark.parametrize(
    ("kind", "target", "args"),
    [
        ("drain", "p1", {"timeout_s": "90s"}),
        ("undrain", "p1", {}),
        ("failover", "chat", {}),
        ("shift", "chat", {"to": "s1", "steps": "5,25,100", "interval_s": "1m"}),
        ("status", "", {}),
        ("chaos_inject", "p1", {"kind": "error", "probability": 0.5, "duration_s": 60, "status": 503}),
        ("chaos_clear", "", {}),
    ],
)
def test_a_signed_command_stays_valid_through_the_wire_and_a_database_row(kind, target, args):
    moment = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)
    command = signed(build_command(kind, target, args, issued_at=moment, issued_by="ops@host"), RING)
    back = from_wire(command.to_wire())
    assert back == command
    check(RING, back.signed_body(), back.tag, max_age_s=None)
    # A database row gives the time back as a datetime and the arguments as stored JSON.
    row = build_command(
        kind,
        command.target,
        dict(command.args),
        command_id=command.command_id,
        issued_at=command.issued_at,
        issued_by=command.issued_by,
        tag=command.tag,
    )
    check(RING, row.signed_body(), row.tag, max_age_s=None)
    with pytest.raises(SignatureError, match="bad_signature"):
        check(RING, replace(back, issued_by="someone else").signed_body(), back.tag, max_age_s=None)


def test_the_cli_derives_the_channel_the_proxies_use_from_the_same_config(tmp_path, monkeypatch):
    """Before: both used the constant ``litellm_failover``, whatever fleet they belonged to."""
    import argparse

    from litellm_failover.cli._config_source import channel
    from litellm_failover.config_file import read_config_file
    from litellm_failover.fleet.naming import settings_channel
    from litellm_failover.settings import parse_settings

    for name in ("LITELLM_FAILOVER_CHANNEL", "LITELLM_FAILOVER_FLEET", "LITELLM_FAILOVER_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROD_DB", "postgresql://app:pw@db:5432/prod")
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list: []\n"
        "failover_settings:\n"
        "  database_url: os.environ/PROD_DB\n"
        "  redis_url: redis://127.0.0.1:6379/2\n"
    )
    block = read_config_file(str(config))["failover_settings"]
    proxy = parse_settings({**block, "database_url": "postgresql+asyncpg://app:pw@db:5432/prod"})
    cli = channel(argparse.Namespace(config=str(config), channel=None, fleet=None, url=None, redis_url=None))
    assert cli.value == settings_channel(proxy)
    assert cli.value.startswith("litellm_failover:db-")
    named = argparse.Namespace(config=str(config), channel=None, fleet="blue", url=None, redis_url=None)
    assert channel(named).value == "litellm_failover:blue"

"""Authentication tags for operator commands and fleet messages: HMAC-SHA256 with shared keys.

Anything that can publish on the fleet's Redis channel or insert into ``failover_commands`` could
otherwise drain, fail over, shift or inject chaos on every replica. So every command and every
fleet message carries a tag, ``v1:<key id>:<signed at, ms>:<nonce>:<hex HMAC-SHA256>``, over the
canonical JSON (sorted keys, no whitespace) of what it says, the key id, the time, the nonce and
its purpose (``command`` or ``fleet``: a tag made for one is never valid as the other).

Keys come from the environment, never from a config file or a table:
``LITELLM_FAILOVER_SIGNING_KEYS="kid1:secret1,kid2:secret2"``. The first key signs; every key
verifies. Rotation without downtime: add the new key second everywhere, then move it first
(replicas and CLI sign with it), then drop the old one.

This module only computes and checks tags; what a replica does with a rejection (count, event,
warning, refused result) is ``control.gate``'s.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

KEYS_ENV = "LITELLM_FAILOVER_SIGNING_KEYS"
VERSION = "v1"
MIN_SECRET_CHARS = 16
MAX_TAG = 255  # the command table's signature column

Purpose = Literal["command", "fleet"]
Reason = Literal["unsigned", "malformed_tag", "unknown_key", "bad_signature", "too_old", "future"]
REASONS: tuple[Reason, ...] = (
    "unsigned",
    "malformed_tag",
    "unknown_key",
    "bad_signature",
    "too_old",
    "future",
)
"""The closed set of reasons a message is rejected for (the metric's ``reason`` label)."""

_KID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_TAG = re.compile(r"^v1:([A-Za-z0-9_.-]{1,32}):([0-9]{1,16}):([0-9a-f]{16}):([0-9a-f]{64})$")


class SigningConfigError(ValueError):
    """The key list is not usable; the message names the variable and the key id, never a secret."""


class SignatureError(ValueError):
    """A message whose tag is missing or wrong; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Signing keys by id, in the order given: ``keys[0]`` signs, all verify."""

    keys: tuple[tuple[str, bytes], ...] = ()

    def __repr__(self) -> str:  # never the secrets
        return f"KeyRing(ids={[kid for kid, _ in self.keys]})"

    def __bool__(self) -> bool:
        return bool(self.keys)

    @property
    def ids(self) -> list[str]:
        return [kid for kid, _ in self.keys]

    def secret(self, kid: str) -> bytes | None:
        for known, secret in self.keys:
            if hmac.compare_digest(known, kid):
                return secret
        return None


def parse_keys(text: str | None, where: str = f"${KEYS_ENV}") -> KeyRing:
    """``"kid1:secret1,kid2:secret2"`` as a ``KeyRing``; empty or unset: no keys."""
    if not text or not text.strip():
        return KeyRing()
    keys: list[tuple[str, bytes]] = []
    for position, item in enumerate(text.split(","), start=1):
        kid, sep, secret = item.strip().partition(":")
        if not sep:
            raise SigningConfigError(f"{where}: entry {position} must be KEY_ID:SECRET (no ':' found)")
        if not _KID.match(kid):
            raise SigningConfigError(
                f"{where}: entry {position}: key id {kid[:40]!r} must be 1-32 of A-Z a-z 0-9 _ . -"
            )
        if len(secret) < MIN_SECRET_CHARS:
            raise SigningConfigError(
                f"{where}: key {kid!r}: the secret must be at least {MIN_SECRET_CHARS} characters "
                f"(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        if any(kid == known for known, _ in keys):
            raise SigningConfigError(f"{where}: key id {kid!r} is listed twice")
        keys.append((kid, secret.encode()))
    return KeyRing(tuple(keys))


def keys_from_env(environ: Mapping[str, str] | None = None) -> KeyRing:
    return parse_keys((os.environ if environ is None else environ).get(KEYS_ENV))


def canonical(value: Any) -> bytes:
    """The one byte form both ends hash: sorted keys, no whitespace, ASCII (a NaN is written as
    Python writes it: such a message is refused by the schema after its tag is checked)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(secret: bytes, purpose: Purpose, kid: str, ts_ms: int, nonce: str, body: Any) -> str:
    message = canonical({"purpose": purpose, "kid": kid, "ts": ts_ms, "nonce": nonce, "body": body})
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(ring: KeyRing, purpose: Purpose, body: Any, now_s: float) -> str:
    """A tag for ``body`` (JSON-able) with the ring's first key."""
    if not ring:
        raise SigningConfigError(f"no signing key: set ${KEYS_ENV}")
    kid, secret = ring.keys[0]
    ts_ms = int(now_s * 1000)
    nonce = secrets.token_hex(8)
    return f"{VERSION}:{kid}:{ts_ms}:{nonce}:{_mac(secret, purpose, kid, ts_ms, nonce, body)}"


@dataclass(frozen=True, slots=True)
class Verified:
    kid: str
    signed_at_s: float


def verify(
    ring: KeyRing,
    purpose: Purpose,
    body: Any,
    tag: Any,
    now_s: float,
    *,
    max_age_s: float | None,
    max_skew_s: float,
) -> Verified:
    """Check ``tag`` over ``body``; raise ``SignatureError`` naming why not. ``max_age_s`` None:
    no age limit (standing state restored at start is old by design; its MAC still counts)."""
    if tag is None or tag == "":
        raise SignatureError("unsigned", "no authentication tag")
    if not isinstance(tag, str) or len(tag) > MAX_TAG:
        raise SignatureError("malformed_tag", f"the tag must be a string of at most {MAX_TAG} characters")
    match = _TAG.match(tag)
    if match is None:
        raise SignatureError("malformed_tag", "the tag is not v1:KEY_ID:MILLISECONDS:NONCE:HMAC")
    kid, ts_text, nonce, given = match.groups()
    secret = ring.secret(kid)
    if secret is None:
        raise SignatureError("unknown_key", f"key id {kid!r} is not one of this replica's keys")
    try:
        expected = _mac(secret, purpose, kid, int(ts_text), nonce, body)
    except (TypeError, ValueError) as exc:  # a body that is not JSON-able cannot have been signed
        raise SignatureError("bad_signature", f"the message cannot be canonicalised ({exc})") from None
    if not hmac.compare_digest(expected, given):
        raise SignatureError("bad_signature", f"the HMAC does not match (key id {kid!r})")
    signed_at = int(ts_text) / 1000.0
    if signed_at - now_s > max_skew_s:
        raise SignatureError(
            "future", f"signed {signed_at - now_s:.0f}s in the future (max skew {max_skew_s:g}s)"
        )
    if max_age_s is not None and now_s - signed_at > max_age_s:
        raise SignatureError(
            "too_old", f"signed {now_s - signed_at:.0f}s ago, over the {max_age_s:g}s window"
        )
    return Verified(kid, signed_at)

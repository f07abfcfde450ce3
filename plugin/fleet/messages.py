"""The fleet's wire format: one JSON envelope per message, with a schema version and a kind.

Every message is ``{"v": 1, "kind", "origin", "node", "id", "sent_at", "payload": {...}, "sig"}``:
``sig`` is the authentication tag over all the rest (``litellm_failover.control.signing``; a
receiver checks it before it reads any field, see ``decode``'s ``check``), ``origin``
is the sending replica's ``instance_id`` (what events and reasons show), ``node`` a random token
per running fleet link (how a replica recognises its own messages even when two replicas were
given the same ``instance_id``), ``id`` the message's own id (how a second copy is recognised).
The envelope is the same for every kind, so the transport (pub/sub and state keys) never needs to
know what it carries; the ``payload`` is validated against the kind's model on receipt.

A message is also the value of a state key (for replicas that start later): ``subject`` names the
key, and kinds that describe the same thing share a subject (an ejection and a recovery of one
deployment both write ``health:<id>``, so the key always holds the latest word on it).

Adding a kind takes a few lines: a payload model, a ``KindSpec`` in ``KINDS``, and an
``on_<kind>`` method on the applier (see ``litellm_failover.fleet.apply``).

A receiver refuses, with ``MessageError``, anything that is not this schema version: replicas of
different versions sharing a channel ignore each other (and count it) rather than misread.

Anything that can reach the Redis channel can send anything, so every field is checked as hostile
(``litellm_failover.untrusted``): numbers finite and bounded, strings short and free of control
characters. A message with one bad field is refused whole (reason ``malformed``), never half
applied. Bounds that depend on this replica's settings (an ejection's length) are the applier's.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError

from litellm_failover.untrusted import LATEST_EPOCH_S, MAX_REASON, bounded_number, bounded_text

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024  # a message is a few hundred bytes; anything this big is not ours


def _text(max_len: int, *, allow_empty: bool) -> AfterValidator:
    return AfterValidator(
        lambda value: bounded_text(value, "value", max_len=max_len, allow_empty=allow_empty)
    )


Name = Annotated[str, _text(255, allow_empty=False)]
"""An identifier (a group, a deployment, an instance): 1 to 255 characters, no control characters."""
Text = Annotated[str, _text(255, allow_empty=True)]
Reason = Annotated[str, _text(MAX_REASON, allow_empty=True)]
# Strict: a JSON ``true`` or ``"30"`` is not a number, however pydantic would coerce it.
Seconds = Annotated[
    float, Strict(), AfterValidator(lambda v: bounded_number(v, "value", low=0.0, high=LATEST_EPOCH_S))
]
"""A duration; the applier bounds it further by this replica's settings."""
Epoch = Annotated[
    float, Strict(), AfterValidator(lambda v: bounded_number(v, "value", low=0.0, high=LATEST_EPOCH_S))
]
"""A wall-clock time in epoch seconds that a ``datetime`` can hold."""


class MessageError(ValueError):
    """A message that is not a valid message of this schema version; ``reason`` is a counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Payload(BaseModel):
    # Unknown fields are ignored: a replica of the same schema version may add an optional field.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Ejection(Payload):
    """A replica ejected a deployment; ``remaining_s`` was its ejection time left when sent."""

    model_group: Name
    deployment_id: Name
    reason: Reason = ""
    remaining_s: Seconds = 0.0


class Recovery(Payload):
    """A replica brought a deployment back (its probes pass again, or its timer ran out)."""

    model_group: Name
    deployment_id: Name
    reason: Reason = ""


class Pin(Payload):
    """A session was pinned (or re-pinned) to a deployment of a model group."""

    # A caller-scoped pin key (``sessions.identity.pin_key``): a caller scope, "/", a session id.
    session_id: Annotated[str, _text(320, allow_empty=False)]
    model_group: Name
    deployment_id: Name


class OperatorCommand(Payload):
    """An operator command for every replica (drain, shift, ...): ``litellm_failover.control``
    validates ``action``, ``target`` and ``args`` on receipt and acknowledges it per replica.
    ``issued_at`` is the Redis server's clock when it was sent, so replicas compare it with a
    start time read from the same clock."""

    command_id: Annotated[str, _text(64, allow_empty=False)]
    action: Annotated[str, _text(32, allow_empty=False)]
    target: Text = ""
    args: dict[str, Any] = Field(default_factory=dict)
    issued_at: Epoch
    issued_by: Text = ""
    tag: Text = ""  # the command's own tag (``control.signing``), kept with it in the standing state


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One message kind: its payload model and the state key it is kept under (None: not kept)."""

    kind: str
    model: type[Payload]
    subject: Callable[[Any], str | None]


def _health_subject(payload: Ejection | Recovery) -> str:
    return f"health:{payload.deployment_id}"


KINDS: dict[str, KindSpec] = {
    spec.kind: spec
    for spec in (
        KindSpec("eject", Ejection, _health_subject),
        KindSpec("recover", Recovery, _health_subject),
        KindSpec("pin", Pin, lambda p: f"pin:{p.model_group}:{p.session_id}"),
        # A key per command: a replica that reconnects reads the commands it missed meanwhile.
        KindSpec("command", OperatorCommand, lambda p: f"command:{p.command_id}"),
    )
}


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: str
    origin: str  # the instance_id of the replica that decided it
    payload: Payload
    node: str  # the sending fleet link's random token
    sent_at: float = field(default_factory=time.time)  # wall clock: comparable across hosts
    msg_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    version: int = SCHEMA_VERSION

    @property
    def subject(self) -> str | None:
        return KINDS[self.kind].subject(self.payload)

    def age_s(self, now: float | None = None) -> float:
        """Seconds since it was sent, never negative (hosts' clocks may differ slightly)."""
        return max(0.0, (time.time() if now is None else now) - self.sent_at)


def make(kind: str, origin: str, payload: Payload, *, node: str) -> Envelope:
    spec = KINDS.get(kind)
    if spec is None:
        raise ValueError(f"unknown fleet message kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    if not isinstance(payload, spec.model):
        raise TypeError(f"a {kind!r} message carries a {spec.model.__name__}, not {type(payload).__name__}")
    return Envelope(kind=kind, origin=origin, payload=payload, node=node)


def body(envelope: Envelope) -> dict[str, Any]:
    """The envelope as the JSON object that is sent, without its tag: what the tag covers."""
    return {
        "v": envelope.version,
        "kind": envelope.kind,
        "origin": envelope.origin,
        "node": envelope.node,
        "id": envelope.msg_id,
        "sent_at": envelope.sent_at,
        "payload": envelope.payload.model_dump(mode="json"),
    }


def encode(envelope: Envelope, tag: str = "") -> str:
    """The message as sent; ``tag`` (``control.signing``) goes in ``sig`` when there is one."""
    data = body(envelope)
    if tag:
        data["sig"] = tag
    return json.dumps(data, separators=(",", ":"))


Check = Callable[[dict[str, Any], Any], None]
"""``check(body, tag)`` for ``decode``: raises ``MessageError`` to refuse a message unread."""


class _Wire(BaseModel):
    """The envelope as it arrives, before its payload is read by its kind."""

    model_config = ConfigDict(extra="ignore", strict=True)

    kind: Name
    origin: Name
    node: Name
    id: Name
    sent_at: Epoch
    payload: dict[str, Any]


def decode(raw: bytes | str, check: Check | None = None) -> Envelope:
    """Parse and validate one message; raise ``MessageError`` (reason: malformed, version, kind,
    or the reason ``check`` gives). ``check`` sees the message without its ``sig`` and the tag,
    before the payload is read: an unauthenticated message is refused before any of its fields
    are looked at."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageError("malformed", f"{len(raw)} bytes, over the {MAX_MESSAGE_BYTES} limit")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError("malformed", f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise MessageError("malformed", f"a JSON {type(data).__name__}, not an object")
    version = data.get("v")
    if version != SCHEMA_VERSION:
        raise MessageError("version", f"schema version {version!r}, this replica reads {SCHEMA_VERSION}")
    tag = data.pop("sig", None)
    if check is not None:
        check(data, tag)
    try:
        wire = _Wire.model_validate(data)
    except ValidationError as exc:
        raise MessageError("malformed", _first_error(exc)) from None
    spec = KINDS.get(wire.kind)
    if spec is None:
        raise MessageError("kind", f"unknown kind {wire.kind[:40]!r}")
    try:
        payload = spec.model.model_validate(wire.payload)
    except ValidationError as exc:
        raise MessageError("malformed", f"{wire.kind} payload: {_first_error(exc)}") from None
    return Envelope(
        kind=wire.kind,
        origin=wire.origin,
        payload=payload,
        node=wire.node,
        sent_at=wire.sent_at,
        msg_id=wire.id,
    )


def _first_error(exc: ValidationError) -> str:
    item = exc.errors()[0]
    where = ".".join(str(p) for p in item["loc"]) or "message"
    return f"{where}: {item['msg']}"

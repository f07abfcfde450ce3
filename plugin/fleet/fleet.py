"""``Fleet``: what one replica tells the others, and what it does with what they tell it.

Outgoing: ``publish(kind, payload)`` wraps a decision in an envelope and queues it on the Redis
link (never blocking). Incoming: each raw message is decoded and then, in this order, discarded
if it does not parse or is of another schema version (warned about, rate-limited), if it is this
replica's own (pub/sub echoes every message to its sender, and the state keys hold our own past
messages), or if it was already seen (a message can arrive by pub/sub and from a key); otherwise
it is handed to the applier's ``on_<kind>`` method. Every outcome is counted for ``status()``.

"Our own" is decided by the link's random ``node`` token, not by ``instance_id``: a config file
copied to every replica with a fixed ``instance_id`` must not make replicas ignore each other.
That mistake is warned about (it makes events and reasons ambiguous) but messages still apply.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from litellm_failover.control.gate import AuthGate
from litellm_failover.control.signing import REASONS
from litellm_failover.fleet.messages import (
    Envelope,
    MessageError,
    Payload,
    Pin,
    body,
    decode,
    encode,
    make,
)
from litellm_failover.settings import FleetSettings
from litellm_failover.wakeups import RateLimit

if TYPE_CHECKING:
    from litellm_failover.fleet.sync import RedisLink

logger = logging.getLogger("litellm_failover.fleet")

_SEEN_IDS = 20_000  # message ids remembered to discard the second copy of a message
_WARN_INTERVAL_S = 10.0
_SAME_ID_WARN_INTERVAL_S = 300.0


class FleetApplier(Protocol):
    """What a replica does with each kind of message from another; True if it changed anything.

    A kind without a method here is counted as ``unhandled`` and otherwise ignored, so a replica
    can receive kinds it does not act on yet.
    """

    def on_eject(self, envelope: Envelope) -> bool: ...

    def on_recover(self, envelope: Envelope) -> bool: ...

    def on_pin(self, envelope: Envelope) -> bool: ...

    def on_command(self, envelope: Envelope) -> bool: ...


class Fleet:
    def __init__(
        self,
        redis_url: str,
        settings: FleetSettings,
        instance_id: str,
        applier: FleetApplier,
        gate: AuthGate,
    ) -> None:
        """``settings.channel`` must be resolved (``fleet.naming``); ``gate`` signs what this
        replica sends and judges what it receives (off: the link does not start)."""
        self.instance_id = instance_id
        self.applier = applier
        self.gate = gate
        # Fleet messages come back from state keys for up to their TTL: older is a replay.
        self._max_age_s = settings.key_ttl_s + gate.max_skew_s
        # CLIENT SETNAME refuses spaces; the name only helps an operator reading CLIENT LIST.
        client_name = "litellm-failover:" + re.sub(r"[^A-Za-z0-9_.:-]", "_", instance_id)[:64]
        # redis-py is the ``redis`` extra: imported only by a fleet, which has a ``redis_url``.
        from litellm_failover.fleet.sync import RedisLink

        self.link: RedisLink = RedisLink(redis_url, settings, self._on_raw, client_name=client_name)
        self.node = uuid.uuid4().hex
        self.applied = 0
        self.ignored: Counter[str] = Counter()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._warn = RateLimit(_WARN_INTERVAL_S)
        self._warn_same_id = RateLimit(_SAME_ID_WARN_INTERVAL_S)

    # -- out ------------------------------------------------------------------------------

    def publish(self, kind: str, payload: Payload) -> bool:
        """Share a decision with the other replicas; False when the queue had to drop one."""
        if not self.gate.enabled:
            return False  # the link is off: nothing to send it with
        envelope = make(kind, self.instance_id, payload, node=self.node)
        tag = self.gate.tag("fleet", body(envelope))
        return self.link.enqueue(self.link.key(envelope.subject), encode(envelope, tag))

    def publish_pin(self, session_id: str, model_group: str, deployment_id: str) -> bool:
        """Share a session pin. Call it for pins this replica decided, never for ones it was told
        about through ``on_pin`` (that would echo every pin around the fleet). False, and nothing
        sent, for a pin no replica could accept (an empty or over-long session id)."""
        try:
            pin = Pin(session_id=session_id, model_group=model_group, deployment_id=deployment_id)
        except ValidationError:
            return False  # the hot path calls this: a bad id must not raise into a request
        return self.publish("pin", pin)

    # -- in -------------------------------------------------------------------------------

    def _on_raw(self, raw: bytes | str, source: str) -> None:
        try:
            envelope = decode(raw, self._authenticate)
        except MessageError as exc:
            self.ignored[exc.reason] += 1
            if exc.reason not in REASONS:  # the gate has logged its own rejections already
                self._warn_invalid(exc, source)
            return
        self.receive(envelope)

    def _authenticate(self, data: dict[str, Any], tag: Any) -> None:
        what = f"a fleet message ({str(data.get('kind'))[:32]!r})"
        error = self.gate.check("fleet", "redis", data, tag, max_age_s=self._max_age_s, what=what)
        if error is not None:
            raise MessageError(error.reason, error.detail)

    def receive(self, envelope: Envelope) -> bool:
        """Apply one decoded message unless it is ours or already seen; True if applied."""
        if envelope.node == self.node:
            self.ignored["own"] += 1
            return False
        if envelope.origin == self.instance_id and self._warn_same_id.due() is not None:
            logger.warning(
                "fleet: another replica also calls itself %r: give each replica its own "
                "failover_settings.instance_id (or leave it unset for a generated one)",
                self.instance_id,
            )
        if envelope.msg_id in self._seen:
            self.ignored["duplicate"] += 1
            return False
        self._seen[envelope.msg_id] = None
        if len(self._seen) > _SEEN_IDS:
            self._seen.popitem(last=False)
        handler = getattr(self.applier, f"on_{envelope.kind}", None)
        if handler is None:
            self.ignored["unhandled"] += 1
            return False
        try:
            applied = bool(handler(envelope))
        except MessageError as exc:  # valid JSON of our schema, but out of this replica's bounds
            self.ignored[exc.reason] += 1
            self._warn_invalid(exc, "applier")
            return False
        except Exception:
            self.ignored["error"] += 1
            logger.exception("fleet: applying a %s message from %s failed", envelope.kind, envelope.origin)
            return False
        if applied:
            self.applied += 1
        else:
            self.ignored["not_applicable"] += 1  # unknown deployment, or local state stands
        return applied

    def _warn_invalid(self, exc: MessageError, source: str) -> None:
        held = self._warn.due()
        if held is None:
            return
        logger.warning(
            "fleet: ignoring a message from %s on channel %r: %s%s",
            {"keys": "a state key", "applier": "a replica"}.get(source, "pub/sub"),
            self.link.channel,
            exc,
            f" ({held} more invalid messages not logged)" if held else "",
        )

    # -- lifecycle and inspection ---------------------------------------------------------

    async def start(self) -> None:
        self.gate.announce(f"fleet link (Redis channel {self.link.channel!r})")
        if self.gate.enabled:
            await self.link.start()

    async def stop(self) -> None:
        await self.link.stop()

    def status(self) -> dict[str, Any]:
        stats = self.link.stats()
        return {
            "enabled": self.gate.enabled,
            "authentication": self.gate.mode,
            "connected": stats.pop("connected"),
            "last_error": stats.pop("last_error"),
            "published": stats.pop("published"),
            "applied": self.applied,
            "ignored": sum(self.ignored.values()),
            "ignored_by_reason": dict(self.ignored),
            **stats,
        }

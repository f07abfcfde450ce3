"""``AuthGate``: one replica's policy for authenticated commands and fleet messages.

Built once per plugin from ``$LITELLM_FAILOVER_SIGNING_KEYS`` (``signing``) and the settings, and
shared by the fleet link and the control plane. Its ``mode``:

- ``signed``: keys are set. What this replica sends is tagged; what it receives must carry a
  valid tag, or it is rejected and never acted on.
- ``insecure``: no keys (or keys, but ``control.insecure_unsigned: true``) and the explicit opt-in
  for local drills: untagged messages are accepted; a present tag is still checked when keys are
  set. Loudly warned about at start and shown in ``status()``.
- ``off``: no keys and no opt-in. The operator channel and the fleet link stay off (so said at
  start and in ``status()``): an unauthenticated channel that can drain every replica is worse
  than none.

A rejection is counted by transport and reason (a closed set: ``signing.REASONS``; the metric
``litellm_failover_messages_rejected_total``), logged as a warning and recorded as a
``message_rejected`` event, both rate-limited so a flood cannot fill the log or the events table:
at most one line per interval and one event per transport and reason per interval, each saying
how many were held back. Rejections never raise into the loop that received them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from litellm_failover.control.signing import (
    KEYS_ENV,
    KeyRing,
    Purpose,
    SignatureError,
    SigningConfigError,
    keys_from_env,
    sign,
    verify,
)
from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.settings import FailoverConfigError
from litellm_failover.wakeups import RateLimit

logger = logging.getLogger("litellm_failover.control")

Mode = Literal["signed", "insecure", "off"]
Transport = Literal["redis", "database", "standing"]

_WARN_INTERVAL_S = 10.0
_EVENT_INTERVAL_S = 60.0

OFF_MESSAGE = (
    f"no signing key: set ${KEYS_ENV}=KEY_ID:SECRET (the same on every replica and the CLI), or "
    "control.insecure_unsigned: true for a local drill"
)


class AuthGate:
    def __init__(
        self,
        ring: KeyRing,
        *,
        insecure: bool = False,
        max_skew_s: float = 60.0,
        instance_id: str = "",
        submit: Callable[[FailoverEvent], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ring = ring
        self.insecure = insecure
        self.max_skew_s = max_skew_s
        self.instance_id = instance_id
        self.submit = submit
        self.clock = clock
        self.rejected: Counter[tuple[str, str]] = Counter()
        self.accepted_unsigned = 0
        self._warn = RateLimit(_WARN_INTERVAL_S)
        self._events: dict[tuple[str, str], RateLimit] = {}

    @classmethod
    def from_settings(cls, settings: Any, instance_id: str = "") -> AuthGate:
        """From the environment's keys and ``settings.control`` (a ``FailoverSettings``). A
        malformed key list raises ``FailoverConfigError``: a replica must not start believing it
        is protected when it is not."""
        control = settings.control
        try:
            ring = keys_from_env()
        except SigningConfigError as exc:
            raise FailoverConfigError(f"invalid configuration: {exc}") from None
        return cls(
            ring,
            insecure=control.insecure_unsigned,
            max_skew_s=control.max_clock_skew_s,
            instance_id=instance_id,
        )

    @property
    def mode(self) -> Mode:
        if self.insecure:
            return "insecure"
        return "signed" if self.ring else "off"

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def announce(self, what: str) -> None:
        """The start-up line: what protects ``what`` (the operator channel, the fleet link)."""
        if self.mode == "off":
            logger.warning("%s is OFF: %s", what, OFF_MESSAGE)
        elif self.mode == "insecure":
            logger.warning(
                "%s accepts UNSIGNED messages (control.insecure_unsigned: true): anything that can write to "
                "its Redis channel or command table can drain, fail over or inject faults; for local drills "
                "only",
                what,
            )

    # -- sending --------------------------------------------------------------------------

    def tag(self, purpose: Purpose, body: Any) -> str:
        """A tag for ``body``, or "" when there is no key (insecure mode sends untagged)."""
        return sign(self.ring, purpose, body, self.clock()) if self.ring else ""

    # -- receiving ------------------------------------------------------------------------

    def check(
        self,
        purpose: Purpose,
        transport: Transport,
        body: Any,
        tag: Any,
        *,
        max_age_s: float | None,
        what: str = "",
    ) -> SignatureError | None:
        """None when ``body`` may be acted on; else the rejection, already counted, logged and
        recorded. Never raises."""
        if self.mode == "off":
            error = SignatureError("unsigned", OFF_MESSAGE)
        elif self.insecure and (not tag or not self.ring):
            self.accepted_unsigned += 1
            return None
        else:
            try:
                verify(
                    self.ring,
                    purpose,
                    body,
                    tag,
                    self.clock(),
                    max_age_s=max_age_s,
                    max_skew_s=self.max_skew_s,
                )
                return None
            except SignatureError as exc:
                error = exc
        self.reject(transport, error, what)
        return error

    def reject(self, transport: Transport, error: SignatureError, what: str = "") -> None:
        self.rejected[(transport, error.reason)] += 1
        if (held := self._warn.due()) is not None:
            logger.warning(
                "control: rejected %s from %s, not acted on: %s%s",
                what or "a message",
                transport,
                error,
                f" ({held} more rejections not logged)" if held else "",
            )
        limit = self._events.setdefault((transport, error.reason), RateLimit(_EVENT_INTERVAL_S))
        if self.submit is None or (held := limit.due()) is None:
            return
        try:
            self.submit(
                FailoverEvent(
                    event_type=EventType.MESSAGE_REJECTED.value,
                    model_group="",
                    reason=f"rejected {what or 'a message'} from {transport}: {error}"[:1000],
                    instance_id=self.instance_id,
                    details={"transport": transport, "reason": error.reason, "not_recorded_before": held},
                )
            )
        except Exception:  # the audit trail must not end the receiving loop
            logger.exception("control: recording a rejection failed")

    # -- inspection -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        by: dict[str, dict[str, int]] = {}
        for (transport, reason), count in sorted(self.rejected.items()):
            by.setdefault(transport, {})[reason] = count
        status: dict[str, Any] = {
            "mode": self.mode,
            "key_ids": self.ring.ids,
            "rejected": sum(self.rejected.values()),
            "rejected_by": by,
            "accepted_unsigned": self.accepted_unsigned,
        }
        if self.mode == "off":
            status["off_reason"] = OFF_MESSAGE
        return status


__all__ = ["AuthGate", "Mode", "SigningConfigError", "Transport"]

"""Between the fleet and the failover core: remote decisions in, local decisions out.

In: ``CoreApplier`` implements ``FleetApplier``, one ``on_<kind>`` method per message kind. A
remote ejection marks the deployment unhealthy here with the remote ejection's remaining time;
after it, this replica's own half-open probes decide recovery, as for a local ejection. A remote
recovery only lifts a remote ejection, never a local one, and never against a failing local probe.

Out: ``share_decision`` listens to the core's events and publishes this replica's own ejections
and its probe-confirmed recoveries. Changes applied from the fleet carry ``source: "fleet"`` and
are never published again, which is what keeps a message from echoing around the fleet forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from litellm_failover.control.gate import AuthGate
from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.fleet.fleet import Fleet
from litellm_failover.fleet.messages import Ejection, Envelope, MessageError, Pin, Recovery
from litellm_failover.fleet.naming import settings_channel
from litellm_failover.health import HealthState
from litellm_failover.untrusted import UntrustedError, bounded_number

if TYPE_CHECKING:
    from litellm_failover.core import FailoverCore
    from litellm_failover.settings import FailoverSettings

FLEET_SOURCE = "fleet"

PinListener = Callable[[str, str, str], None]  # (session_id, model_group, deployment_id)
CommandListener = Callable[[Envelope], bool]  # the control plane's (litellm_failover.control)


class CoreApplier:
    """Applies health messages to a ``FailoverCore`` and hands pins to ``pin_listener``.

    The replica's ``FleetApplier`` (the protocol lives with ``Fleet``, which dispatches to it).

    ``pin_listener(session_id, model_group, deployment_id)`` is for the session pin store; it
    must store the pin without publishing it again.
    """

    def __init__(
        self,
        core: FailoverCore,
        pin_listener: PinListener | None = None,
        command_listener: CommandListener | None = None,
    ) -> None:
        self.core = core
        self.pin_listener = pin_listener
        self.command_listener = command_listener

    def on_eject(self, envelope: Envelope) -> bool:
        """Raises ``MessageError`` (out_of_bounds) for an ejection longer than this replica's own
        ``outlier.max_ejection_s``: no replica following the same settings sends one, and taking
        it would let one message keep a deployment out on every replica for as long as it says."""
        ejection = cast(Ejection, envelope.payload)
        record = self.core.health.get(ejection.deployment_id)
        limit = (record.outlier.settings if record else self.core.settings.outlier).max_ejection_s
        try:
            remaining_s = bounded_number(ejection.remaining_s, "remaining_s", low=0.0, high=limit)
        except UntrustedError as exc:
            raise MessageError("out_of_bounds", f"eject payload: {exc} (outlier.max_ejection_s)") from None
        return self.core.apply_remote_ejection(
            ejection.deployment_id,
            origin=envelope.origin,
            reason=ejection.reason,
            remaining_s=max(0.0, remaining_s - envelope.age_s()),
        )

    def on_recover(self, envelope: Envelope) -> bool:
        recovery = cast(Recovery, envelope.payload)
        return self.core.apply_remote_recovery(
            recovery.deployment_id, origin=envelope.origin, reason=recovery.reason
        )

    def on_pin(self, envelope: Envelope) -> bool:
        if self.pin_listener is None:
            return False
        pin = cast(Pin, envelope.payload)
        self.pin_listener(pin.session_id, pin.model_group, pin.deployment_id)
        return True

    def on_command(self, envelope: Envelope) -> bool:
        """Operator commands belong to the control plane, which sets ``command_listener``."""
        if self.command_listener is None:
            return False
        return self.command_listener(envelope)


def share_decision(fleet: Fleet, core: FailoverCore, event: FailoverEvent) -> None:
    """Publish this replica's own ejections and recoveries (a core event listener)."""
    if event.event_type != EventType.STATE_CHANGE.value or event.deployment_id is None:
        return
    details = event.details
    if details.get("source") == FLEET_SOURCE:
        return  # learned from the fleet: publishing it again would echo it forever
    to_state, from_state = details.get("to_state"), details.get("from_state")
    if to_state == HealthState.UNHEALTHY.value:
        fleet.publish(
            "eject",
            Ejection(
                model_group=event.model_group,
                deployment_id=event.deployment_id,
                reason=event.reason,
                remaining_s=_remaining_s(core, event.deployment_id),
            ),
        )
    elif to_state in _ROUTABLE and from_state in _OUT and details.get("source") == "probe":
        # Only probes are evidence of a recovery. A timer recovery (a deployment nobody probes)
        # happens on every replica by its own timer, so it is not news to anyone.
        fleet.publish(
            "recover",
            Recovery(model_group=event.model_group, deployment_id=event.deployment_id, reason=event.reason),
        )


def _remaining_s(core: FailoverCore, deployment_id: str) -> float:
    """The ejection time left; zero for a probe ejection (no timer: probes decide its end)."""
    view = core.snapshot.deployments.get(deployment_id)
    return 0.0 if view is None else max(0.0, view.ejected_until - core.clock())


_ROUTABLE = frozenset(s.value for s in HealthState if s.routable)
_OUT = frozenset({HealthState.UNHEALTHY.value, HealthState.RECOVERING.value})


def fleet_for(core: FailoverCore, settings: FailoverSettings) -> Fleet:
    """The fleet of a plugin whose ``settings.redis_url`` is set, wired to its core both ways."""
    if not settings.redis_url:
        raise ValueError("fleet_for needs failover_settings.redis_url")
    channel = settings_channel(settings)
    fleet_settings = settings.fleet.model_copy(update={"channel": channel})
    gate = AuthGate.from_settings(settings, core.instance_id)
    fleet = Fleet(settings.redis_url, fleet_settings, core.instance_id, CoreApplier(core), gate)
    core.listeners.append(lambda event: share_decision(fleet, core, event))
    return fleet

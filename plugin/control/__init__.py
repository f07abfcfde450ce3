"""Operator controls on a running fleet: drain, undrain, failover, failback, shift, live status.

The CLI (``litellm-failover drain ...``) builds a ``Command`` (``commands``: the one set of rules
both ends check), sends it through Redis when it is given a Redis URL (``redis_channel``: every
replica's fleet link receives it) or else through the database (``db_channel``: replicas poll the
``failover_commands`` table), and waits for each replica's answer (``client``). In each replica a
``ControlPlane`` (``plane``) receives commands both ways, applies each once to the plugin
(``dispatch``: the ``OperatorTarget`` protocol) and answers the way it came.

Every command is signed by the CLI (``signing``: HMAC-SHA256 with a key from
``$LITELLM_FAILOVER_SIGNING_KEYS``) and checked by each replica's ``AuthGate`` (``gate``) before it
is applied; without a key the operator channel is off.
"""

from __future__ import annotations

from litellm_failover.control.client import Delivery, send_via_database, send_via_redis
from litellm_failover.control.commands import Command, CommandError, build_command, parse_steps
from litellm_failover.control.dispatch import CommandResult, OperatorTarget, apply_command
from litellm_failover.control.plane import ControlPlane

__all__ = [
    "Command",
    "CommandError",
    "CommandResult",
    "ControlPlane",
    "Delivery",
    "OperatorTarget",
    "apply_command",
    "build_command",
    "parse_steps",
    "send_via_database",
    "send_via_redis",
]

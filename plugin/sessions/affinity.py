"""Where a session's request should go: the affinity rule, as pure functions of the table.

A pin is honoured only while its deployment is in the group's serving set (the active tier's
routable members, ``RoutingTable.serving``), has weight, was offered by LiteLLM and has not
failed this request. A session is never kept on an ejected node, nor on a standby once its
primary tier serves again: affinity must not defeat failback. A Responses API request goes to
the creator of its ``previous_response_id`` whenever that deployment is routable at all (any
tier), because anywhere else its conversation must first be rebuilt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litellm_failover.routing_table import RoutingTable
from litellm_failover.snapshot import DeploymentView


def creator_usable(
    deployments: Mapping[str, DeploymentView],
    creator: str,
    group: str,
    table: RoutingTable,
    exclude: frozenset[str],
    offered: Mapping[str, Any] | None,
) -> bool:
    """Whether a Responses request can go to the deployment that holds its conversation."""
    record = deployments.get(creator)
    if record is None or record.spec.group != group or creator in exclude:
        return False
    if offered is not None and creator not in offered:
        return False
    if creator in table.draining:
        return False  # drained: no new requests, as if down (its conversation is rebuilt)
    return record.state.routable or table.panic


def pin_problem(
    deployments: Mapping[str, DeploymentView],
    pinned: str,
    table: RoutingTable,
    exclude: frozenset[str],
    offered: Mapping[str, Any] | None,
) -> str | None:
    """Why the pin can't be honoured for this attempt, or None if it can."""
    if pinned in exclude:
        return f"{pinned} failed this request"
    if pinned not in table.serving:
        record = deployments.get(pinned)
        if record is not None and not record.state.routable:
            return f"{pinned} is {record.state.value}"
        return f"{pinned} is not in the serving tier (tier {table.active_tier} serves)"
    if offered is not None and pinned not in offered:
        return f"LiteLLM did not offer {pinned}"
    if table.weights.get(pinned, 0.0) <= 0.0 and any(table.weights.get(i, 0.0) > 0 for i in table.serving):
        return f"{pinned} has zero weight"
    return None

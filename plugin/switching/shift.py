"""What a canary shift's ``to`` names: one deployment, or a tier of the group.

``to`` is matched, in this order: a deployment id of the group (``model_info.id``); ``tier:N``
(or ``tierN``); a bare number ``N`` when the group has a tier N. Deployment ids win, so a
deployment literally named ``2`` is still reachable; ``tier:2`` is never ambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from litellm_failover.deployments import DeploymentSpec
from litellm_failover.switching.errors import OperatorError

_TIER = re.compile(r"^\s*(?:tier\s*:?\s*)?(\d+)\s*$", re.IGNORECASE)


def resolve_target(
    group: str, to: object, members: Sequence[str], specs: Mapping[str, DeploymentSpec]
) -> tuple[frozenset[str], str]:
    """(deployment ids, label) of the shift target, or ``OperatorError`` naming what is known."""
    if not isinstance(to, str) or not to.strip():
        raise OperatorError(f"shift target must be a deployment id or a tier such as 'tier:2' (got {to!r})")
    text = to.strip()
    if text in members:
        return frozenset({text}), text
    match = _TIER.match(text)
    tiers = sorted({specs[i].tier for i in members})
    if match is not None:
        tier = int(match.group(1))
        ids = frozenset(i for i in members if specs[i].tier == tier)
        if ids:
            return ids, f"tier:{tier}"
        if text.lower().startswith("tier"):
            raise OperatorError(f"group {group!r} has no tier {tier} (tiers: {', '.join(map(str, tiers))})")
    raise OperatorError(
        f"unknown shift target {text!r} in group {group!r} "
        f"(deployments: {', '.join(members)}; tiers: {', '.join(f'tier:{t}' for t in tiers)})"
    )

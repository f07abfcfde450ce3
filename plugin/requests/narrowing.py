"""What LiteLLM narrows a pick to after the filters have answered, so the pick can honour it.

LiteLLM's Router asks the callbacks' ``async_filter_deployments`` first and only then narrows
their answer by hints it carries in the request's kwargs (``async_get_healthy_deployments`` in
1.108.7):

- ``_target_order``: an order-based fallback keeps only the deployments of that order. A group
  whose deployments have several ``litellm_params.order`` values falls back tier by tier after
  any failure of the first, a client's 400 included, with the whole group offered to the filter.
- ``_excluded_deployment_ids``: weighted failover drops the deployments it already tried.
- ``_retry_skipped_deployment_ids``: a retry drops the deployments that refused the request with
  a status it does not retry (a 401 or 403, or any status under a retry policy), unless that
  leaves nothing: a preference, not a rule.

A filter that answers with one deployment the narrowing then removes leaves LiteLLM nothing: it
answers "No deployments available" instead of trying the tier it meant to, and the attempt the
pick counted in flight never runs. So the pick takes the first two as rules and the third as a
preference (``RequestPath.route``). The values are read as LiteLLM reads them (an order compared
as it is, ids as a collection of strings); anything else is ignored, as it narrows nothing there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_ID_COLLECTIONS = (list, tuple, set, frozenset)


def _ids(value: object) -> frozenset[str]:
    if not isinstance(value, _ID_COLLECTIONS):
        return frozenset()
    return frozenset(item for item in value if isinstance(item, str))


def deployment_order(deployment: Mapping[str, Any]) -> object:
    """A deployment's order as LiteLLM reads it: ``litellm_params.order``, else ``model_info.order``."""
    params = deployment.get("litellm_params") or {}
    order = params.get("order") if isinstance(params, Mapping) else None
    if order is None:
        info = deployment.get("model_info") or {}
        order = info.get("order") if isinstance(info, Mapping) else None
    return order


@dataclass(frozen=True, slots=True)
class Narrowing:
    order: object  # None: any order
    excluded: frozenset[str]
    skipped: frozenset[str]

    def keeps(self, deployment_id: str, deployment: Mapping[str, Any]) -> bool:
        """Whether LiteLLM keeps this deployment after the filters (the rules, not the preference)."""
        if deployment_id in self.excluded:
            return False
        return self.order is None or deployment_order(deployment) == self.order

    def describe(self) -> str:
        parts = []
        if self.order is not None:
            parts.append(f"order {self.order!r}")
        if self.excluded:
            parts.append(f"excluding {sorted(self.excluded)}")
        if self.skipped:
            parts.append(f"skipping {sorted(self.skipped)} if it can")
        return ", ".join(parts)


def narrowing(request_kwargs: Mapping[str, Any]) -> Narrowing | None:
    """LiteLLM's narrowing of this pick, or None when it narrows nothing (the usual case: three
    dict lookups)."""
    order = request_kwargs.get("_target_order")
    excluded = request_kwargs.get("_excluded_deployment_ids")
    skipped = request_kwargs.get("_retry_skipped_deployment_ids")
    if order is None and not excluded and not skipped:
        return None
    found = Narrowing(order, _ids(excluded), _ids(skipped))
    if found.order is None and not found.excluded and not found.skipped:
        return None
    return found

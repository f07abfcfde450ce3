"""Which deployments offered to the routing hook are this plugin's to route.

LiteLLM hands every Router's picks to every callback, so a plugin routes only picks among its own
Router's deployments. 1.108.7 passes the Router's own deployment dicts: identity decides, at no
cost, and two Routers never mix. 1.110's Rust core passes fresh copies with nothing that names the
Router, so an offer can only be matched by value; where two plugins in one process read equal
deployments under one id (a plugin replaced by a new one in the same process, two Routers over the
same nodes), the one attached last routes them, and one that is released hands them back.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from typing import Any

# Per deployment id, the matchers that read it, oldest first (weak: a dropped plugin lets go).
_claims: dict[str, list[weakref.ref[OfferMatcher]]] = {}


class OfferMatcher:
    def __init__(self, deployments: Mapping[str, dict]) -> None:
        self._deployments = deployments  # the plugin's own, live mapping: ids added later count
        self.claim(deployments)

    def claim(self, ids: Iterable[str]) -> None:
        """Route offers of these ids (by value) from now on, ahead of any earlier claimant."""
        me = weakref.ref(self)
        for deployment_id in ids:
            holders = [h for h in _claims.get(deployment_id, []) if h() is not None and h() is not self]
            _claims[deployment_id] = [*holders, me]

    def release(self) -> None:
        """Stop claiming offers by value (the plugin is detached)."""
        for deployment_id in list(_claims):
            holders = [h for h in _claims[deployment_id] if h() is not None and h() is not self]
            if holders:
                _claims[deployment_id] = holders
            else:
                del _claims[deployment_id]

    def owns(self, offered: Mapping[str, Any]) -> bool:
        info = offered.get("model_info")
        deployment_id = str(info.get("id")) if isinstance(info, Mapping) else ""
        ours = self._deployments.get(deployment_id)
        if ours is None:
            return False
        if ours is offered:
            return True  # LiteLLM's own dict: this Router's, whatever other plugins hold
        if ours != offered:
            return False
        holders = [h() for h in _claims.get(deployment_id, [])]
        live = [h for h in holders if h is not None]
        return not live or live[-1] is self

"""The deployments a broken stream may continue on, each with the adapter of its kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litellm_failover.providers import get_adapter, infer_kind
from litellm_failover.providers.continuation import NO_EXACT_CONTINUATION, Continuation

if TYPE_CHECKING:
    from litellm_failover.providers.base import ProviderAdapter
    from litellm_failover.streams.request import StreamRequest


@dataclass(frozen=True, slots=True)
class Target:
    """A deployment a stream may continue on, with the adapter that knows how."""

    deployment_id: str
    kind: str | None
    adapter: ProviderAdapter | None

    @property
    def exact(self) -> bool:
        return self.adapter is not None and self.adapter.continues_exactly

    @property
    def running_usage(self) -> Mapping[str, Any] | None:
        return self.adapter.running_usage if self.adapter is not None else None

    def continuation(
        self, request: StreamRequest, partial: str, accept: Callable[[int], bool] | None = None
    ) -> Continuation:
        if not partial:
            # Nothing reached the client yet: the request itself, which every kind answers exactly.
            return Continuation(messages=[dict(m) for m in request.messages], exact=True)
        if self.adapter is None:
            built = NO_EXACT_CONTINUATION.build(request.messages, partial, request.request_extra)
        else:
            built = self.adapter.continuation(request.messages, partial, request.request_extra, accept)
        if built.exact and request.structured:
            return Continuation(built.messages, False, built.extra_body, built.skip_prefix)
        return built


def target_of(deployment_id: str, spec: Any) -> Target:
    try:
        kind = infer_kind(spec.litellm_params, spec.failover.provider, "model_info.failover.provider")
        adapter = get_adapter(kind)
    except Exception:  # a kind the plugin cannot tell: continued by the best effort only
        return Target(deployment_id, None, None)
    return Target(deployment_id, kind, adapter)

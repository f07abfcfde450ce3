"""The one small interface every endpoint kind implements.

The plugin core never branches on a provider name: it asks the adapter for a deployment's
``ProbeReport`` and reads the checks in it. Everything that differs by endpoint kind (which URL
says "alive", which metric means "saturated", how to authenticate a cheap read) lives behind
``ProviderAdapter`` in one module per kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from litellm_failover.providers.egress import DIRECT, Egress
from litellm_failover.providers.thresholds import ProbeThresholds

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from litellm_failover.providers.continuation import Continuation
    from litellm_failover.providers.probe_client import ProbeClient
    from litellm_failover.settings import DeploymentFailoverConfig


class Severity(StrEnum):
    """What a failed check does to a deployment.

    ``FAIL`` ejects it (it is broken); ``DEGRADE`` only lowers its weight (it is alive but
    saturated). This split is the "degrade before eject" principle of the design.
    """

    FAIL = "fail"
    DEGRADE = "degrade"


class CheckName:
    """The check names every adapter uses; the core and ``status`` read checks by these names."""

    HTTP_HEALTH = "http_health"
    PROBE_LATENCY = "probe_latency"
    METRICS = "metrics"
    KV_CACHE = "kv_cache"
    QUEUE_DEPTH = "queue_depth"
    GPU_HEALTH = "gpu_health"
    GPU_MEMORY = "gpu_memory"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One named check's latest outcome, kept for ``status()`` and the events table."""

    name: str
    ok: bool
    severity: Severity
    reason: str
    value: float | None = None

    @classmethod
    def passed(
        cls, name: str, reason: str, value: float | None = None, *, severity: Severity = Severity.FAIL
    ):
        return cls(name=name, ok=True, severity=severity, reason=reason, value=value)

    @classmethod
    def failed(
        cls, name: str, reason: str, value: float | None = None, *, severity: Severity = Severity.FAIL
    ):
        return cls(name=name, ok=False, severity=severity, reason=reason, value=value)


@dataclass(frozen=True, slots=True)
class LoadSignals:
    """Load figures read from engine or GPU telemetry; ``None`` where the source has none."""

    kv_cache_usage: float | None = None
    queue_waiting: float | None = None
    requests_running: float | None = None
    gpu_memory_ratio: float | None = None


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """Everything a probe needs to reach one deployment.

    ``api_key`` is a secret: adapters put it in request headers only, never in a reason string.
    """

    deployment_id: str
    api_base: str | None
    health_url: str | None = None
    metrics_url: str | None = None
    gpu_url: str | None = None
    gpu_source: str | None = None  # "agent" | "dcgm" | None
    api_key: str | None = field(default=None, repr=False)
    api_version: str | None = None
    thresholds: ProbeThresholds = field(default_factory=ProbeThresholds)
    egress: Egress = DIRECT  # proxy and TLS trust (providers.egress); set by build_target


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """The result of one probe round of one deployment."""

    checks: tuple[CheckResult, ...]
    latency_s: float
    load: LoadSignals = field(default_factory=LoadSignals)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.ok and c.severity is Severity.FAIL)

    @property
    def degraded(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.ok and c.severity is Severity.DEGRADE)


class Prober(Protocol):
    """One deployment's probe, built once and kept by the core for the deployment's lifetime.

    It is an object rather than a function of the target because some telemetry needs memory
    between rounds: DCGM's XID field holds the *last* XID code and never resets, so only a change
    since the previous read is an event (see ``providers.gpu``). Keeping that memory in the prober
    ties its lifetime to the deployment's, with no global dict to clean up.
    """

    kind: str
    target: ProbeTarget

    async def probe(self, session: ProbeClient) -> ProbeReport:
        """Run one probe round. Must not raise for anything the endpoint answers: a malformed
        answer is a failed check with a reason. Timeouts are enforced by the caller
        (``providers.runner.run_probe``)."""
        ...


class ProviderAdapter(Protocol):
    """One endpoint kind: a stateless factory of targets and probers."""

    kind: str
    self_hosted: bool

    def default_target(
        self,
        deployment_id: str,
        litellm_params: dict,
        config: DeploymentFailoverConfig,
        thresholds: ProbeThresholds,
        *,
        where: str,
    ) -> ProbeTarget:
        """Build the probe target from a deployment's LiteLLM params and its ``model_info.failover``.

        ``thresholds`` are final (per-deployment overrides already applied); ``where`` is the
        deployment's key path (``model_list[2]``) for error messages.
        """
        ...

    def new_prober(self, target: ProbeTarget) -> Prober:
        """A fresh prober for one deployment, with its own between-rounds memory."""
        ...

    @property
    def continues_exactly(self) -> bool:
        """Whether ``continuation`` gives back the uninterrupted answer (see ``providers.continuation``)."""
        ...

    def continuation(
        self,
        messages: Sequence[Mapping[str, Any]],
        partial: str,
        request_extra: Mapping[str, Any],
        accept: Callable[[int], bool] | None = None,
    ) -> Continuation:
        """The request that asks this kind for the rest of ``partial``, an answer to ``messages``
        that broke mid-stream elsewhere; ``request_extra`` holds the client request's own extra
        body fields (``continue_final_message`` when it was continuing a prefix itself);
        ``accept`` the points of ``partial`` it may cut back to (``ContinuationRule``)."""
        ...

"""Hosted APIs probed by listing models: the shared logic, and the generic OpenAI-compatible kind.

A hosted API gets one cheap authenticated read per round, never a completion (which costs
money and rate limit): ``GET .../models``. It proves DNS, TLS, the route, the gateway and the
key. The checks:

- ``http_health``: 2xx with a JSON object passes. 401/403 fail as "authentication rejected"
  (a revoked key is an outage for this deployment). **429 only degrades**: the API is up but
  this key's quota is tight, so the deployment should get less traffic, not none; real 429s
  from traffic still reach the outlier detector. Everything else fails with the status.
- ``probe_latency``: the read's latency against ``max_probe_latency_s``.

``openai``, ``azure`` and ``anthropic`` are this adapter with their own URL, headers and the
environment variables LiteLLM itself falls back to.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from litellm_failover.providers import http, litellm_param
from litellm_failover.providers.base import CheckName, CheckResult, ProbeReport, ProbeTarget, Severity
from litellm_failover.providers.continuation import NO_EXACT_CONTINUATION, ContinuingAdapter
from litellm_failover.providers.errors import MalformedAnswer
from litellm_failover.providers.probe_client import ProbeClient
from litellm_failover.providers.runner import latency_check
from litellm_failover.providers.self_hosted import check_url
from litellm_failover.providers.thresholds import ProbeThresholds

if TYPE_CHECKING:
    from litellm_failover.settings import DeploymentFailoverConfig


class ModelsListAdapter(ContinuingAdapter):
    """A hosted, OpenAI-style API: ``GET {api_base}/models`` with a Bearer key (if any)."""

    kind = "openai-compatible"
    self_hosted = False
    default_api_base: str | None = None
    api_base_env: tuple[str, ...] = ()
    api_key_env: tuple[str, ...] = ()
    # An unknown server behind ``openai/`` may be a vLLM, but nothing says it continues a message
    # in place: only a deployment declared ``provider: vllm`` (or sglang) is continued exactly.
    continuation_rule = NO_EXACT_CONTINUATION

    def models_url(self, api_base: str, api_version: str | None) -> str:
        parts = urlsplit(api_base)  # keep a query a gateway may need; append to the path
        return urlunsplit((parts.scheme, parts.netloc, f"{parts.path.rstrip('/')}/models", parts.query, ""))

    def headers(self, target: ProbeTarget) -> dict[str, str]:
        return {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}

    def api_version(self, litellm_params: dict, where: str) -> str | None:
        return None

    def default_target(
        self,
        deployment_id: str,
        litellm_params: dict,
        config: DeploymentFailoverConfig,
        thresholds: ProbeThresholds,
        *,
        where: str,
    ) -> ProbeTarget:
        failover = f"{where}.model_info.failover"
        for key in ("metrics_url", "gpu_url"):
            if getattr(config, key):
                from litellm_failover.settings import FailoverConfigError

                raise FailoverConfigError(
                    f"invalid configuration: {failover}.{key}: not used by the hosted kind {self.kind!r} "
                    "(engine metrics and GPU telemetry apply to vllm, sglang and tgi)"
                )
        api_base = litellm_param(
            litellm_params, "api_base", where=where, env=self.api_base_env, required=True
        )
        api_base = check_url(api_base or self.default_api_base, f"{where}.litellm_params.api_base")
        api_version = self.api_version(litellm_params, where)
        probe_url = check_url(config.health_url, f"{failover}.health_url")
        if probe_url is None:
            if api_base is None:
                from litellm_failover.settings import FailoverConfigError

                raise FailoverConfigError(
                    f"invalid configuration: {where}.litellm_params.api_base: required to probe a "
                    f"deployment of kind {self.kind!r} (or set {failover}.health_url)"
                )
            probe_url = self.models_url(api_base, api_version)
        return ProbeTarget(
            deployment_id=deployment_id,
            api_base=api_base,
            health_url=probe_url,
            api_key=litellm_param(litellm_params, "api_key", where=where, env=self.api_key_env),
            api_version=api_version,
            thresholds=thresholds,
        )

    def new_prober(self, target: ProbeTarget) -> ModelsListProber:
        return ModelsListProber(self.kind, target, self.headers(target))


class ModelsListProber:
    """One hosted deployment's probe. Stateless between rounds; an object for the interface."""

    def __init__(self, kind: str, target: ProbeTarget, headers: dict[str, str]) -> None:
        self.kind = kind
        self.target = target
        self._headers = headers
        self._tracker = http.ReadTracker()

    def __repr__(self) -> str:  # the headers hold the key: never show them
        return f"ModelsListProber(kind={self.kind!r}, deployment_id={self.target.deployment_id!r})"

    @property
    def pending(self) -> tuple[str, ...]:
        return self._tracker.pending

    async def probe(self, session: ProbeClient) -> ProbeReport:
        self._tracker.clear()
        url = self.target.health_url
        assert url is not None
        thresholds = self.target.thresholds
        start = time.monotonic()
        try:
            with self._tracker.reading(http.read_label("models list", url)):
                answer = await http.get(
                    session,
                    url,
                    max_body_bytes=thresholds.max_body_bytes,
                    headers=self._headers,
                    egress=self.target.egress,
                )
        except Exception as exc:
            latency = time.monotonic() - start
            health = CheckResult.failed(CheckName.HTTP_HEALTH, http.describe_error(exc))
        else:
            latency = answer.latency_s
            health = judge_models_answer(answer)
        return ProbeReport(checks=(health, latency_check(latency, thresholds)), latency_s=latency)


def judge_models_answer(answer: http.HttpAnswer) -> CheckResult:
    """``http_health`` from a models-list answer. Bodies of error answers are never quoted:
    providers echo (partly masked) keys in them."""
    status = answer.status
    if answer.ok:
        try:
            doc = http.decode_json(answer, "models list")
            if not isinstance(doc, dict):
                raise MalformedAnswer("models list is not a JSON object")
        except MalformedAnswer as exc:
            return CheckResult.failed(CheckName.HTTP_HEALTH, http.describe_error(exc), float(status))
        return CheckResult.passed(CheckName.HTTP_HEALTH, f"{status} OK", float(status))
    if status in (401, 403):
        return CheckResult.failed(CheckName.HTTP_HEALTH, f"authentication rejected ({status})", float(status))
    if status == 429:
        return CheckResult.failed(
            CheckName.HTTP_HEALTH, "rate limited (429)", float(status), severity=Severity.DEGRADE
        )
    return CheckResult.failed(
        CheckName.HTTP_HEALTH, f"GET {http.safe_url(answer.url)} answered {status}", float(status)
    )


ADAPTER = ModelsListAdapter()

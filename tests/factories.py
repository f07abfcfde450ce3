"""Builders for unit tests of the core: model lists, probe reports, a controllable clock."""

from __future__ import annotations

from litellm_failover.deployments import DeploymentSpec, read_model_list
from litellm_failover.providers.base import CheckResult, ProbeReport, Severity
from litellm_failover.settings import FailoverSettings, parse_settings


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def model_list(*entries: tuple[str, str, int, float]) -> list[dict]:
    """(group, id, order, weight) tuples to a LiteLLM model_list."""
    return [
        {
            "model_name": group,
            "litellm_params": {
                "model": "hosted_vllm/fake-model",
                "api_base": f"http://127.0.0.1:1/{dep_id}/v1",
                "order": order,
                "weight": weight,
            },
            "model_info": {"id": dep_id},
        }
        for group, dep_id, order, weight in entries
    ]


def specs_for(entries: list[dict], settings: FailoverSettings | None = None) -> list[DeploymentSpec]:
    return read_model_list(entries, (settings or parse_settings({})).health)


def good_report(latency: float = 0.01) -> ProbeReport:
    return ProbeReport(
        checks=(
            CheckResult.passed("http_health", "200"),
            CheckResult.passed("probe_latency", f"{latency}s", latency),
        ),
        latency_s=latency,
    )


def bad_report(reason: str = "HTTP 500") -> ProbeReport:
    return ProbeReport(checks=(CheckResult.failed("http_health", reason),), latency_s=0.01)


def saturated_report(kv: float = 0.99) -> ProbeReport:
    return ProbeReport(
        checks=(
            CheckResult.passed("http_health", "200"),
            CheckResult.failed("kv_cache", f"KV cache {kv:.2f} over 0.90", kv, severity=Severity.DEGRADE),
        ),
        latency_s=0.01,
    )

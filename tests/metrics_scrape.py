"""Scraping a Prometheus page the way Prometheus does: real HTTP, prometheus_client's own parser.

(A helper of tests/test_metrics*.py; it defines no tests.)
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a page, keyed by sample name and labels. Raises on a malformed page."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate series on the page: {key}"
            samples[key] = sample.value
    return samples


async def scrape(url: str, headers: Mapping[str, str] | None = None) -> Samples:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(url, headers=dict(headers or {})) as response,
    ):
        text = await response.text()
        assert response.status == 200, f"GET {url}: {response.status} {text[:300]}"
        return parse(text)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample with exactly these labels. A deployment's series also carry ``model_id``, always
    equal to ``deployment`` (LiteLLM's join label): given ``deployment``, it is expected too."""
    return samples.get((name, frozenset(with_model_id(labels).items())))


def with_model_id(labels: Mapping[str, str]) -> dict[str, str]:
    labels = dict(labels)
    if "deployment" in labels:
        labels.setdefault("model_id", labels["deployment"])
    return labels


def state_of(samples: Samples, group: str, deployment: str) -> str | None:
    """The state whose ``litellm_failover_deployment_state`` sample is 1."""
    on = [
        dict(labels)["state"]
        for (name, labels), v in samples.items()
        if name == "litellm_failover_deployment_state"
        and dict(labels).get("model_group") == group
        and dict(labels).get("deployment") == deployment
        and dict(labels).get("model_id") == deployment
        and v == 1.0
    ]
    assert len(on) <= 1, f"{deployment} is in several states at once: {on}"
    return on[0] if on else None


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}

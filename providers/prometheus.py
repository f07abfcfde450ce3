"""Reading Prometheus text exposition into the few numbers a probe compares.

Samples are indexed by *sample* name, not family name: ``prometheus_client.parser`` renames a
counter family (``vllm:prompt_tokens_total`` becomes family ``vllm:prompt_tokens``) while
each sample keeps the name the server wrote, which is the name engine docs list. Names with a
colon (``vllm:``, ``sglang:``) parse as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from litellm_failover.providers.base import MalformedAnswer, finite
from litellm_failover.providers.http import short

Aggregate = Literal["sum", "max"]


@dataclass(frozen=True, slots=True)
class Samples:
    """Every sample of one scrape: name -> [(labels, value)]."""

    by_name: dict[str, list[tuple[dict[str, str], float]]]

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        return self.by_name.get(name, [])


def parse_metrics(body: bytes) -> Samples:
    """Parse a whole scrape; anything the parser rejects is a ``MalformedAnswer``.

    The whole text is parsed, not only the lines a probe needs: a server that emits garbage
    anywhere in /metrics is one Prometheus itself would refuse to scrape.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedAnswer("metrics text unparseable: not UTF-8") from None
    if not text.strip():
        raise MalformedAnswer("metrics text empty")
    by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                by_name.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    except Exception as exc:  # the parser raises ValueError mostly, but also IndexError/KeyError
        raise MalformedAnswer(
            f"metrics text unparseable: {short(str(exc) or type(exc).__name__, 120)}"
        ) from None
    return Samples(by_name)


@dataclass(frozen=True, slots=True)
class Series:
    """One load figure an engine exposes.

    ``names`` lists the current name first, then deprecated aliases tried in order (vLLM renamed
    ``gpu_cache_usage_perc`` to ``kv_cache_usage_perc``). ``aggregate`` combines label sets (data
    parallel engines, several models): ``sum`` for request counts, which add up; ``max`` for usage
    ratios, where the fullest engine is the one that will refuse or preempt first. ``ratio``
    values must lie in [0, 1].
    """

    names: tuple[str, ...]
    aggregate: Aggregate
    required: bool = True
    ratio: bool = False

    @property
    def name(self) -> str:
        return self.names[0]


def read_series(samples: Samples, series: Series) -> float | None:
    """The aggregated value, ``None`` for an absent optional series.

    Raises ``MalformedAnswer`` naming the series when a required one is missing, or a value is
    NaN, infinite or out of range.
    """
    for name in series.names:
        values = samples.series(name)
        if values:
            break
    else:
        if not series.required:
            return None
        aliases = series.names[1:]
        extra = f" (nor the deprecated {', '.join(aliases)})" if aliases else ""
        raise MalformedAnswer(f"{series.name} missing{extra}")
    numbers = [finite(value, name) for _, value in values]
    if series.ratio:
        for value in numbers:
            if not 0.0 <= value <= 1.0:
                raise MalformedAnswer(f"{name} is {value:g}, outside [0, 1]")
    return sum(numbers) if series.aggregate == "sum" else max(numbers)


def read_all(samples: Samples, wanted: Sequence[Series]) -> tuple[dict[str, float | None], list[str]]:
    """Read several series; collect every problem rather than stop at the first."""
    values: dict[str, float | None] = {}
    problems: list[str] = []
    for series in wanted:
        try:
            values[series.name] = read_series(samples, series)
        except MalformedAnswer as exc:
            problems.append(str(exc))
    return values, problems

"""Reading Prometheus text exposition into the few numbers a probe compares.

Samples are indexed by *sample* name, not family name: ``prometheus_client.parser`` renames a
counter family (``vllm:prompt_tokens_total`` becomes family ``vllm:prompt_tokens``) while
each sample keeps the name the server wrote, which is the name engine docs list. Names with a
colon (``vllm:``, ``sglang:``) parse as they are.

Only the families a probe reads are parsed. A real engine page is hundreds of lines, nearly all
histogram buckets, and ``prometheus_client``'s parser walks each line character by character: a
~370-line vLLM page costs ~5 ms to parse whole, ~0.2 ms for the 16 lines of the four gauges a
vLLM probe reads (bench machine, 2 cores). So ``parse_metrics`` is given the sample names wanted,
finds their families' lines with a string search (``# TYPE`` lines and samples,
including the ``_total``, ``_created``, ``_bucket``, ``_sum`` and ``_count`` names other metric
types use) and hands only those lines to the parser. ``bench/metrics_parse.py`` measures both.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from litellm_failover.providers.errors import MalformedAnswer, finite
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


def parse_metrics(body: bytes, names: Iterable[str] | None = None) -> Samples:
    """Parse a scrape, or with ``names`` only the families those samples belong to.

    Anything the parser rejects in what it is given is a ``MalformedAnswer``, and so are text
    that is not UTF-8 and an empty page. With ``names``, a malformed line in some *other* family
    is not looked at, on purpose: the question a probe asks is the engine's load, not whether
    Prometheus would accept the whole page. Other families come from other code (the process
    and GC collectors, a plugin's own metrics); a bug there says nothing about the gauges read,
    and failing the ``metrics`` check for it would eject a serving node for a histogram nobody
    reads. Flagging a page Prometheus cannot scrape is the monitoring system's job. A broken
    line *inside* a wanted family still fails, with the parser's reason, as does a wanted family
    that is absent (``read_series`` names it).

    When no line of any wanted family is found the whole text is parsed, as without ``names``:
    a page that is not Prometheus text at all (a gateway's HTML error page) is then reported as
    unparseable, not as every series missing; a valid page without those families still reads,
    so ``read_series`` reports what is missing. Only a failing page pays for the whole parse.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedAnswer("metrics text unparseable: not UTF-8") from None
    if not text or text.isspace():
        raise MalformedAnswer("metrics text empty")
    if names is not None:
        text = select_families(text, tuple(names)) or text
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


# Sample-name suffixes of the other metric types (counter, histogram, summary, info, gauge
# histogram), and the ``_created`` series ``prometheus_client`` exports beside counters and
# histograms. A name and any of these suffixed forms belong to one family.
_SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum", "_info", "_gcount", "_gsum")
# What may precede a family's name on one of its kept lines: indentation (the parser strips
# lines), and the ``# TYPE`` comment head. ``# HELP`` lines are left out: they carry no value, and
# unescaping help text is a third of what the parser spends on a vLLM probe's four gauges.
_LINE_HEAD = re.compile(r"[ \t]*(?:#[ \t]+TYPE[ \t]+)?")


def family_base(name: str) -> str:
    """``vllm:prompt_tokens_total`` -> ``vllm:prompt_tokens``: the name its family's lines share."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


@functools.lru_cache(maxsize=64)
def _family_names(names: tuple[str, ...]) -> re.Pattern[str] | None:
    """A name of one of these families, followed by where a metric name ends on a line.

    Built once per set of names (one per engine kind in practice). It deliberately matches
    anywhere, not only at line starts: a ``^`` in multi-line mode makes ``re`` try every
    character, ten times slower on a 36 KB page than letting it jump between the names' literal
    text; ``select_families`` checks the line start itself.
    """
    bases = sorted({family_base(name) for name in names if name}, key=len, reverse=True)
    if not bases:
        return None
    alternatives = "|".join(re.escape(base) for base in bases)
    suffixes = "|".join(_SUFFIXES)
    return re.compile(rf"(?:{alternatives})(?:{suffixes})?(?=[ \t{{\r\n]|\Z)")


def select_families(text: str, names: tuple[str, ...]) -> str:
    """The sample and ``# TYPE`` lines of the families of ``names``, in order; "" for none.

    A line belongs when, after optional indentation and an optional ``# TYPE`` head, it starts
    with a family's name (the base name or a suffixed form) and the name ends there. ``# HELP``
    lines are not kept (they hold no value). The same name inside a label value, or in another
    family's help text, does not count.
    Over-selecting (a gauge that happens to be called ``<wanted>_sum``) only costs parsing time;
    a line of a wanted family is not left out, with one exception: the quoted-name syntax of
    Prometheus 3 (``{"name", label="v"} 1``), which exporters write only for names that are not
    valid classic names, and the engines' names (``vllm:num_requests_running``) are. The loop
    moves forward on every match, so it ends within one pass over the text.
    """
    pattern = _family_names(names)
    if pattern is None:
        return ""
    kept: list[str] = []
    position = 0
    while (match := pattern.search(text, position)) is not None:
        start = match.start()
        line_start = text.rfind("\n", 0, start) + 1
        if line_start == start or _LINE_HEAD.fullmatch(text, line_start, start):
            line_end = text.find("\n", start)
            if line_end < 0:
                line_end = len(text)
            kept.append(text[line_start:line_end])
            position = max(line_end, match.end())
        else:
            position = match.end()
    return "\n".join(kept)


def sample_names(wanted: Iterable[Series]) -> tuple[str, ...]:
    """Every sample name the series may be read under, deprecated aliases included."""
    return tuple(name for series in wanted for name in series.names)


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

"""Cost of reading an engine's /metrics page: the whole page parsed vs only the families a probe reads.

A real vLLM ``/metrics`` page is a few hundred lines, most of them histogram buckets (latency,
token counts) that a probe never looks at; it reads four gauges. Every probe round parses the
page, so parsing it whole was ~15 % of probing's CPU. This bench builds a realistic page with
``prometheus_client`` itself (the library vLLM exports with, so the formatting is authentic:
``_total``/``_created`` counters, histograms with ``_bucket``/``_count``/``_sum``, per-engine labels,
the Python process and GC collectors) and times, interleaved in the same run:

- ``whole``: ``parse_metrics(body)``, every line through ``prometheus_client``'s parser (how the
  probe read /metrics before the line selection, and how a caller that names nothing still does);
- ``selected``: ``parse_metrics(body, names)`` with the sample names the vLLM probe reads, so only
  those families' lines reach the parser.

Both must read the same values for those names (checked first; a mismatch aborts the bench). The
goal guards the mechanism: on this page, where 16 of ~370 lines belong to the families read, the
selected parse must cost at most a tenth of the whole one; a selection that silently fell back
to parsing everything would show as a ratio near 1. For scale, < 5 % of a core at 50 probe rounds
a second (100 deployments every 2 s) leaves 1 ms of CPU per round for everything.

Run: ``.venv/bin/python bench/metrics_parse.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

try:  # python -m bench.metrics_parse
    from bench import _common as common
except ImportError:  # python bench/metrics_parse.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]

GOAL_RATIO = 0.1  # selected / whole (see the module docstring)
ENGINES = 2  # data-parallel engines, each with its own label set, as vLLM exports them

# vLLM's bucket boundaries (v1 engine, vllm/v1/metrics/loggers.py), trimmed to their usual length.
_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
_TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def vllm_like_page() -> bytes:
    """A /metrics page shaped like a busy vLLM server's: ~300 lines, four of them the gauges read."""
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        GCCollector,
        Histogram,
        PlatformCollector,
        ProcessCollector,
        generate_latest,
    )

    registry = CollectorRegistry()
    labels = ["model_name", "engine"]
    gauges = {
        "vllm:num_requests_running": "Number of requests in model execution batches.",
        "vllm:num_requests_waiting": "Number of requests waiting to be processed.",
        "vllm:kv_cache_usage_perc": "KV-cache usage. 1 means 100 percent usage.",
        "vllm:gpu_cache_usage_perc": "GPU KV-cache usage. 1 means 100 percent usage.",
    }
    counters = {
        "vllm:num_preemptions": "Cumulative number of preemption from the engine.",
        "vllm:prompt_tokens": "Number of prefill tokens processed.",
        "vllm:generation_tokens": "Number of generation tokens processed.",
        "vllm:prefix_cache_queries": "Prefix cache queries, in terms of number of queried tokens.",
        "vllm:prefix_cache_hits": "Prefix cache hits, in terms of number of cached tokens.",
    }
    histograms = {
        "vllm:time_to_first_token_seconds": ("Histogram of time to first token in seconds.", "latency"),
        "vllm:inter_token_latency_seconds": ("Histogram of inter-token latency in seconds.", "latency"),
        "vllm:e2e_request_latency_seconds": ("Histogram of e2e request latency in seconds.", "latency"),
        "vllm:request_queue_time_seconds": ("Histogram of time spent in WAITING phase.", "latency"),
        "vllm:request_prefill_time_seconds": ("Histogram of time spent in PREFILL phase.", "latency"),
        "vllm:request_prompt_tokens": ("Number of prefill tokens processed.", "tokens"),
        "vllm:request_generation_tokens": ("Number of generation tokens processed.", "tokens"),
    }
    model = "meta-llama/Llama-3.1-8B-Instruct"
    made_gauges = [Gauge(name, text, labels, registry=registry) for name, text in gauges.items()]
    made_counters = [Counter(name, text, labels, registry=registry) for name, text in counters.items()]
    made_histograms = [
        Histogram(
            name,
            text,
            labels,
            buckets=_LATENCY_BUCKETS if kind == "latency" else _TOKEN_BUCKETS,
            registry=registry,
        )
        for name, (text, kind) in histograms.items()
    ]
    for engine in map(str, range(ENGINES)):
        for index, gauge in enumerate(made_gauges):
            gauge.labels(model, engine).set(0.1 * (index + 1))
        for counter in made_counters:
            counter.labels(model, engine).inc(1234)
        for histogram in made_histograms:
            histogram.labels(model, engine).observe(0.3)
    Counter(
        "vllm:request_success", "Count of successfully processed requests.", ["finished_reason"],
        registry=registry,
    ).labels("stop").inc(99)  # fmt: skip
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    ProcessCollector(registry=registry)
    return generate_latest(registry)


WANTED = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
)


def _time_per_call(call: Callable[[], Any], calls: int) -> float:
    """Seconds per call over one block of ``calls``."""
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def run(blocks: int, calls: dict[str, int]) -> dict[str, Any]:
    """``calls`` per block for each case: fewer for the whole page, so each block of either case
    takes a comparable ~0.1 s rather than the whole-page blocks dominating the run."""
    from litellm_failover.providers.prometheus import parse_metrics
    from litellm_failover.providers.vllm import METRICS

    page = vllm_like_page()
    wanted = tuple(name for series in METRICS.wanted() for name in series.names)
    assert set(wanted) == set(WANTED), f"the vLLM probe reads {wanted}, this bench assumes {WANTED}"
    whole, selected = parse_metrics(page), parse_metrics(page, wanted)
    for name in wanted:  # same values, same label sets, for every series the probe reads
        assert selected.series(name) == whole.series(name) != [], f"{name}: selection changed the values"

    timings: dict[str, list[float]] = {"whole": [], "selected": []}
    cases = {"whole": lambda: parse_metrics(page), "selected": lambda: parse_metrics(page, wanted)}
    for block in range(blocks):  # alternate the order so drift on a shared machine hits both
        order = ("whole", "selected") if block % 2 == 0 else ("selected", "whole")
        for case in order:
            timings[case].append(_time_per_call(cases[case], calls[case]))
    whole_us = 1e6 * statistics.median(timings["whole"])
    selected_us = 1e6 * statistics.median(timings["selected"])
    ratio = common.ratio(selected_us, whole_us)
    text = page.decode()
    metrics = {
        "page_lines": len(text.splitlines()),
        "page_bytes": len(page),
        "lines_of_wanted_families": sum(1 for line in text.splitlines() if _is_wanted(line)),
        "us_per_parse_whole": whole_us,
        "us_per_parse_selected": selected_us,
        "ratio_selected_over_whole": ratio,
    }
    goals = [common.Goal("vLLM /metrics parse, selected / whole page", ratio, "<=", GOAL_RATIO)]
    return common.result("metrics_parse", metrics, goals, {"blocks": blocks, "calls_per_block": calls})


def _is_wanted(line: str) -> bool:
    words = line.split()
    if line.startswith("#"):
        return len(words) > 2 and words[1] in ("HELP", "TYPE") and words[2] in WANTED
    return bool(words) and words[0].split("{")[0] in WANTED


def report(data: dict[str, Any]) -> None:
    m = data["metrics"]
    common.print_rows(
        f"vLLM-like /metrics page: {m['page_lines']} lines, {m['page_bytes']:,} bytes, "
        f"{m['lines_of_wanted_families']} lines in the families read",
        ["parse", "us per parse (median of blocks)"],
        [
            ["whole page", m["us_per_parse_whole"]],
            ["wanted families only", m["us_per_parse_selected"]],
            ["ratio selected / whole", m["ratio_selected_over_whole"]],
        ],
    )


def main() -> int:
    p = common.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    if args.quick:
        data = run(blocks=6, calls={"whole": 5, "selected": 100})
    else:
        data = run(blocks=20, calls={"whole": 20, "selected": 500})
    report(data)
    return common.finish(args, data)


if __name__ == "__main__":
    raise SystemExit(main())

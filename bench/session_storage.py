"""What storing conversations costs a request through the real proxy: latency A/B, storage off / on.

Two ``litellm --config`` proxies run side by side in front of the same fake vLLM nodes, both with
the plugin enabled from config.yaml and the same settings (sessions on, so both identify and pin
sessions), each with a database of its own: A with ``sessions.store_messages: false``, B with
``store_messages: true`` and ``store_content: true`` (the heavier case: text is kept). The only
difference between them is the conversation storage: the success hook building message rows and
the writer committing them.

The load is what chat clients send: multi-turn conversations through the openai SDK, each named by
its own ``x-session-id`` header, each turn sending the whole history so far (the previous answers
appended, as a client does), every second turn streamed; a fixed number of conversations run at a
time, each turn waiting for the previous answer. The same conversations go to A and B in
alternating rounds, A B, B A, ..., so drift on a shared machine lands on both. The fake nodes answer
instantly, so the proxy's own work dominates: a worst case for relative overhead.

Reported: p50 and p99 latency of each side and the ratios B/A (goals: both <= 1.05), throughput,
and, because both latency goals sit inside this machine's noise, what helps to read them:

- the p50 of non-streamed and of streamed requests apart: half the requests are streams, which
  take about 2.5x as long, so the overall median falls in the gap between the two groups and
  moves with the slowest non-streamed and the fastest streamed requests;
- per-round p99s and the median of the per-round ratios: a p99 over a few thousand requests is
  set by the proxy's rare long garbage-collection pauses (LiteLLM's, hundreds of ms, in both);
- each proxy's CPU seconds per request (``/proc``): at this concurrency the proxy's one core is
  busy, latency is mostly queueing, and CPU per request is what storage would add to it;
- ``--control``: storage off on both proxies, the same measurement's noise floor.

Sanity, checked at the end: B's ``failover_messages`` holds exactly two rows per answered turn and
its sessions the turns, A's holds none, and the writers' own counters (read from each proxy's
metrics port) show every row written and none dropped or rejected. A failed check aborts the bench.

The databases: a schema each on the local PostgreSQL when it answers (dropped afterwards; the URL
is ``LITELLM_FAILOVER_BENCH_POSTGRES_URL``, as for ``writer_throughput``), else a SQLite file each.
``--database`` forces one.

Run: ``.venv/bin/python bench/session_storage.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import tempfile
import time
import urllib.request
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:  # python -m bench.session_storage
    from bench import _common as common
    from bench.proxy_overhead import NODES, proxy_config, start_all, summarise
    from bench.writer_throughput import database, postgres_reachable, postgres_url
except ImportError:  # python bench/session_storage.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]
    from proxy_overhead import NODES, proxy_config, start_all, summarise  # type: ignore[no-redef]
    from writer_throughput import database, postgres_reachable, postgres_url  # type: ignore[no-redef]

if TYPE_CHECKING:
    from litellm_failover.drill.loadgen import RequestResult
    from litellm_failover.drill.proxy_process import ProxyProcess

RATIO_GOAL = 1.05
SIDES = ("off", "on")  # A: store_messages false, B: store_messages true
ROUND_DEADLINE_S = 60.0  # one round, whatever happens
RUN_DEADLINE_S = 180.0  # all measured rounds together
SETTLE_S = 30.0  # for the last rows to be committed before they are counted
_FILLER = (
    "Our checkout service times out under load after the last deploy; the database looks fine "
    "and the cache hit rate dropped. What should I look at next, and in which order?"
)


@dataclass(frozen=True, slots=True)
class Plan:
    """The load of one round: ``conversations`` of ``turns`` turns each, ``concurrency`` at a time."""

    conversations: int
    turns: int
    concurrency: int

    @property
    def requests(self) -> int:
        return self.conversations * self.turns


async def conversation(
    client: Any, session_id: str, turns: int, counter: itertools.count[int]
) -> list[RequestResult]:
    """One chat client: each turn sends the history so far under its session header and appends
    the answer. Stops at the first failure (a client would not go on without the answer)."""
    from litellm_failover.drill.loadgen import _sender  # records timing, streams and errors as the load does

    history: list[dict[str, str]] = []
    headers = {"x-session-id": session_id}
    results = []
    for turn in range(turns):
        history.append({"role": "user", "content": f"{session_id} turn {turn}: {_FILLER}"})
        send = _sender(
            lambda _index, stream: client.chat.completions.create(
                model="chat", messages=list(history), stream=stream, extra_headers=headers
            )
        )
        result = await send(next(counter), turn % 2 == 0)  # every second turn streamed, the first one too
        results.append(result)
        if not result.ok:
            break
        history.append({"role": "assistant", "content": result.text})
    return results


async def one_round(proxy: ProxyProcess, plan: Plan, label: str) -> tuple[list[RequestResult], float]:
    """``plan.conversations`` conversations named ``label-<n>``, ``plan.concurrency`` at a time."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=proxy.url, api_key=proxy.master_key, max_retries=0, timeout=30)
    numbers = iter(range(plan.conversations))
    counter = itertools.count()
    results: list[RequestResult] = []
    deadline = time.monotonic() + ROUND_DEADLINE_S

    async def worker() -> None:
        for number in numbers:  # shared iterator: each worker takes the next conversation
            if time.monotonic() > deadline:
                return
            results.extend(await conversation(client, f"{label}-{number}", plan.turns, counter))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
        return results, time.perf_counter() - started
    finally:
        await client.close()


async def measure(proxies: dict[str, ProxyProcess], rounds: int, plan: Plan, warmup: Plan) -> dict[str, Any]:
    answered = dict.fromkeys(SIDES, 0)  # turns answered, warm-up included: what B must have stored
    for side, proxy in proxies.items():  # warm both: connections, lazy imports, first probes and flushes
        results, _ = await one_round(proxy, warmup, "warmup")
        failed = [r.error for r in results if not r.ok]
        assert not failed, f"warm-up through {proxy.url} failed: {failed[:3]}"
        answered[side] += len(results)

    results: dict[str, list[RequestResult]] = {side: [] for side in SIDES}
    walls = dict.fromkeys(SIDES, 0.0)
    cpu_before = {side: proxy_cpu_s(proxy) for side, proxy in proxies.items()}
    per_round: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    deadline = time.monotonic() + RUN_DEADLINE_S
    done = 0
    for index in range(rounds):
        if time.monotonic() > deadline:
            break
        for side in SIDES if index % 2 == 0 else tuple(reversed(SIDES)):
            batch, wall = await one_round(proxies[side], plan, f"round{index}")
            results[side] += batch
            walls[side] += wall
            answered[side] += sum(r.ok for r in batch)
            latencies = [r.latency_s * 1000 for r in batch if r.ok]
            per_round[side].append(
                {
                    "p50_ms": common.percentile(latencies, 50),
                    "p99_ms": common.percentile(latencies, 99),
                    "rps": len(latencies) / wall,
                }
            )
        done += 1
    cpu_s = {side: proxy_cpu_s(proxy) - cpu_before[side] for side, proxy in proxies.items()}
    summary: dict[str, Any] = {side: summarise(results[side], walls[side]) for side in SIDES}
    for side in SIDES:
        summary[side]["per_round"] = per_round[side]
        summary[side]["proxy_cpu_s"] = cpu_s[side]
        summary[side]["proxy_cpu_ms_per_request"] = 1000 * cpu_s[side] / max(summary[side]["ok"], 1)
        summary[side]["turns_answered"] = answered[side]
    summary["rounds"] = done
    return summary


def proxy_cpu_s(proxy: ProxyProcess) -> float:
    """User + system CPU seconds of the proxy process, all threads (Linux ``/proc``; NaN elsewhere).

    Latency at a fixed concurrency is mostly queueing on the proxy's one busy core, so CPU per
    request says where a latency ratio comes from with far less noise from the shared machine."""
    process = getattr(proxy, "_process", None)  # ProxyProcess keeps its Popen private
    try:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (AttributeError, OSError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def storage_config(nodes: dict[str, Any], database_url: str, store_messages: bool, metrics_port: int) -> dict:
    """proxy_overhead's config with the plugin, plus the one setting that differs and a metrics
    port of its own (the writer's counters are read from it at the end)."""
    config = proxy_config(nodes, database_url)
    config["failover_settings"].update(
        {
            "sessions": {"enabled": True, "store_messages": store_messages, "store_content": True},
            "metrics": {"port": metrics_port},
        }
    )
    return config


async def stored_counts(url: str) -> tuple[int, int]:
    """(rows in failover_messages, turns in failover_sessions); (0, 0) while the tables are not there."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from litellm_failover.store.engine import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            messages = (await connection.execute(text("SELECT count(*) FROM failover_messages"))).scalar()
            turns = (await connection.execute(text("SELECT sum(turn_count) FROM failover_sessions"))).scalar()
        return int(messages or 0), int(turns or 0)
    except DBAPIError as exc:
        if "failover_messages" in str(exc) or "failover_sessions" in str(exc):
            return 0, 0  # no such table (yet)
        raise
    finally:
        await engine.dispose()


def writer_counters(metrics_port: int) -> dict[str, float]:
    """The writer's row counters from a proxy's own metrics port: written, dropped, rejected, queued."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        page = response.read().decode()
    counters: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            name = sample.name.removeprefix("litellm_failover_writer_").removesuffix("_total")
            if sample.name.startswith("litellm_failover_writer_") and not sample.name.endswith("_created"):
                kind = sample.labels.get("kind")
                counters[f"{name}.{kind}" if kind else name] = sample.value
    return counters


async def plugins_running(ports: dict[str, int]) -> None:
    """Both plugins started (their metrics ports answer) and their writers reach the database;
    bounded. A proxy whose plugin failed to start would route without it and skew the ratio."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        try:
            counters = {side: await asyncio.to_thread(writer_counters, ports[side]) for side in SIDES}
            if all(c.get("connected") == 1 for c in counters.values()):
                return
            problem = f"writer not connected: {counters}"
        except OSError as exc:
            problem = f"metrics port not answering: {exc}"
        if time.monotonic() > deadline:
            raise RuntimeError(f"the plugin is not running in both proxies ({problem})")
        await asyncio.sleep(0.2)  # polling a condition, bounded by SETTLE_S


async def settle(urls: dict[str, str], ports: dict[str, int], expected: dict[str, tuple[int, int]]) -> dict:
    """Wait (bounded) until every expected row is committed and the writers' queues are empty, then
    read the tables and the counters once more for the report."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        counts = {side: await stored_counts(urls[side]) for side in SIDES}
        try:
            counters = {side: await asyncio.to_thread(writer_counters, ports[side]) for side in SIDES}
            scrape_error = None
        except OSError as exc:  # a scrape can miss its timeout on a busy machine: try again
            counters, scrape_error = {}, exc
        drained = bool(counters) and all(c.get("queue_depth", math.nan) == 0 for c in counters.values())
        if (counts == expected and drained) or time.monotonic() > deadline:
            if scrape_error is not None:
                raise RuntimeError(
                    f"could not read the writers' counters from the metrics ports: {scrape_error}"
                )
            return {"counts": counts, "counters": counters, "waited_out": counts != expected or not drained}
        await asyncio.sleep(0.2)  # polling a condition, bounded by SETTLE_S


def check_sanity(
    summary: dict[str, Any], settled: dict[str, Any], expected: dict[str, tuple[int, int]]
) -> None:
    """Abort rather than report a latency of a B that stored nothing, or an A that stored anything."""
    counts, counters = settled["counts"], settled["counters"]
    problems = []
    for side in SIDES:
        if counts[side] != expected[side]:
            problems.append(
                f"storage {side}: stored (messages, turns) {counts[side]}, expected {expected[side]}"
            )
        c = counters[side]
        lost = c.get("dropped_rows.messages", 0) + c.get("dropped_rows.events", 0) + c.get("rejected_rows", 0)
        if lost:
            problems.append(f"storage {side}: the writer dropped or had rejected {lost:g} rows: {c}")
        if c.get("written_rows.messages", 0) != expected[side][0]:
            problems.append(f"storage {side}: the writer counts {c.get('written_rows.messages')} messages")
        if summary[side]["failed"]:
            problems.append(
                f"storage {side}: {summary[side]['failed']} failed requests: {summary[side]['errors']}"
            )
    assert not problems, "; ".join(problems)


def choose_database(requested: str) -> tuple[str, str]:
    """(kind, why): PostgreSQL when asked or when it answers, else SQLite."""
    if requested == "sqlite":
        return "sqlite", "asked for SQLite"
    missing = postgres_reachable(postgres_url())
    if missing is None:
        return "postgres", "the local PostgreSQL answered"
    if requested == "postgres":
        raise SystemExit(f"--database postgres: {missing}")
    return "sqlite", f"{missing}: SQLite files instead"


async def run_async(kind: str, rounds: int, plan: Plan, warmup: Plan, control: bool) -> dict[str, Any]:
    from litellm_failover.drill.proxy_process import ProxyProcess, free_port
    from litellm_failover.providers.fake.process import FakeVLLMProcess

    nodes = {name: FakeVLLMProcess(name, tokens_per_s=0) for name in NODES}
    proxies: dict[str, ProxyProcess] = {}
    async with AsyncExitStack() as stack:
        urls = {side: await stack.enter_async_context(database(kind)) for side in SIDES}
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sessions-")))
        ports = {side: free_port() for side in SIDES}
        try:
            await asyncio.to_thread(start_all, list(nodes.values()))
            proxies = {
                side: ProxyProcess(
                    storage_config(nodes, urls[side], side == "on" and not control, ports[side]),
                    workdir / side,
                )
                for side in SIDES
            }
            await asyncio.to_thread(start_all, list(proxies.values()))
            try:
                await plugins_running(ports)  # before measuring: both proxies route with the plugin
                summary = await measure(proxies, rounds, plan, warmup)
                # Two message rows per answered turn (its user message and the answer; the resent
                # history is not stored again) and one turn each; nothing at all with storage off.
                turns = 0 if control else summary["on"]["turns_answered"]
                expected = {"off": (0, 0), "on": (2 * turns, turns)}
                settled = await settle(urls, ports, expected)
            except (AssertionError, RuntimeError) as exc:
                logs = "".join(f"\n--- proxy {side} log ---\n{p.log_tail(30)}" for side, p in proxies.items())
                raise RuntimeError(f"{exc}{logs}") from exc
        finally:
            for proxy in proxies.values():
                await asyncio.to_thread(proxy.stop)
            for node in nodes.values():
                node.stop()
    check_sanity(summary, settled, expected)
    return {**summary, "expected": expected, "settled": settled}


def run(quick: bool = False, requested_database: str = "auto", control: bool = False) -> dict[str, Any]:
    kind, why = choose_database(requested_database)
    # Full: 8 rounds x 40 conversations x 6 turns = 1,920 measured requests per proxy. Shorter rounds
    # (20 x 16) were tried: no less noise, and a higher p99 in both (each round starts from idle).
    rounds, plan, warmup = (2, Plan(8, 4, 4), Plan(4, 2, 4)) if quick else (8, Plan(40, 6, 8), Plan(8, 6, 8))
    summary = asyncio.run(run_async(kind, rounds, plan, warmup, control))

    a, b = summary["off"], summary["on"]
    p50_ratio = common.ratio(b["p50_ms"], a["p50_ms"])
    p99_ratio = common.ratio(b["p99_ms"], a["p99_ms"])
    rps_ratio = common.ratio(b["throughput_rps"], a["throughput_rps"])
    round_p50 = [
        common.ratio(rb["p50_ms"], ra["p50_ms"])
        for ra, rb in zip(a["per_round"], b["per_round"], strict=True)
    ]
    round_p99 = [
        common.ratio(rb["p99_ms"], ra["p99_ms"])
        for ra, rb in zip(a["per_round"], b["per_round"], strict=True)
    ]
    metrics = {
        "p50_ms_off": a["p50_ms"],
        "p50_ms_on": b["p50_ms"],
        "p99_ms_off": a["p99_ms"],
        "p99_ms_on": b["p99_ms"],
        "throughput_rps_off": a["throughput_rps"],
        "throughput_rps_on": b["throughput_rps"],
        "p50_ratio": p50_ratio,
        "p99_ratio": p99_ratio,
        "throughput_ratio": rps_ratio,
        "p50_ratio_plain": common.ratio(b["p50_ms_plain"], a["p50_ms_plain"]),
        "p50_ratio_stream": common.ratio(b["p50_ms_stream"], a["p50_ms_stream"]),
        "median_round_p50_ratio": common.median(round_p50),
        "median_round_p99_ratio": common.median(round_p99),
        "proxy_cpu_ms_per_request_off": a["proxy_cpu_ms_per_request"],
        "proxy_cpu_ms_per_request_on": b["proxy_cpu_ms_per_request"],
        "proxy_cpu_ratio": common.ratio(b["proxy_cpu_ms_per_request"], a["proxy_cpu_ms_per_request"]),
        "messages_stored": summary["settled"]["counts"]["on"][0],
        "failed_requests": a["failed"] + b["failed"],
    }
    goals = [
        common.Goal("p50 latency ratio storage on/off", p50_ratio, "<=", RATIO_GOAL),
        common.Goal("p99 latency ratio storage on/off", p99_ratio, "<=", RATIO_GOAL),
    ]
    details = {
        **summary,
        "database": kind,
        "database_why": why,
        "control": control,
        "requests_per_round": plan.requests,
        "conversations_per_round": plan.conversations,
        "turns_per_conversation": plan.turns,
        "concurrency": plan.concurrency,
        "warmup_requests": warmup.requests,
        "round_p50_ratios": round_p50,
        "round_p99_ratios": round_p99,
    }
    return common.result("session_storage", metrics, goals, details)


def report(data: dict[str, Any]) -> None:
    d, m = data["details"], data["metrics"]
    a, b = d["off"], d["on"]
    common.print_rows(
        ("CONTROL RUN, storage off on both: " if d["control"] else "")
        + f"LiteLLM proxy with the plugin, conversation storage off (A) / on (B), {d['database']}: "
        f"{d['rounds']} alternating rounds x {d['conversations_per_round']} conversations x "
        f"{d['turns_per_conversation']} turns (every second turn streamed), {d['concurrency']} at a time",
        ["", "storage off", "storage on", "ratio", "goal"],
        [
            ["p50 latency ms", a["p50_ms"], b["p50_ms"], m["p50_ratio"], f"<= {RATIO_GOAL}"],
            ["p99 latency ms", a["p99_ms"], b["p99_ms"], m["p99_ratio"], f"<= {RATIO_GOAL}"],
            ["median of per-round p50 ratios", "", "", m["median_round_p50_ratio"], ""],
            ["median of per-round p99 ratios", "", "", m["median_round_p99_ratio"], ""],
            ["p50 ms, non-streamed", a["p50_ms_plain"], b["p50_ms_plain"], m["p50_ratio_plain"], ""],
            ["p50 ms, streamed", a["p50_ms_stream"], b["p50_ms_stream"], m["p50_ratio_stream"], ""],
            ["throughput req/s", a["throughput_rps"], b["throughput_rps"], m["throughput_ratio"], ""],
            [
                "proxy CPU ms per request",
                a["proxy_cpu_ms_per_request"],
                b["proxy_cpu_ms_per_request"],
                m["proxy_cpu_ratio"],
                "",
            ],
            ["requests ok / failed", f"{a['ok']} / {a['failed']}", f"{b['ok']} / {b['failed']}", "", ""],
            [
                "messages / turns stored",
                *(f"{c[0]:,} / {c[1]:,}" for c in d["settled"]["counts"].values()),
                "",
                "",
            ],
        ],
    )
    common.print_rows(
        "per round (A B, B A, ...): p99 latency ms",
        ["round", "p99 off", "p99 on", "p99 ratio", "p50 ratio"],
        [
            [str(i), ra["p99_ms"], rb["p99_ms"], r99, r50]
            for i, (ra, rb, r99, r50) in enumerate(
                zip(a["per_round"], b["per_round"], d["round_p99_ratios"], d["round_p50_ratios"], strict=True)
            )
        ],
    )


def main() -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--database",
        choices=("auto", "postgres", "sqlite"),
        default="auto",
        help="auto: the local PostgreSQL when it answers, else SQLite",
    )
    p.add_argument(
        "--control",
        action="store_true",
        help="A/A: storage off on both proxies, to see the noise floor of the same measurement",
    )
    args = p.parse_args()
    data = run(quick=args.quick, requested_database=args.database, control=args.control)
    report(data)
    return common.finish(args, data)


if __name__ == "__main__":
    raise SystemExit(main())

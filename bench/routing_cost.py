"""Cost of one routing decision: LiteLLM's own pick alone vs with the failover plugin attached.

The plugin sits inside every pick (``async_filter_deployments``), retries included, so its cost is
paid on every request. This bench times ``Router.async_get_available_deployment`` on two Routers
built from the same model list, one with the plugin attached and one without, in alternating
blocks (A B, B A, ...) so that drift (CPU frequency, a neighbour's load) hits both equally, and
reports median nanoseconds per call and the ratio with/without for 3, 30 and 300 deployments.

It also times ``FailoverPlugin.route`` alone, the part the plugin adds, to show that a pick reads
a prebuilt table (O(log n)) rather than scanning the group; and the path taken when LiteLLM has
already filtered a deployment out, which has to look at the list.

Before any timing, a sanity check proves the "with" Router really routes through the plugin:
deployments ejected in the plugin's table are never returned, while LiteLLM alone still picks them.

Run: ``.venv/bin/python bench/routing_cost.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:  # python -m bench.routing_cost
    from bench import _common as common
except ImportError:  # python bench/routing_cost.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]

if TYPE_CHECKING:
    import litellm

    from litellm_failover.plugin import FailoverPlugin

GROUP = "chat"
SIZES = (3, 30, 300)
RATIO_GOAL = 1.10
MESSAGES = [{"role": "user", "content": "route me"}]
BLOCK_TARGET_S = 0.08  # one block of calls: long enough to time, short enough to alternate often
MAX_BLOCK_CALLS = 2_000
MIN_BLOCK_CALLS = 10
SIZE_DEADLINE_S = 25.0  # per group size, whatever the machine: the bench is always bounded
ROUTE_BATCH = 2_000  # route() alone is ~microseconds: time batches, not single calls


def model_list(n: int) -> list[dict[str, Any]]:
    """``n`` deployments of one group: two thirds primary (order 1), one third standby (order 2).

    Nothing is ever sent, so every api_base points at a port nobody listens on.
    """
    return [
        {
            "model_name": GROUP,
            "litellm_params": {
                "model": "hosted_vllm/fake-model",
                "api_base": f"http://127.0.0.1:{20000 + i}/v1",
                "order": 2 if i % 3 == 0 else 1,
            },
            "model_info": {"id": f"d{i}", "failover": {"gpu_url": f"http://127.0.0.1:{20000 + i}"}},
        }
        for i in range(n)
    ]


def make_router(n: int) -> litellm.Router:
    import litellm

    return litellm.Router(model_list=model_list(n))


def make_plugin(router: litellm.Router, workdir: Path) -> FailoverPlugin:
    from litellm_failover import attach

    return attach(router, {"database_url": f"sqlite+aiosqlite:///{workdir}/events.db"})


@contextlib.contextmanager
def unplugged(plugin: FailoverPlugin) -> Iterator[None]:
    """Take the plugin's handler out of ``litellm.callbacks`` for a "without" block.

    LiteLLM hands every Router's picks to every registered callback, so with the handler left in,
    the "without" Router would still pay for the handler's (cheap) not-my-router check.
    """
    import litellm

    index = litellm.callbacks.index(plugin.handler)
    litellm.callbacks.pop(index)
    try:
        yield
    finally:
        litellm.callbacks.insert(index, plugin.handler)


def assert_no_failover_handler() -> None:
    import litellm

    from litellm_failover.handler import FailoverHandler

    left = [c for c in litellm.callbacks if isinstance(c, FailoverHandler)]
    assert not left, f"a failover handler is still registered: {left}"


def request_kwargs(trace_id: str) -> dict[str, Any]:
    return {"litellm_trace_id": trace_id, "metadata": {}}


async def pick(router: litellm.Router, trace_id: str) -> str:
    deployment = await router.async_get_available_deployment(
        model=GROUP, request_kwargs=request_kwargs(trace_id), messages=MESSAGES
    )
    return str(deployment["model_info"]["id"])


# -- sanity: the "with" Router really routes through the plugin ---------------------------------


async def sanity_check(n: int, workdir: Path, picks: int) -> dict[str, Any]:
    """Eject a third of the primary tier in the plugin's table; the plugin must never return them.

    Also counts how often LiteLLM alone (same list, no plugin) returns one of them, to show the
    check is not passing by accident.
    """
    from litellm_failover.outlier import Outcome

    router = make_router(n)
    plugin = make_plugin(router, workdir / f"sanity-{n}")
    try:
        primaries = [f"d{i}" for i in range(n) if i % 3 != 0]
        ejected = set(primaries[::3])  # n=3: d1 of d1, d2; the other primary must take everything
        for deployment_id in ejected:
            plugin.core.record_failure(deployment_id, Outcome.CONNECT_ERROR)
        states = {d: plugin.core.health[d].state.value for d in ejected}
        assert all(s == "unhealthy" for s in states.values()), f"ejection did not take: {states}"
        serving = set(plugin.core.tables[GROUP].serving)
        assert serving and not serving & ejected, "the plugin's table still serves an ejected deployment"
        with_plugin = Counter([await pick(router, f"sanity-{n}-with-{i}") for i in range(picks)])
        bad = {d: c for d, c in with_plugin.items() if d not in serving}
        assert not bad, f"the plugin's Router returned deployments outside its table: {bad}"
        # The request book saw every pick: proof the handler ran for these requests, not LiteLLM alone.
        last = plugin.book.get(f"sanity-{n}-with-{picks - 1}")
        assert last is not None and last.last_pick in serving, "the request book did not see the pick"
    finally:
        plugin.detach()
    assert_no_failover_handler()
    alone = make_router(n)
    litellm_alone = Counter([await pick(alone, f"sanity-{n}-alone-{i}") for i in range(picks)])
    return {
        "ejected": sorted(ejected),
        "plugin_picks_of_ejected": sum(with_plugin[d] for d in ejected),
        "litellm_alone_picks_of_ejected": sum(litellm_alone[d] for d in ejected),
        "picks": picks,
        "distinct_plugin_picks": len(with_plugin),
    }


# -- Router.async_get_available_deployment, with and without --------------------------------------


async def timed_block(router: litellm.Router, prefix: str, calls: int, sink: list[str]) -> list[int]:
    """``calls`` picks, each timed on its own; trace ids are unique per call as in real traffic."""
    gc.collect()
    await asyncio.sleep(0)  # let anything LiteLLM scheduled run outside the timed region
    durations: list[int] = []
    clock = time.perf_counter_ns
    for i in range(calls):
        kwargs = request_kwargs(f"{prefix}-{i}")
        started = clock()
        deployment = await router.async_get_available_deployment(
            model=GROUP, request_kwargs=kwargs, messages=MESSAGES
        )
        durations.append(clock() - started)
        sink.append(deployment["model_info"]["id"])
    return durations


def finish(plugin: FailoverPlugin, trace_ids: Iterable[str]) -> None:
    """End the timed requests as answered ones end (the plugin's success hook), outside the timed
    region. Picks alone never end: the plugin's request book and the rescue's attempts would keep
    every one until ``drain.in_flight_ttl_s`` and then their bound (100,000), expiring the oldest on
    every pick, where a live process holds only its requests in flight."""
    for trace_id in trace_ids:
        routing = plugin.book.get(trace_id)
        if routing is not None and routing.last_pick is not None:
            plugin.request_succeeded(routing.last_pick, None, (trace_id,))


async def compare(n: int, workdir: Path, blocks: int) -> dict[str, Any]:
    """Time the three Routers in rotating blocks; ``control`` is informational.

    ``control`` is LiteLLM alone with ``disable_cooldowns`` set, as the plugin sets it on its own
    Router: it separates what the plugin costs from what switching LiteLLM's cooldown lookup off
    saves, so a ratio below 1 can be read correctly.
    """
    from litellm_failover.outlier import Outcome

    routers = {"without": make_router(n), "with": make_router(n), "control": make_router(n)}
    routers["control"].disable_cooldowns = True
    plugin = make_plugin(routers["with"], workdir / f"timing-{n}")
    # One primary ejected in the plugin's table for the whole run: every "with" pick is checked
    # against it afterwards, so a silent fall-back to LiteLLM's own pick cannot go unnoticed.
    plugin.core.record_failure("d1", Outcome.CONNECT_ERROR)
    # LiteLLM's import leaves a heap that takes ~0.2 s per full collection; freezing what exists
    # now keeps the per-block collections cheap and out of every mode's timings alike.
    gc.freeze()
    modes = ("without", "with", "control")
    times: dict[str, list[int]] = {mode: [] for mode in modes}
    picks: dict[str, list[str]] = {mode: [] for mode in modes}

    async def block(mode: str, prefix: str, calls: int, sink: list[str]) -> list[int]:
        if mode == "with":
            durations = await timed_block(routers[mode], prefix, calls, sink)
            finish(plugin, (f"{prefix}-{i}" for i in range(calls)))
            return durations
        with unplugged(plugin):
            assert_no_failover_handler()
            return await timed_block(routers[mode], prefix, calls, sink)

    try:
        # Warm every Router (first-call caches, lazy imports), then size a block to ~BLOCK_TARGET_S.
        for mode in modes:
            await block(mode, f"warm-{n}-{mode}", 20, [])
        per_call_s = common.median(await block("without", f"calib-{n}", 20, [])) / 1e9
        calls = int(min(MAX_BLOCK_CALLS, max(MIN_BLOCK_CALLS, BLOCK_TARGET_S / per_call_s)))
        deadline = time.monotonic() + SIZE_DEADLINE_S
        done_blocks = 0
        for index in range(blocks):
            if time.monotonic() > deadline:
                break
            # Rotate which mode goes first so none always runs right after a collection or another.
            for mode in modes[index % 3 :] + modes[: index % 3]:
                times[mode] += await block(mode, f"{mode}-{n}-{index}", calls, picks[mode])
            done_blocks += 1

        serving = set(plugin.core.tables[GROUP].serving)
        with_counts = Counter(picks["with"])
        assert with_counts["d1"] == 0, "the plugin's Router returned a deployment the plugin ejected"
        assert set(with_counts) <= serving, "the plugin's Router returned deployments outside its table"
        route = time_route(plugin, routers["with"], n)
    finally:
        plugin.detach()
    assert_no_failover_handler()
    medians = {mode: common.median(times[mode]) for mode in modes}
    return {
        "deployments": n,
        "calls_per_block": calls,
        "blocks": done_blocks,
        "calls_each": len(times["with"]),
        "median_ns_without": medians["without"],
        "median_ns_with": medians["with"],
        "median_ns_control": medians["control"],
        "p90_ns_without": common.percentile(times["without"], 90),
        "p90_ns_with": common.percentile(times["with"], 90),
        "ratio": common.ratio(medians["with"], medians["without"]),
        "ratio_vs_control": common.ratio(medians["with"], medians["control"]),
        "litellm_alone_picks_of_ejected_d1": Counter(picks["without"])["d1"],
        "plugin_picks_of_ejected_d1": with_counts["d1"],
        **route,
    }


# -- FailoverPlugin.route alone ---------------------------------------------------------------------


def time_route(plugin: FailoverPlugin, router: litellm.Router, n: int, batches: int = 15) -> dict[str, float]:
    """``route(group, healthy, kwargs)`` in batches of ROUTE_BATCH calls: median ns per call.

    ``full``: LiteLLM filtered nothing out (the common case: the plugin owns health, LiteLLM's
    cooldowns are off) and the plugin picks straight from its table. ``filtered``: LiteLLM removed
    one deployment first (a team, tag or context-window filter), so the plugin has to look at
    the list it was given.

    Each batch runs inside ``async_get_available_deployment`` below, a frame named as LiteLLM's
    pick: the rescue captures each attempt from the pick function's frame, as inside a real
    pick, instead of walking the whole stack and finding none (a path no LiteLLM pick takes).
    """
    healthy = [d for d in router.model_list if d["model_name"] == GROUP]  # the Router's own dicts
    serving = set(plugin.core.tables[GROUP].serving)
    routed = plugin.route(GROUP, healthy, {"litellm_trace_id": "route-check"})
    assert len(routed) == 1 and routed[0]["model_info"]["id"] in serving, (
        "route() did not pick from its table"
    )
    filtered = healthy[:-1]
    out: dict[str, float] = {}
    for label, given in (("full", healthy), ("filtered", filtered)):
        per_batch: list[float] = []
        for batch in range(batches):
            kwargs = [{"litellm_trace_id": f"route-{label}-{n}-{batch}-{i}"} for i in range(ROUTE_BATCH)]
            gc.collect()
            per_batch.append(async_get_available_deployment(plugin, given, kwargs) / ROUTE_BATCH)
            finish(plugin, (k["litellm_trace_id"] for k in kwargs))
        out[f"route_ns_{label}"] = common.median(per_batch)
    return out


def async_get_available_deployment(plugin: FailoverPlugin, given: list[dict], batch: list[dict]) -> int:
    """Nanoseconds for ``route`` over ``batch``, called from a frame named as LiteLLM's pick
    (see ``time_route``)."""
    started = time.perf_counter_ns()
    for k in batch:
        plugin.route(GROUP, given, k)
    return time.perf_counter_ns() - started


# -- main -----------------------------------------------------------------------------------------


async def run(quick: bool = False) -> dict[str, Any]:
    import litellm

    litellm.suppress_debug_info = True
    blocks = 4 if quick else 16
    sanity_picks = 60 if quick else 300
    rows: list[dict[str, Any]] = []
    sanity: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-routing-") as tmp:
        workdir = Path(tmp)
        for n in SIZES:
            sanity[str(n)] = await sanity_check(n, workdir, sanity_picks)
            rows.append(await compare(n, workdir, blocks))

    by_size = {row["deployments"]: row for row in rows}
    metrics: dict[str, float] = {}
    goals: list[common.Goal] = []
    for row in rows:
        n = row["deployments"]
        metrics[f"median_ns_without_{n}"] = row["median_ns_without"]
        metrics[f"median_ns_with_{n}"] = row["median_ns_with"]
        metrics[f"ratio_{n}"] = row["ratio"]
        metrics[f"median_ns_control_{n}"] = row["median_ns_control"]
        metrics[f"ratio_vs_control_{n}"] = row["ratio_vs_control"]
        metrics[f"route_ns_full_{n}"] = row["route_ns_full"]
        metrics[f"route_ns_filtered_{n}"] = row["route_ns_filtered"]
        goals.append(
            common.Goal(f"routing ratio with/without, {n} deployments", row["ratio"], "<=", RATIO_GOAL)
        )
    metrics["route_growth_full_300_over_3"] = common.ratio(
        by_size[300]["route_ns_full"], by_size[3]["route_ns_full"]
    )
    metrics["route_growth_filtered_300_over_3"] = common.ratio(
        by_size[300]["route_ns_filtered"], by_size[3]["route_ns_filtered"]
    )
    return common.result("routing_cost", metrics, goals, {"sizes": rows, "sanity": sanity})


def report(data: dict[str, Any]) -> None:
    sizes = data["details"]["sizes"]
    common.print_rows(
        "Router.async_get_available_deployment: median ns/call, rotating blocks "
        "(control = LiteLLM alone with cooldowns off, as the plugin sets them)",
        [
            "deployments",
            "without plugin",
            "with plugin",
            "ratio",
            "goal",
            "control",
            "with / control",
            "calls each",
        ],
        [
            [
                str(r["deployments"]),
                r["median_ns_without"],
                r["median_ns_with"],
                r["ratio"],
                f"<= {RATIO_GOAL}",
                r["median_ns_control"],
                r["ratio_vs_control"],
                r["calls_each"],
            ]
            for r in sizes
        ],
    )
    m = data["metrics"]
    common.print_rows(
        "FailoverPlugin.route alone: median ns/call",
        ["deployments", "full list (table pick)", "one filtered out by LiteLLM"],
        [[str(r["deployments"]), r["route_ns_full"], r["route_ns_filtered"]] for r in sizes]
        + [["300 / 3", m["route_growth_full_300_over_3"], m["route_growth_filtered_300_over_3"]]],
    )
    common.print_rows(
        "Sanity: picks of deployments ejected in the plugin's table",
        ["deployments", "ejected", "with plugin", "LiteLLM alone", "picks each"],
        [
            [
                n,
                str(len(s["ejected"])),
                s["plugin_picks_of_ejected"],
                s["litellm_alone_picks_of_ejected"],
                s["picks"],
            ]
            for n, s in data["details"]["sanity"].items()
        ],
    )


def main() -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    data = asyncio.run(run(quick=args.quick))
    report(data)
    return common.finish(args, data)


if __name__ == "__main__":
    raise SystemExit(main())

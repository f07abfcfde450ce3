"""The plugin's Prometheus metrics, scraped over real HTTP from the plugin's own port.

A real ``litellm.Router`` with the plugin attached, real fake-vLLM servers probed by the plugin,
and a real aiohttp client; pages are parsed with prometheus_client's own parser, which also
rejects a malformed page or a duplicated series.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.metadata
import logging
import socket
import time
from collections.abc import Mapping

import pytest
from factories import attached, bad_report, good_report, model_list
from metrics_scrape import names, parse, scrape, state_of, value
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_until

from litellm_failover import FailoverConfigError, __version__
from litellm_failover.control.signing import SignatureError
from litellm_failover.events import FailoverEvent
from litellm_failover.metrics import MetricsPortError, PluginCollector, PluginMetrics
from litellm_failover.metrics.catalog import CATALOG
from litellm_failover.metrics.counters import EventCounters
from litellm_failover.metrics.probe_latency import ProbeLatency
from litellm_failover.outlier import Outcome
from litellm_failover.providers.fake.vllm import FakeVLLM

FAST_HEALTH = {"interval_s": 0.1, "failure_interval_s": 0.05, "max_probe_latency_s": 1.0}
STATE = "litellm_failover_deployment_state"


@pytest.fixture
def make_plugin(tmp_path):
    """``make_plugin(entries, **settings)`` -> plugin, each on a database of its own."""
    with attached({"health": FAST_HEALTH}) as make:

        def one(entries: list[dict], **settings: object):
            database_url = f"sqlite+aiosqlite:///{tmp_path}/events-{len(make.plugins)}.db"
            return make(entries, {"database_url": database_url, **settings})[1]

        yield one


@pytest.fixture
async def servers():
    async with contextlib.AsyncExitStack() as stack:
        yield {
            name: await stack.enter_async_context(FakeVLLM(name, tokens_per_s=0))
            for name in ("p1", "p2", "s1")
        }


def probed_deployments(servers: Mapping[str, FakeVLLM]) -> list[dict]:
    order = {"p1": 1, "p2": 1, "s1": 2}
    return [
        {
            "model_name": "chat",
            "litellm_params": {"model": "hosted_vllm/fake-model", "api_base": s.api_base, "order": order[n]},
            "model_info": {"id": n, "failover": {"gpu_url": s.url}},
        }
        for n, s in servers.items()
    ]


def unprobed(*entries: tuple[str, str, int, float]) -> list[dict]:
    listed = model_list(*entries)
    for entry in listed:
        entry["model_info"]["failover"] = {"probe": False}
    return listed


async def test_own_port_follows_a_deployment_out_and_back(servers, make_plugin):
    plugin = make_plugin(probed_deployments(servers), metrics={"port": 0})
    metrics = plugin.metrics  # the plugin's own, started with it
    async with plugin:
        try:
            url = metrics.url
            assert url is not None and metrics.port and url.endswith(f":{metrics.port}/metrics")

            async def page():
                return await scrape(url)

            async def probed_healthy() -> bool:
                s = await page()
                probes = value(
                    s, "litellm_failover_probe_latency_seconds_count", model_group="chat", deployment="p1"
                )
                return state_of(s, "chat", "p1") == "healthy" and bool(probes)

            await wait_until(probed_healthy, timeout=10, what="p1 probed and healthy on the page")
            s = await page()
            assert value(s, "litellm_failover_deployment_serving", model_group="chat", deployment="p1") == 1
            assert value(s, "litellm_failover_deployment_serving", model_group="chat", deployment="s1") == 0
            assert value(s, "litellm_failover_deployment_tier", model_group="chat", deployment="s1") == 2
            assert value(s, "litellm_failover_group_active_tier", model_group="chat") == 1
            assert value(s, "litellm_failover_group_panic", model_group="chat") == 0
            assert (
                value(s, "litellm_failover_deployment_ramp_factor", model_group="chat", deployment="p1") == 1
            )
            assert (
                value(
                    s,
                    "litellm_failover_probe_check_ok",
                    model_group="chat",
                    deployment="p1",
                    check="http_health",
                )
                == 1
            )
            assert value(s, "litellm_failover_probe_rounds_total") > 0
            # The drain feature's in-flight counts: nothing is in flight between requests.
            in_flight = "litellm_failover_deployment_in_flight_requests"
            assert value(s, in_flight, model_group="chat", deployment="p1") == 0

            servers["p1"].set_fault("http_500")

            async def ejected() -> bool:
                return state_of(await page(), "chat", "p1") == "unhealthy"

            await wait_until(ejected, timeout=10, what="p1 unhealthy on the page")
            s = await page()
            assert (
                value(s, "litellm_failover_deployment_effective_weight", model_group="chat", deployment="p1")
                == 0
            )
            assert value(s, "litellm_failover_deployment_serving", model_group="chat", deployment="p1") == 0
            assert value(s, "litellm_failover_failovers_total", model_group="chat", reason="probe") >= 1
            assert (
                value(
                    s,
                    "litellm_failover_state_changes_total",
                    model_group="chat",
                    deployment="p1",
                    state="unhealthy",
                )
                >= 1
            )
            table = plugin.core.tables["chat"]
            assert value(
                s, "litellm_failover_deployment_effective_weight", model_group="chat", deployment="p2"
            ) == pytest.approx(table.weights["p2"], abs=0.05)

            servers["p1"].clear_fault()

            async def back() -> bool:
                return state_of(await page(), "chat", "p1") == "healthy"

            await wait_until(back, timeout=10, what="p1 healthy again on the page")
        finally:
            await metrics.stop()
    assert metrics.port is None


async def test_failovers_are_counted_by_a_bounded_reason(make_plugin):
    plugin = make_plugin(unprobed(("chat", "p1", 1, 1.0), ("chat", "s1", 2, 1.0)))
    metrics = PluginMetrics(plugin, default_registry=CollectorRegistry())
    metrics.install()
    metrics.install()  # idempotent: one listener, one membership
    assert plugin.core.listeners.count(metrics.counters) == 1
    core = plugin.core

    core.record_failure("p1", Outcome.CONNECT_ERROR, request_id="r1", error="refused")  # ejects at once
    core.request_served_elsewhere("chat", "p1", "s1", "r1")
    for source in ("drain", "made up by a future feature"):
        core.emit(FailoverEvent(event_type="failover", model_group="chat", details={"source": source}))
    core.emit(FailoverEvent(event_type="failover", model_group="chat", reason="routing table rebuilt"))

    s = parse(generate_latest(metrics.registry).decode())
    counted = {
        dict(labels)["reason"]: v
        for (name, labels), v in s.items()
        if name == "litellm_failover_failovers_total"
    }
    assert counted == {"traffic": 1, "request": 1, "drain": 1, "other": 1, "refresh": 1}
    assert value(s, "litellm_failover_deployment_ejections", model_group="chat", deployment="p1") == 1

    metrics.uninstall()
    assert metrics.counters not in core.listeners


async def test_writer_queue_and_drops_show(make_plugin):
    """A writer that can't write (never started) and holds 3 rows: the rest are dropped, counted."""
    plugin = make_plugin(
        unprobed(("chat", "p1", 1, 1.0), ("chat", "p2", 1, 1.0)),
        writer={"max_buffer": 3},
        metrics={"port": 0},
    )
    metrics = plugin.metrics
    await metrics.start()  # the plugin itself is never started here: its writer stays down
    try:
        before = await scrape(metrics.url)
        assert value(before, "litellm_failover_writer_dropped_rows_total", kind="events") == 0
        assert value(before, "litellm_failover_writer_connected") == 0
        for _ in range(5):  # each round ejects p1 (connect error), then the timer brings it back
            plugin.core.record_failure("p1", Outcome.CONNECT_ERROR)
            plugin.core.health["p1"].outlier.ejected_until = 0.0
            plugin.core.tick()
        stats = plugin.writer.stats()
        assert stats["dropped"] > 0
        after = await scrape(metrics.url)
        assert value(after, "litellm_failover_writer_dropped_rows_total", kind="events") == stats["dropped"]
        assert value(after, "litellm_failover_writer_queue_depth") == stats["queued"]
        assert value(after, "litellm_failover_writer_written_rows_total", kind="events") == 0
    finally:
        await metrics.stop()


async def test_two_plugins_in_one_process(make_plugin, caplog):
    """Own ports show each plugin exactly; the shared default registry merges without a clash."""
    a = make_plugin(unprobed(("chat", "p1", 1, 1.0), ("chat", "p2", 1, 1.0)), metrics={"port": 0})
    b = make_plugin(
        unprobed(("chat", "p1", 1, 1.0), ("chat", "p2", 1, 1.0), ("embed", "e1", 1, 1.0)), metrics={"port": 0}
    )
    shared = CollectorRegistry()
    ma, mb = PluginMetrics(a, default_registry=shared), PluginMetrics(b, default_registry=shared)
    await ma.start()
    await mb.start()
    try:
        assert ma.port != mb.port
        a.core.record_failure("p1", Outcome.CONNECT_ERROR)
        page_a, page_b = await scrape(ma.url), await scrape(mb.url)
        assert state_of(page_a, "chat", "p1") == "unhealthy"
        assert state_of(page_b, "chat", "p1") == "healthy"
        assert state_of(page_b, "embed", "e1") == "healthy" and state_of(page_a, "embed", "e1") is None

        with caplog.at_level(logging.WARNING, logger="litellm_failover"):
            merged = parse(generate_latest(shared).decode())  # parse() fails on a duplicate series
        assert state_of(merged, "chat", "p1") == "unhealthy"  # a joined first: its view is kept
        assert state_of(merged, "embed", "e1") == "healthy"
        depth = a.writer.stats()["queued"] + b.writer.stats()["queued"]
        assert value(merged, "litellm_failover_writer_queue_depth") == depth
        assert "two litellm-failover plugins" in caplog.text

        await ma.stop()  # a leaves the shared registry; b's view of chat/p1 shows
        assert state_of(parse(generate_latest(shared).decode()), "chat", "p1") == "healthy"
    finally:
        await ma.stop()
        await mb.stop()


async def test_default_registry_holds_one_bridge_for_every_plugin(make_plugin):
    gc.collect()  # plugins of earlier tests, if any are unreferenced, leave the page
    a = make_plugin(unprobed(("metrics-a", "a1", 1, 1.0)))
    b = make_plugin(unprobed(("metrics-b", "b1", 1, 1.0)))
    ma, mb = a.metrics, b.metrics  # each plugin installs its own when attached
    try:
        page = parse(generate_latest(REGISTRY).decode())
        assert state_of(page, "metrics-a", "a1") == "healthy"
        assert state_of(page, "metrics-b", "b1") == "healthy"
        assert "python_info" in names(page) or "python_gc_objects_collected_total" in names(page)
    finally:
        ma.uninstall()
        mb.uninstall()
    assert state_of(parse(generate_latest(REGISTRY).decode()), "metrics-a", "a1") is None


async def test_metrics_port_in_use_is_a_clear_error(make_plugin):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        plugin = make_plugin(unprobed(("chat", "p1", 1, 1.0)), metrics={"port": port})
        metrics = PluginMetrics(plugin, default_registry=CollectorRegistry())
        with pytest.raises(MetricsPortError) as raised:
            await metrics.start()
    message = str(raised.value)
    assert "failover_settings.metrics.port" in message and str(port) in message and "in use" in message
    assert isinstance(raised.value, FailoverConfigError)
    assert metrics.port is None
    await metrics.stop()


async def test_bad_metrics_settings_name_the_key(make_plugin):
    for bad, key in (
        ({"port": 70000}, "metrics.port"),
        ({"host": ""}, "metrics.host"),
        ({"prot": 1}, "metrics.prot"),
    ):
        with pytest.raises(FailoverConfigError, match=rf"failover_settings\.{key}"):
            make_plugin(unprobed(("chat", "p1", 1, 1.0)), metrics=bad)


async def test_disabled_metrics_register_and_serve_nothing(make_plugin):
    plugin = make_plugin(unprobed(("chat", "p1", 1, 1.0)), metrics={"enabled": False, "port": 0})
    shared = CollectorRegistry()
    metrics = PluginMetrics(plugin, default_registry=shared)
    await metrics.start()
    assert metrics.port is None and metrics.counters not in plugin.core.listeners
    assert b"litellm_failover_" not in generate_latest(shared)
    assert metrics.stats()["enabled"] is False
    await metrics.stop()


class WithProviders:
    """A ``MetricsSource``: a real plugin plus the providers the drain and ramp features add."""

    def __init__(self, plugin, in_flight, ramps, draining) -> None:
        self.core, self.writer, self.prober = plugin.core, plugin.writer, plugin.prober
        self._in_flight, self._ramps, self._draining = in_flight, ramps, draining

    def in_flight_counts(self) -> Mapping[str, int]:
        return self._in_flight()

    def ramp_factors(self) -> Mapping[str, float]:
        return self._ramps

    def draining(self) -> frozenset[str]:
        return self._draining


async def test_optional_providers_appear_when_the_plugin_has_them(make_plugin, caplog):
    plugin = make_plugin(unprobed(("chat", "p1", 1, 1.0), ("chat", "p2", 1, 1.0)))
    source = WithProviders(plugin, lambda: {"p1": 3}, {"p2": 0.1}, frozenset({"p1"}))
    collector = PluginCollector(source)
    registry = CollectorRegistry()
    registry.register(collector)
    s = parse(generate_latest(registry).decode())
    assert (
        value(s, "litellm_failover_deployment_in_flight_requests", model_group="chat", deployment="p1") == 3
    )
    assert (
        value(s, "litellm_failover_deployment_in_flight_requests", model_group="chat", deployment="p2") == 0
    )
    assert value(s, "litellm_failover_deployment_ramp_factor", model_group="chat", deployment="p2") == 0.1
    assert value(s, "litellm_failover_deployment_ramp_factor", model_group="chat", deployment="p1") == 1.0
    assert value(s, "litellm_failover_deployment_draining", model_group="chat", deployment="p1") == 1
    assert value(s, "litellm_failover_deployment_draining", model_group="chat", deployment="p2") == 0

    def broken() -> Mapping[str, int]:
        raise RuntimeError("in-flight tracker broke")

    source._in_flight = broken
    with caplog.at_level(logging.WARNING, logger="litellm_failover"):
        s = parse(generate_latest(registry).decode())
    # The broken provider is left out of the scrape; everything else is still there.
    assert "litellm_failover_deployment_in_flight_requests" not in names(s)
    assert state_of(s, "chat", "p1") == "healthy"
    assert "in_flight_counts" in caplog.text


async def test_no_secret_or_url_reaches_a_label(make_plugin):
    secret = "sk-live-metrics-0123456789"
    entries = unprobed(("chat", "p1", 1, 1.0))
    entries[0]["litellm_params"]["api_key"] = secret
    plugin = make_plugin(entries, database_url="postgresql+asyncpg://nobody:hunter2@127.0.0.1:9/none")
    metrics = PluginMetrics(plugin, default_registry=CollectorRegistry())
    plugin.core.apply_probe("p1", bad_report("HTTP 500 from http://127.0.0.1:1/p1/v1"))
    text = generate_latest(metrics.registry).decode()
    assert secret not in text and "hunter2" not in text and "http://" not in text
    assert secret not in str(metrics.stats()) and "hunter2" not in str(metrics.stats())


def test_scrape_of_300_deployments_is_quick(make_plugin):
    """The number for the README: 300 probed-looking deployments in 30 groups, one scrape."""
    entries = model_list(*[(f"g{i % 30}", f"d{i}", 1 + i % 2, 1.0) for i in range(300)])
    plugin = make_plugin(entries)
    for i, record in enumerate(plugin.core.health.values()):
        plugin.core.apply_probe(record.spec.deployment_id, good_report(0.001 * (i % 7)))
    metrics = PluginMetrics(plugin, default_registry=CollectorRegistry())
    generate_latest(metrics.registry)  # warm
    runs = 20
    started = time.perf_counter()
    for _ in range(runs):
        body = generate_latest(metrics.registry)
    per_scrape = (time.perf_counter() - started) / runs
    s = parse(body.decode())
    assert sum(1 for (name, _labels), v in s.items() if name == STATE and v == 1) == 300
    size = f"{len(body) / 1024:.0f} KiB, {len(s)} series"
    print(f"\nscrape of 300 deployments: {per_scrape * 1000:.1f} ms, {size}")
    assert per_scrape < 1.0  # generous: a shared CI core; measured figure is in the report


async def test_scrapes_from_a_thread_while_the_loop_changes_state(make_plugin):
    """LiteLLM renders /metrics in a worker thread: scraping while health flips must never fail."""
    plugin = make_plugin(unprobed(*[("chat", f"d{i}", 1, 1.0) for i in range(20)]))
    metrics = PluginMetrics(plugin, default_registry=CollectorRegistry())
    metrics.install()
    stop = time.monotonic() + 1.0
    scrapes = 0

    def scrape_repeatedly() -> int:
        count = 0
        while time.monotonic() < stop:
            parse(generate_latest(metrics.registry).decode())
            count += 1
        return count

    scraper = asyncio.get_running_loop().run_in_executor(None, scrape_repeatedly)
    flips = 0
    while time.monotonic() < stop and flips < 100_000:
        deployment = f"d{flips % 20}"
        plugin.core.record_failure(deployment, Outcome.CONNECT_ERROR)
        plugin.core.health[deployment].outlier.ejected_until = 0.0
        plugin.core.tick()
        flips += 1
        if flips % 50 == 0:
            await asyncio.sleep(0)
    scrapes = await scraper
    assert scrapes > 0 and flips > 0
    metrics.uninstall()


# -- Prometheus conventions (issue 13): histogram, join label, event counters, build info -----


def bucket(s, le: str, deployment: str) -> float | None:
    name = "litellm_failover_probe_latency_seconds_bucket"
    return value(s, name, model_group="chat", deployment=deployment, le=le)


async def test_probe_latency_is_a_histogram_of_every_report(make_plugin):
    plugin = make_plugin(model_list(("chat", "p1", 1, 1.0), ("chat", "p2", 1, 1.0), ("chat", "u1", 2, 1.0)))
    plugin.core.health["u1"].probed = False  # a deployment with ``probe: false`` has no histogram
    plugin.core.tick()  # readers see the core through its snapshot: publish the change
    metrics = PluginMetrics(plugin, default_registry=CollectorRegistry())
    metrics.install()
    assert metrics.probe_latency.observe in plugin.prober.report_listeners
    s = parse(generate_latest(metrics.registry).decode())
    # Probed but not probed yet: the series exist at zero, so rate() sees them from the start.
    assert bucket(s, "+Inf", "p1") == 0 and bucket(s, "0.005", "p1") == 0
    assert value(s, "litellm_failover_probe_latency_seconds_count", model_group="chat", deployment="p1") == 0
    assert bucket(s, "+Inf", "u1") is None

    # What the prober does with each round's report: every listener is told, with the round's ids.
    for listener in plugin.prober.report_listeners:
        for latency in (0.003, 0.04, 0.04, 0.25, 30.0):
            listener(("p1", "p2"), good_report(latency))
    s = parse(generate_latest(metrics.registry).decode())
    for deployment in ("p1", "p2"):
        assert bucket(s, "0.005", deployment) == 1
        assert bucket(s, "0.025", deployment) == 1
        assert bucket(s, "0.05", deployment) == 3
        assert bucket(s, "0.25", deployment) == 4  # a latency on a bound counts in that bucket
        assert bucket(s, "10.0", deployment) == 4
        assert bucket(s, "+Inf", deployment) == 5
        labels = {"model_group": "chat", "deployment": deployment}
        assert value(s, "litellm_failover_probe_latency_seconds_count", **labels) == 5
        assert value(s, "litellm_failover_probe_latency_seconds_sum", **labels) == pytest.approx(30.333)
    assert "litellm_failover_probe_latency_seconds" not in names(s)  # no gauge of the last probe

    metrics.uninstall()
    assert metrics.probe_latency.observe not in plugin.prober.report_listeners


async def test_every_deployment_series_joins_litellms_model_id(make_plugin):
    plugin = make_plugin(unprobed(("chat", "p1", 1, 1.0), ("chat", "s1", 2, 1.0)))
    metrics = PluginMetrics(plugin, default_registry=CollectorRegistry())
    metrics.install()
    plugin.core.record_failure("p1", Outcome.CONNECT_ERROR)  # a state change counted per deployment
    s = parse(generate_latest(metrics.registry).decode())
    with_deployment = [dict(labels) for _name, labels in s if "deployment" in dict(labels)]
    assert len(with_deployment) > 10
    # LiteLLM labels a deployment ``model_id`` (= model_info.id), which is the plugin's id for it.
    assert all(labels["model_id"] == labels["deployment"] for labels in with_deployment)
    assert {labels["model_id"] for labels in with_deployment} == {"p1", "s1"}
    metrics.uninstall()


async def test_streams_drains_and_alerts_are_counted(make_plugin):
    plugin = make_plugin(unprobed(("chat", "p1", 1, 1.0), ("chat", "p2", 1, 1.0)))
    metrics = PluginMetrics(plugin, default_registry=CollectorRegistry())
    metrics.install()
    s = parse(generate_latest(metrics.registry).decode())
    assert value(s, "litellm_failover_alerts_sent_total") == 0  # the plugin's alerter, no targets
    assert value(s, "litellm_failover_alerts_failed_total") == 0
    assert value(s, "litellm_failover_streams_resumed_total", model_group="chat") is None  # none yet

    core = plugin.core
    for event_type, deployment in (
        ("stream_resumed", "p2"),
        ("stream_resumed", "p2"),
        ("stream_broken", "p1"),
        ("drain_started", "p1"),
        ("drain_completed", "p1"),
        ("drain_started", "p2"),
    ):
        core.emit(FailoverEvent(event_type=event_type, model_group="chat", deployment_id=deployment))
    s = parse(generate_latest(metrics.registry).decode())
    assert value(s, "litellm_failover_streams_resumed_total", model_group="chat") == 2
    assert value(s, "litellm_failover_streams_broken_total", model_group="chat") == 1
    started = "litellm_failover_drains_started_total"
    assert value(s, started, model_group="chat", deployment="p1") == 1
    assert value(s, started, model_group="chat", deployment="p2") == 1
    assert value(s, "litellm_failover_drains_completed_total", model_group="chat", deployment="p1") == 1
    assert value(s, "litellm_failover_drains_completed_total", model_group="chat", deployment="p2") is None
    metrics.uninstall()


class WithAlerter(WithProviders):
    def __init__(self, plugin, stats) -> None:
        super().__init__(plugin, dict, {}, frozenset())
        self.alerter = type("Alerter", (), {"stats": staticmethod(lambda: stats)})()


async def test_alert_deliveries_come_from_the_alerters_counts(make_plugin):
    plugin = make_plugin(unprobed(("chat", "p1", 1, 1.0)))
    registry = CollectorRegistry()
    registry.register(PluginCollector(WithAlerter(plugin, {"sent": 7, "failed": 2, "admitted": 9})))
    s = parse(generate_latest(registry).decode())
    assert value(s, "litellm_failover_alerts_sent_total") == 7
    assert value(s, "litellm_failover_alerts_failed_total") == 2


async def test_build_info_names_both_versions(make_plugin, caplog):
    a = make_plugin(unprobed(("chat", "p1", 1, 1.0)))
    b = make_plugin(unprobed(("embed", "e1", 1, 1.0)))
    shared = CollectorRegistry()
    ma, mb = PluginMetrics(a, default_registry=shared), PluginMetrics(b, default_registry=shared)
    ma.install()
    mb.install()
    build = {"version": __version__, "litellm_version": importlib.metadata.version("litellm")}
    assert value(parse(generate_latest(ma.registry).decode()), "litellm_failover_build_info", **build) == 1
    with caplog.at_level(logging.WARNING, logger="litellm_failover"):
        merged = parse(generate_latest(shared).decode())
    assert value(merged, "litellm_failover_build_info", **build) == 1  # once, for the process
    assert "build_info" not in caplog.text  # two plugins' build info is no clash
    ma.uninstall()
    mb.uninstall()


class Everything(WithAlerter):
    """A source with every optional provider, so every catalogued family has samples."""

    def __init__(self, plugin) -> None:
        super().__init__(plugin, {"sent": 1, "failed": 0})
        self._in_flight = lambda: {"p1": 1}
        self.fleet = type(
            "Fleet", (), {"status": staticmethod(lambda: {"connected": True, "published": 1})}
        )()
        self.control = plugin.control  # its AuthGate, with one rejected message
        plugin.control.gate.reject("redis", SignatureError("unsigned", "no authentication tag"))


async def test_the_page_is_exactly_the_catalogue(make_plugin):
    """Every family on the page is a catalogue entry of the same kind, and every entry is on it."""
    plugin = make_plugin(model_list(("chat", "p1", 1, 1.0), ("chat", "p2", 1, 1.0)))
    counters = EventCounters()
    probe_latency = ProbeLatency()
    registry = CollectorRegistry()
    registry.register(PluginCollector(Everything(plugin), counters, probe_latency))
    plugin.core.listeners.append(counters)
    plugin.core.record_failure("p1", Outcome.CONNECT_ERROR)  # a state change and a failover
    for event_type in ("stream_resumed", "stream_broken", "drain_started", "drain_completed"):
        plugin.core.emit(FailoverEvent(event_type=event_type, model_group="chat", deployment_id="p2"))
    rescued = {"cause": "ejected"}
    plugin.core.emit(FailoverEvent("request_rescued", "chat", deployment_id="p2", details=rescued))
    plugin.core.apply_probe("p2", good_report(0.02))  # a check result
    probe_latency.observe(("p2",), good_report(0.02))

    page = {
        family.name: family.type
        for family in text_string_to_metric_families(generate_latest(registry).decode())
    }
    # The text format names a counter's family without ``_total``, and types an info a gauge.
    expected = {
        spec.name.removesuffix("_total"): "gauge" if spec.kind == "info" else spec.kind for spec in CATALOG
    }
    assert page == expected


async def test_scrapes_from_a_thread_while_probes_and_events_are_counted(make_plugin):
    """The histogram and the event counters are written on the loop and read by a scrape thread."""
    plugin = make_plugin(model_list(*[("chat", f"d{i}", 1, 1.0) for i in range(20)]))
    metrics = PluginMetrics(plugin, default_registry=CollectorRegistry())
    metrics.install()
    stop = time.monotonic() + 1.0

    def scrape_repeatedly() -> int:
        count = 0
        while time.monotonic() < stop:
            parse(generate_latest(metrics.registry).decode())
            count += 1
        return count

    scraper = asyncio.get_running_loop().run_in_executor(None, scrape_repeatedly)
    reports = 0
    while time.monotonic() < stop:
        deployment = f"d{reports % 20}"
        for listener in plugin.prober.report_listeners:
            listener((deployment,), good_report(0.001 * (reports % 50)))
        plugin.core.emit(FailoverEvent(event_type="stream_resumed", model_group=f"g{reports % 7}"))
        reports += 1
        if reports % 50 == 0:
            await asyncio.sleep(0)
    assert await scraper > 0
    s = parse(generate_latest(metrics.registry).decode())
    counted = sum(
        v for (name, _labels), v in s.items() if name == "litellm_failover_probe_latency_seconds_count"
    )
    assert counted == reports
    metrics.uninstall()

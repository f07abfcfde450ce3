"""Self-hosted engines (vLLM, SGLang, TGI) probed against real HTTP servers with crafted answers."""

from __future__ import annotations

import pytest
from aiohttp import web
from provider_servers import (
    FAST,
    by_name,
    huge,
    never_answers,
    probe_once,
    prober_for,
    serve,
    text,
    trickle,
)

from litellm_failover.providers.base import LoadSignals, Severity
from litellm_failover.providers.errors import MalformedAnswer
from litellm_failover.providers.prometheus import parse_metrics
from litellm_failover.providers.thresholds import ProbeThresholds

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
vllm:num_requests_waiting{engine="1",model_name="m"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 1234.0
"""


def vllm_params(url: str, **extra: object) -> dict:
    return {"model": "hosted_vllm/m", "api_base": f"{url}/v1", **extra}


async def test_vllm_healthy_round_reads_every_check_and_load():
    async with serve({"/health": text(""), "/metrics": text(VLLM_METRICS)}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url)))
    checks = by_name(report)
    assert list(checks) == ["http_health", "probe_latency", "metrics", "kv_cache", "queue_depth"]
    assert all(c.ok for c in report.checks), report
    # counts summed over engines, usage the fullest engine
    assert report.load == LoadSignals(kv_cache_usage=0.5, queue_waiting=1.0, requests_running=5.0)
    assert checks["kv_cache"].value == 0.5 and checks["kv_cache"].severity is Severity.DEGRADE
    assert checks["queue_depth"].value == 1.0
    assert checks["metrics"].reason == "running 5, waiting 1, KV cache 50%"
    assert 0 < report.latency_s < 1.0
    assert checks["probe_latency"].value == report.latency_s


async def test_vllm_saturation_degrades_without_failing():
    metrics = VLLM_METRICS.replace("} 0.5\n", "} 0.97\n").replace(
        'vllm:num_requests_waiting{engine="0",model_name="m"} 1.0',
        'vllm:num_requests_waiting{engine="0",model_name="m"} 40',
    )
    async with serve({"/health": text(""), "/metrics": text(metrics)}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url)))
    assert report.failed == ()
    degraded = {c.name: c for c in report.degraded}
    assert set(degraded) == {"kv_cache", "queue_depth"}
    assert degraded["kv_cache"].reason == "KV cache 97% used (limit 90%)"
    assert degraded["queue_depth"].reason == "40 requests waiting (limit 16)"


async def test_per_deployment_threshold_overrides_apply():
    async with serve({"/health": text(""), "/metrics": text(VLLM_METRICS)}) as srv:
        prober = prober_for(vllm_params(srv.url), {"health": {"max_kv_cache_usage": 0.4}})
        report = await probe_once(prober)
    assert [c.name for c in report.degraded] == ["kv_cache"]
    assert by_name(report)["kv_cache"].reason == "KV cache 50% used (limit 40%)"


async def test_vllm_falls_back_to_deprecated_gpu_cache_usage():
    metrics = VLLM_METRICS.replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
    async with serve({"/health": text(""), "/metrics": text(metrics)}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url)))
    assert report.load.kv_cache_usage == 0.5
    assert by_name(report)["metrics"].ok


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        (
            VLLM_METRICS.replace("vllm:kv_cache_usage_perc", "vllm:other"),
            "vllm:kv_cache_usage_perc missing (nor the deprecated vllm:gpu_cache_usage_perc)",
        ),
        (
            VLLM_METRICS.replace(
                'vllm:num_requests_waiting{engine="1",model_name="m"} 0.0',
                'vllm:num_requests_waiting{engine="1",model_name="m"} NaN',
            ),
            "vllm:num_requests_waiting is nan",
        ),
        (
            VLLM_METRICS.replace("} 0.25\n", "} +Inf\n"),
            "vllm:kv_cache_usage_perc is inf",
        ),
        (
            VLLM_METRICS.replace("} 0.25\n", "} 87.5\n"),
            "vllm:kv_cache_usage_perc is 87.5, outside [0, 1]",
        ),
        ("<html><body>Bad gateway</body></html>", "metrics text unparseable: "),
        ('vllm:num_requests_running{engine="0" 3\n', "metrics text unparseable: "),
        ("vllm:num_requests_running three\n", "metrics text unparseable: could not convert string to float"),
        ("", "metrics text empty"),
    ],
    ids=["missing", "nan", "inf", "out-of-range", "html", "broken-labels", "not-a-number", "empty"],
)
async def test_malformed_metrics_fail_the_metrics_check_with_a_precise_reason(metrics, reason):
    async with serve({"/health": text(""), "/metrics": text(metrics)}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url)))
    checks = by_name(report)
    assert checks["http_health"].ok
    assert not checks["metrics"].ok and checks["metrics"].severity is Severity.FAIL
    assert checks["metrics"].reason.startswith(reason), checks["metrics"].reason
    assert "kv_cache" not in checks and "queue_depth" not in checks  # no second failure for one cause
    assert report.load == LoadSignals()


# Families the vLLM probe does not read, as a real page has them around the four gauges.
UNREAD_FAMILIES = """\
# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.5",model_name="m"} 4.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="m"} 9.0
vllm:e2e_request_latency_seconds_count{engine="0",model_name="m"} 9.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="m"} 7.25
# HELP vllm:num_requests_running_by_lora Not read: only its name starts like a wanted one.
# TYPE vllm:num_requests_running_by_lora gauge
vllm:num_requests_running_by_lora{lora="a"} 1.0
"""


@pytest.mark.parametrize(
    "garbage",
    [
        'vllm:e2e_request_latency_seconds_bucket{engine="0",le="1.0" 5\n',  # broken labels
        'python_gc_objects_collected_total{generation="0"} lots\n',  # not a number
        "vllm:num_requests_running_by_lora three\n",  # a wanted name's prefix, another family
        '# TYPE "unterminated counter\n',  # a broken comment head
        "<b>debug build</b>\n",
    ],
    ids=["broken-labels", "not-a-number", "name-prefix", "bad-type-line", "html"],
)
async def test_garbage_in_a_family_the_probe_does_not_read_is_ignored(garbage):
    """Not ours to judge: the gauges read are intact, and ejecting a serving node for a histogram
    nobody reads would take capacity away for nothing (see ``parse_metrics``)."""
    page = UNREAD_FAMILIES + garbage + VLLM_METRICS + garbage
    with pytest.raises(MalformedAnswer):  # parsed whole, the page is rejected
        parse_metrics(page.encode())
    async with serve({"/health": text(""), "/metrics": text(page)}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url)))
    assert report.failed == (), report
    assert report.load == LoadSignals(kv_cache_usage=0.5, queue_waiting=1.0, requests_running=5.0)


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        (
            'vllm:num_requests_waiting{engine="1",model_name="m" 0.0',
            'metrics text unparseable: Invalid value: \'{engine="1",model_name="m"\'',
        ),
        (
            'vllm:num_requests_waiting{engine="1",model_name="m"} zero',
            "metrics text unparseable: could not convert string to float: 'zero'",
        ),
        (
            'vllm:num_requests_waiting{engine="1",model_name="m"} NaN',
            "vllm:num_requests_waiting is nan",
        ),
    ],
    ids=["broken-labels", "not-a-number", "nan"],
)
async def test_garbage_inside_a_wanted_family_on_a_big_page_still_fails(broken, reason):
    page = UNREAD_FAMILIES + VLLM_METRICS.replace(
        'vllm:num_requests_waiting{engine="1",model_name="m"} 0.0', broken
    )
    async with serve({"/health": text(""), "/metrics": text(page)}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url)))
    checks = by_name(report)
    assert not checks["metrics"].ok and checks["metrics"].reason == reason
    assert "kv_cache" not in checks and report.load == LoadSignals()


async def test_several_missing_series_are_all_named():
    async with serve({"/health": text(""), "/metrics": text("other_metric 1\n")}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url)))
    reason = by_name(report)["metrics"].reason
    assert "vllm:num_requests_running missing" in reason
    assert "vllm:num_requests_waiting missing" in reason
    assert "vllm:kv_cache_usage_perc missing" in reason


async def test_health_not_200_fails_and_metrics_still_read():
    async with serve({"/health": text("engine dead", status=503), "/metrics": text(VLLM_METRICS)}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url)))
    checks = by_name(report)
    assert not checks["http_health"].ok
    assert checks["http_health"].reason == f"GET {srv.url}/health answered 503"
    assert checks["probe_latency"].ok  # it answered, quickly
    assert checks["metrics"].ok


async def test_metrics_endpoint_status_error():
    async with serve({"/health": text("")}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url)))
    assert by_name(report)["metrics"].reason == f"GET {srv.url}/metrics answered 404"


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
async def test_huge_metrics_body_is_cut_off(declare_length):
    thresholds = ProbeThresholds(max_probe_latency_s=2.0, max_body_bytes=10_000)
    async with serve({"/health": text(""), "/metrics": huge(50_000, declare_length=declare_length)}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url), thresholds=thresholds))
    assert by_name(report)["metrics"].reason == f"{srv.url}/metrics: body over 10000 bytes"


async def test_hung_health_endpoint_times_out_with_reason():
    thresholds = ProbeThresholds(max_probe_latency_s=0.3)
    async with serve({"/health": never_answers(), "/metrics": text(VLLM_METRICS)}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url), thresholds=thresholds))
    checks = by_name(report)
    assert checks["probe_latency"].reason == "no answer within 0.3 s"
    assert checks["http_health"].reason == f"no answer within 0.3 s (waiting on health at {srv.url}/health)"
    assert {c.name for c in report.failed} == {"http_health", "probe_latency"}
    assert 0.3 <= report.latency_s < 1.0


async def test_slow_trickle_of_metrics_times_out_naming_the_read():
    thresholds = ProbeThresholds(max_probe_latency_s=0.3)
    async with serve({"/health": text(""), "/metrics": trickle()}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url), thresholds=thresholds))
    checks = by_name(report)
    assert checks["probe_latency"].reason == "no answer within 0.3 s"
    assert checks["http_health"].reason == f"no answer within 0.3 s (waiting on metrics at {srv.url}/metrics)"


async def test_a_prober_recovers_after_a_timed_out_round():
    thresholds = ProbeThresholds(max_probe_latency_s=0.3)
    hang = {"on": True}
    hung = never_answers()

    async def health(request: web.Request) -> web.StreamResponse:
        return await (hung(request) if hang["on"] else text("")(request))

    async with serve({"/health": health, "/metrics": text(VLLM_METRICS)}) as srv:
        prober = prober_for(vllm_params(srv.url), thresholds=thresholds)
        assert (await probe_once(prober)).failed
        hang["on"] = False
        report = await probe_once(prober)
    assert report.failed == ()
    assert "waiting on" not in by_name(report)["http_health"].reason


async def test_connection_refused_is_a_failed_health_check():
    async with serve({}) as srv:
        url = srv.url  # the port is closed once the server is gone
    report = await probe_once(prober_for(vllm_params(url)))
    checks = by_name(report)
    assert checks["http_health"].reason == f"connection refused ({url.removeprefix('http://')})"
    assert checks["metrics"].reason == checks["http_health"].reason
    assert checks["probe_latency"].ok  # refused fast: a liveness failure, not a latency one


async def test_dns_failure_is_named():
    report = await probe_once(prober_for(vllm_params("http://no-such-host.invalid:8000")))
    assert by_name(report)["http_health"].reason == "DNS lookup failed for no-such-host.invalid"


async def test_sglang_checks_and_load():
    metrics = """\
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="m",tp_rank="0"} 7
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="m",tp_rank="0"} 20
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="m",tp_rank="0"} 0.3
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="m"} 8.1e+06
"""
    async with serve({"/health": text(""), "/metrics": text(metrics)}) as srv:
        params = {"model": "openai/m", "api_base": f"{srv.url}/v1"}
        report = await probe_once(prober_for(params, {"provider": "sglang"}))
    assert report.load == LoadSignals(kv_cache_usage=0.3, queue_waiting=20, requests_running=7)
    assert [c.name for c in report.degraded] == ["queue_depth"]
    assert report.failed == ()


async def test_sglang_without_enable_metrics_fails_metrics():
    async with serve({"/health": text(""), "/metrics": text("", status=404)}) as srv:
        report = await probe_once(
            prober_for({"model": "openai/m", "api_base": srv.url}, {"provider": "sglang"})
        )
    assert by_name(report)["metrics"].reason == f"GET {srv.url}/metrics answered 404"


async def test_tgi_has_queue_but_no_kv_cache_check():
    metrics = """\
# TYPE tgi_queue_size gauge
tgi_queue_size 3
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 8
# TYPE tgi_request_count counter
tgi_request_count 100
"""
    async with serve({"/health": text(""), "/metrics": text(metrics)}) as srv:
        report = await probe_once(prober_for({"model": "huggingface/tgi", "api_base": srv.url}))
    assert list(by_name(report)) == ["http_health", "probe_latency", "metrics", "queue_depth"]
    assert report.load == LoadSignals(queue_waiting=3, requests_running=8)
    assert all(c.ok for c in report.checks)


async def test_tgi_batch_size_is_optional_queue_size_is_not():
    async with serve({"/health": text(""), "/metrics": text("tgi_queue_size 0\n")}) as srv:
        ok = await probe_once(prober_for({"model": "huggingface/tgi", "api_base": srv.url}))
    assert ok.failed == () and ok.load == LoadSignals(queue_waiting=0)
    async with serve({"/health": text(""), "/metrics": text("tgi_batch_current_size 1\n")}) as srv:
        bad = await probe_once(prober_for({"model": "huggingface/tgi", "api_base": srv.url}))
    assert by_name(bad)["metrics"].reason == "tgi_queue_size missing"


async def test_custom_health_and_metrics_urls_are_used():
    async with serve({"/ready": text(""), "/prom": text(VLLM_METRICS)}) as srv:
        failover = {"health_url": f"{srv.url}/ready", "metrics_url": f"{srv.url}/prom"}
        report = await probe_once(prober_for(vllm_params(srv.url), failover))
    assert all(c.ok for c in report.checks)
    assert [p for p, _ in srv.requests] and {p for p, _ in srv.requests} == {"/ready", "/prom"}


async def test_api_key_goes_to_the_api_origin_only():
    async with serve({"/metrics": text(VLLM_METRICS)}) as exporter, serve({"/health": text("")}) as api:
        params = vllm_params(api.url, api_key="sk-vllm-secret")
        report = await probe_once(prober_for(params, {"metrics_url": f"{exporter.url}/metrics"}))
    assert report.failed == ()
    assert api.headers_of("/health")[0]["Authorization"] == "Bearer sk-vllm-secret"
    assert "Authorization" not in exporter.headers_of("/metrics")[0]


async def test_api_key_never_reaches_a_reason_or_repr(monkeypatch):
    secret = "sk-vllm-0123456789secret"
    monkeypatch.setenv("VLLM_KEY", secret)

    async def echo_key(request: web.Request) -> web.Response:  # a server that echoes what it got
        return web.Response(text=f"{request.headers.get('Authorization', '').split()[-1]} 1\n")

    async with serve({"/health": text("", status=500), "/metrics": echo_key}) as srv:
        prober = prober_for(vllm_params(srv.url, api_key="os.environ/VLLM_KEY"))
        report = await probe_once(prober)
    assert srv.headers_of("/metrics")[0]["Authorization"] == f"Bearer {secret}"
    assert not by_name(report)["metrics"].ok
    assert "[redacted]" in by_name(report)["metrics"].reason
    for shown in (repr(report), repr(prober), repr(prober.target), *(c.reason for c in report.checks)):
        assert secret not in shown


async def test_gpu_checks_are_absent_without_gpu_url():
    async with serve({"/health": text(""), "/metrics": text(VLLM_METRICS)}) as srv:
        report = await probe_once(prober_for(vllm_params(srv.url), thresholds=FAST))
    assert "gpu_health" not in by_name(report) and report.load.gpu_memory_ratio is None

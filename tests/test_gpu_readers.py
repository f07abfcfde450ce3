"""GPU telemetry readers: the sidecar agent's /gpu-status and dcgm-exporter's metrics."""

from __future__ import annotations

import time

import pytest
from aiohttp import web
from provider_servers import by_name, probe_once, prober_for, serve, text
from waiting import wait_until

from litellm_failover.providers.base import Severity
from litellm_failover.providers.gpu import AgentGpuReader, DcgmGpuReader, dcgm_metrics_url
from litellm_failover.providers.http import ReadTracker
from litellm_failover.providers.probe_client import ProbeClient
from litellm_failover.providers.thresholds import ProbeThresholds

VLLM = """\
vllm:num_requests_running 1
vllm:num_requests_waiting 0
vllm:kv_cache_usage_perc 0.2
"""


def gpu(index: int, ratio: float, xid: int | None = 0, ecc: int | None = 0) -> dict:
    return {
        "index": index,
        "name": "NVIDIA H100 80GB HBM3",
        "memory_used_bytes": int(ratio * 80e9),
        "memory_total_bytes": int(80e9),
        "used_ratio": ratio,
        "utilization_pct": 50.0,
        "temperature_c": 60.0,
        "xid_errors": xid,
        "ecc_errors": ecc,
    }


class Agent:
    """A crafted /gpu-status whose answer a test changes between rounds."""

    def __init__(self) -> None:
        self.doc: object = {
            "healthy": True,
            "reason": "2 GPU(s) read",
            "read_at": time.time(),
            "gpus": [gpu(0, 0.5), gpu(1, 0.7)],
        }
        self.status = 200
        self.fresh = True  # stamp read_at with the time of each answer, like a live agent

    async def handler(self, _: web.Request) -> web.Response:
        if self.fresh and isinstance(self.doc, dict):
            self.doc["read_at"] = time.time()
        if isinstance(self.doc, str):
            return web.Response(text=self.doc, status=self.status)
        return web.json_response(self.doc, status=self.status)


async def agent_round(agent: Agent, prober=None, **thresholds):
    async with serve({"/health": text(""), "/metrics": text(VLLM), "/gpu-status": agent.handler}) as srv:
        prober = prober or prober_for(
            {"model": "hosted_vllm/m", "api_base": f"{srv.url}/v1"},
            {"gpu_url": srv.url},
            thresholds=ProbeThresholds(**thresholds),
        )
        return await probe_once(prober), prober


async def test_agent_healthy_gpus_give_health_and_memory_checks():
    report, _ = await agent_round(Agent())
    checks = by_name(report)
    assert list(checks)[-2:] == ["gpu_health", "gpu_memory"]
    assert checks["gpu_health"].ok and checks["gpu_health"].reason.startswith("2 GPU(s) healthy")
    assert checks["gpu_memory"].ok and checks["gpu_memory"].value == 0.7
    assert checks["gpu_memory"].severity is Severity.DEGRADE
    assert report.load.gpu_memory_ratio == 0.7 and report.load.kv_cache_usage == 0.2


async def test_agent_memory_over_limit_degrades():
    agent = Agent()
    agent.doc["gpus"][1] = gpu(1, 0.97)
    report, _ = await agent_round(agent)
    assert report.failed == ()
    assert [(c.name, c.reason) for c in report.degraded] == [
        ("gpu_memory", "max GPU memory 97% used (limit 95%)")
    ]


async def test_agent_unhealthy_fails_with_its_reason():
    agent = Agent()
    agent.doc.update(healthy=False, reason="NVML unavailable: NVML Shared Library Not Found", gpus=[])
    report, _ = await agent_round(agent)
    health = by_name(report)["gpu_health"]
    assert not health.ok and health.severity is Severity.FAIL
    assert health.reason == "GPU agent reports unhealthy: NVML unavailable: NVML Shared Library Not Found"
    assert "gpu_memory" not in by_name(report)


async def test_stale_read_at_fails():
    agent = Agent()
    agent.fresh = False
    agent.doc.update(read_at=time.time() - 60)
    report, _ = await agent_round(agent, stale_after_s=15.0)
    health = by_name(report)["gpu_health"]
    assert not health.ok
    assert health.reason.startswith("GPU telemetry stale: read 6") and health.reason.endswith(
        "(limit 15.0 s)"
    )
    assert "gpu_memory" not in by_name(report)  # a stale memory figure is no figure


async def test_new_xid_and_ecc_errors_fail_and_hold():
    agent = Agent()
    async with serve({"/gpu-status": agent.handler}) as srv, ProbeClient() as session:
        now = [1000.0]
        reader = AgentGpuReader(srv.url, clock=lambda: now[0], error_hold_s=60.0)
        thresholds, tracker = ProbeThresholds(), ReadTracker()
        first = await reader.read(session, thresholds, tracker)
        assert first.checks[0].ok  # the first read is the baseline
        agent.doc["gpus"][1] = gpu(1, 0.7, xid=2, ecc=0) | {"last_xid": 79}
        agent.doc["gpus"][0] = gpu(0, 0.5, xid=0, ecc=1)
        second = (await reader.read(session, thresholds, tracker)).checks[0]
        assert not second.ok
        assert "gpu 1: 2 new XID error(s) (last XID 79)" in second.reason
        assert "gpu 0: 1 new uncorrected ECC error(s)" in second.reason
        now[0] += 30  # same counts, but the event still holds
        assert not (await reader.read(session, thresholds, tracker)).checks[0].ok
        now[0] += 31
        assert (await reader.read(session, thresholds, tracker)).checks[0].ok


async def test_agent_counts_that_drop_rebase_silently():
    agent = Agent()
    agent.doc["gpus"][0] = gpu(0, 0.5, xid=5)
    async with serve({"/gpu-status": agent.handler}) as srv, ProbeClient() as session:
        reader = AgentGpuReader(srv.url)
        await reader.read(session, ProbeThresholds(), ReadTracker())
        agent.doc["gpus"][0] = gpu(0, 0.5, xid=0)  # agent restarted
        assert (await reader.read(session, ProbeThresholds(), ReadTracker())).checks[0].ok


@pytest.mark.parametrize(
    ("doc", "status", "reason"),
    [
        ("not json", 200, "GPU agent: gpu-status is not JSON: Expecting value at line 1 column 1"),
        ([], 200, "GPU agent: gpu-status is not a JSON object"),
        (
            {"reason": "x", "read_at": 1.0, "gpus": []},
            200,
            "GPU agent: gpu-status.healthy missing or not a boolean",
        ),
        ({"healthy": True, "gpus": []}, 200, "GPU agent: gpu-status.read_at missing"),
        (
            {"healthy": True, "read_at": "now", "gpus": []},
            200,
            "GPU agent: gpu-status.read_at is not a number",
        ),
        ({"healthy": True, "read_at": 1.0}, 200, "GPU agent: gpu-status.gpus missing or not a list"),
        (
            {"healthy": True, "read_at": 1.0, "gpus": [{"index": 0}]},
            200,
            "GPU agent: gpu-status.gpus[0].used_ratio missing",
        ),
        (
            {"healthy": True, "read_at": 1.0, "gpus": [{"used_ratio": 1.5}]},
            200,
            "GPU agent: gpu-status.gpus[0].used_ratio is 1.5, outside [0, 1]",
        ),
        ({}, 500, "GPU agent: GET {url}/gpu-status answered 500"),
    ],
    ids=[
        "not-json",
        "array",
        "no-healthy",
        "no-read-at",
        "bad-read-at",
        "no-gpus",
        "no-ratio",
        "ratio-range",
        "500",
    ],
)
async def test_malformed_agent_answers(doc, status, reason):
    agent = Agent()
    agent.doc, agent.status, agent.fresh = doc, status, False
    async with serve({"/gpu-status": agent.handler}) as srv, ProbeClient() as session:
        outcome = await AgentGpuReader(srv.url).read(session, ProbeThresholds(), ReadTracker())
    assert [(c.name, c.ok) for c in outcome.checks] == [("gpu_health", False)]
    assert outcome.checks[0].reason == reason.format(url=srv.url)


async def test_nan_in_agent_json_is_rejected():
    async with serve({"/gpu-status": text('{"healthy": true, "read_at": NaN, "gpus": []}')}) as srv:
        async with ProbeClient() as session:
            outcome = await AgentGpuReader(f"{srv.url}/gpu-status").read(
                session, ProbeThresholds(), ReadTracker()
            )
    assert outcome.checks[0].reason == "GPU agent: gpu-status.read_at is nan"


async def test_unreachable_agent_fails_gpu_health_only():
    async with serve({}) as gone:
        gpu_url = gone.url
    async with serve({"/health": text(""), "/metrics": text(VLLM)}) as srv:
        report = await probe_once(
            prober_for({"model": "hosted_vllm/m", "api_base": srv.url}, {"gpu_url": gpu_url})
        )
    assert [c.name for c in report.failed] == ["gpu_health"]
    assert (
        by_name(report)["gpu_health"].reason
        == f"GPU agent: connection refused ({gpu_url.removeprefix('http://')})"
    )


DCGM = """\
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",device="nvidia0",Hostname="n1"} 40000
DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-b",device="nvidia1",Hostname="n1"} 72000
# HELP DCGM_FI_DEV_FB_FREE Framebuffer memory free (in MiB).
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-a",device="nvidia0",Hostname="n1"} 40000
DCGM_FI_DEV_FB_FREE{gpu="1",UUID="GPU-b",device="nvidia1",Hostname="n1"} 8000
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a"} 35
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-b"} 90
# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-a"} 55
DCGM_FI_DEV_GPU_TEMP{gpu="1",UUID="GPU-b"} 71
# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.
# TYPE DCGM_FI_DEV_XID_ERRORS gauge
DCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-a"} 0
DCGM_FI_DEV_XID_ERRORS{gpu="1",UUID="GPU-b"} 13
"""


class Exporter:
    def __init__(self, body: str = DCGM) -> None:
        self.body = body

    async def handler(self, _: web.Request) -> web.Response:
        return web.Response(text=self.body)


def test_dcgm_url_gets_metrics_path_only_when_it_has_none():
    assert dcgm_metrics_url("http://n1:9400") == "http://n1:9400/metrics"
    assert dcgm_metrics_url("http://n1:9400/") == "http://n1:9400/metrics"
    assert dcgm_metrics_url("http://n1:9400/dcgm/metrics") == "http://n1:9400/dcgm/metrics"


async def test_dcgm_memory_ratio_and_health_through_a_prober():
    exporter = Exporter()
    async with (
        serve({"/metrics": exporter.handler}) as dcgm,
        serve({"/health": text(""), "/metrics": text(VLLM)}) as api,
    ):
        prober = prober_for(
            {"model": "hosted_vllm/m", "api_base": api.url}, {"gpu_url": dcgm.url, "gpu_source": "dcgm"}
        )
        report = await probe_once(prober)
        checks = by_name(report)
        assert checks["gpu_health"].ok
        assert checks["gpu_health"].reason == "2 GPU(s) readable, max 90% util, max 71 C"
        assert checks["gpu_memory"].value == pytest.approx(0.9) and checks["gpu_memory"].ok
        assert report.load.gpu_memory_ratio == pytest.approx(0.9)

        # XID 13 at start is the baseline; a change on gpu 0 is an event, kept by the same prober
        exporter.body = DCGM.replace(
            'DCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-a"} 0',
            'DCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-a"} 79',
        )
        report = await probe_once(prober)
        health = by_name(report)["gpu_health"]
        assert not health.ok and health.severity is Severity.FAIL
        assert health.reason.startswith("gpu 0: XID 79 (DCGM_FI_DEV_XID_ERRORS changed from 0)")
        assert not by_name(await probe_once(prober))["gpu_health"].ok  # held, not a one-round blip

        # a fresh prober (a restart) takes the current value as its baseline
        fresh = prober_for(
            {"model": "hosted_vllm/m", "api_base": api.url}, {"gpu_url": dcgm.url, "gpu_source": "dcgm"}
        )
        assert by_name(await probe_once(fresh))["gpu_health"].ok


async def test_dcgm_xid_hold_expires():
    exporter = Exporter()
    now = [0.0]
    async with serve({"/metrics": exporter.handler}) as srv, ProbeClient() as session:
        reader = DcgmGpuReader(srv.url, clock=lambda: now[0], error_hold_s=10.0)
        await reader.read(session, ProbeThresholds(), ReadTracker())
        exporter.body = DCGM.replace("} 13\n", "} 48\n")
        assert not (await reader.read(session, ProbeThresholds(), ReadTracker())).checks[0].ok
        now[0] = 11.0
        assert (await reader.read(session, ProbeThresholds(), ReadTracker())).checks[0].ok


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            'DCGM_FI_DEV_GPU_UTIL{gpu="0"} 5\n',
            "DCGM exporter: DCGM_FI_DEV_FB_USED and DCGM_FI_DEV_FB_FREE missing",
        ),
        (DCGM.replace("} 8000\n", "} NaN\n"), "DCGM exporter: DCGM_FI_DEV_FB_FREE{gpu='1'} is nan"),
        (
            'DCGM_FI_DEV_FB_USED{gpu="0"} 0\nDCGM_FI_DEV_FB_FREE{gpu="0"} 0\n',
            "DCGM exporter: gpu 0: memory figures used=0 free=0 MiB",
        ),
        (
            'DCGM_FI_DEV_FB_USED{gpu="0"} 1\nDCGM_FI_DEV_FB_FREE{gpu="1"} 1\n',
            "DCGM exporter: DCGM_FI_DEV_FB_FREE missing for gpu 0",
        ),
        ("<html>", "DCGM exporter: metrics text unparseable: "),
    ],
    ids=["missing", "nan", "zero-total", "unpaired", "garbage"],
)
async def test_malformed_dcgm(body, reason):
    async with serve({"/metrics": text(body)}) as srv, ProbeClient() as session:
        outcome = await DcgmGpuReader(srv.url).read(session, ProbeThresholds(), ReadTracker())
    assert [(c.name, c.ok) for c in outcome.checks] == [("gpu_health", False)]
    assert outcome.checks[0].reason.startswith(reason), outcome.checks[0].reason


async def test_dcgm_without_xid_series_says_so():
    body = "".join(line + "\n" for line in DCGM.splitlines() if "XID" not in line)
    async with serve({"/metrics": text(body)}) as srv, ProbeClient() as session:
        outcome = await DcgmGpuReader(srv.url).read(session, ProbeThresholds(), ReadTracker())
    assert outcome.checks[0].ok and "no DCGM_FI_DEV_XID_ERRORS exported" in outcome.checks[0].reason


async def test_a_passing_gpu_read_is_reused_until_due_and_a_failing_one_never():
    agent = Agent()
    async with serve({"/health": text(""), "/metrics": text(VLLM), "/gpu-status": agent.handler}) as srv:

        def prober(interval_s: float):
            return prober_for(
                {"model": "hosted_vllm/m", "api_base": f"{srv.url}/v1"},
                {"gpu_url": srv.url},
                thresholds=ProbeThresholds(gpu_read_interval_s=interval_s),
            )

        def gpu_reads() -> int:
            return len(srv.headers_of("/gpu-status"))

        slow = prober(60.0)
        reports = [await probe_once(slow) for _ in range(3)]
        assert gpu_reads() == 1  # read once, then reused
        assert all(by_name(r)["gpu_health"].ok and by_name(r)["gpu_memory"].ok for r in reports)

        due = prober(0.2)
        await probe_once(due)
        before = gpu_reads()

        async def read_again() -> bool:
            await probe_once(due)
            return gpu_reads() > before

        await wait_until(read_again, 3, "a reused GPU read to fall due")

        agent.doc = {"healthy": False, "reason": "NVML: driver gone", "read_at": time.time(), "gpus": []}
        failing = prober(60.0)
        before = gpu_reads()
        for _ in range(3):
            assert not by_name(await probe_once(failing))["gpu_health"].ok
        assert gpu_reads() == before + 3  # a failing read is re-read every round

"""The GPU agent sidecar: NVML through a test double of the pynvml calls it makes (the only
double in these tests, standing in for hardware this machine lacks), plus the real no-NVML path."""

from __future__ import annotations

import argparse
import asyncio
import warnings
from collections import deque
from contextlib import asynccontextmanager
from types import SimpleNamespace

import aiohttp
import pytest
from waiting import wait_until

from litellm_failover.cli import gpu_agent as cli
from litellm_failover.providers.gpu import AgentGpuReader
from litellm_failover.providers.gpu_agent import NvmlReader, Sampler, create_app
from litellm_failover.providers.http import ReadTracker
from litellm_failover.providers.probe_client import ProbeClient
from litellm_failover.providers.prometheus import parse_metrics
from litellm_failover.providers.thresholds import ProbeThresholds

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import pynvml


def nvml_error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class FakeNvml:
    """The pynvml functions the agent calls, over a scripted set of GPUs."""

    def __init__(self, gpus: list[dict]) -> None:
        self.gpus = gpus
        self.events: dict[int, deque] = {i: deque() for i in range(len(gpus))}
        self.sets: dict[int, int] = {}  # event set -> gpu
        self.init_calls = 0
        self.shutdowns = 0
        self.freed: list[object] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in (
            "nvmlInit",
            "nvmlShutdown",
            "nvmlDeviceGetCount",
            "nvmlDeviceGetHandleByIndex",
            "nvmlDeviceGetName",
            "nvmlDeviceGetMemoryInfo",
            "nvmlDeviceGetUtilizationRates",
            "nvmlDeviceGetTemperature",
            "nvmlDeviceGetTotalEccErrors",
            "nvmlEventSetCreate",
            "nvmlDeviceRegisterEvents",
            "nvmlEventSetWait",
            "nvmlEventSetFree",
        ):
            monkeypatch.setattr(pynvml, name, getattr(self, name))  # raises if pynvml lacks it

    def nvmlInit(self) -> None:
        self.init_calls += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return self.gpus[h]["name"]

    def _get(self, h: int, key: str):
        value = self.gpus[h].get(key)
        if isinstance(value, int) and key.endswith("_error"):
            raise nvml_error(value)
        if value is None:
            raise nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlDeviceGetMemoryInfo(self, h: int):
        if self.gpus[h].get("lost"):
            raise nvml_error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return SimpleNamespace(total=self.gpus[h]["total"], used=self.gpus[h]["used"], free=0)

    def nvmlDeviceGetUtilizationRates(self, h: int):
        return SimpleNamespace(gpu=self._get(h, "util"), memory=0)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._get(h, "temp")

    def nvmlDeviceGetTotalEccErrors(self, h: int, error_type: int, counter_type: int) -> int:
        assert (error_type, counter_type) == (
            pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
            pynvml.NVML_VOLATILE_ECC,
        )
        return self._get(h, "ecc")

    def nvmlEventSetCreate(self) -> object:
        return object()

    def nvmlDeviceRegisterEvents(self, h: int, types: int, event_set: object) -> None:
        assert types == pynvml.nvmlEventTypeXidCriticalError
        if not self.gpus[h].get("events", True):
            raise nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self.sets[id(event_set)] = h

    def nvmlEventSetWait(self, event_set: object, timeout_ms: int):
        assert timeout_ms == 0  # the agent polls, it never blocks on events
        queue = self.events[self.sets[id(event_set)]]
        if not queue:
            raise nvml_error(pynvml.NVML_ERROR_TIMEOUT)
        return SimpleNamespace(eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=queue.popleft())

    def nvmlEventSetFree(self, event_set: object) -> None:
        self.freed.append(event_set)


def h100(**extra) -> dict:
    return {
        "name": "NVIDIA H100 80GB HBM3",
        "total": 80 * 2**30,
        "used": 40 * 2**30,
        "util": 35,
        "temp": 60,
        "ecc": 0,
    } | extra


def test_reader_reads_every_gpu(monkeypatch):
    fake = FakeNvml([h100(), h100(used=76 * 2**30, util=None, ecc=None, events=False)])
    fake.install(monkeypatch)
    reader = NvmlReader(clock=lambda: 1234.5)
    status = reader.read()
    assert status.healthy and status.reason == "2 GPU(s) read" and status.read_at == 1234.5
    first, second = status.to_json()["gpus"]
    assert first == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "memory_used_bytes": 40 * 2**30,
        "memory_total_bytes": 80 * 2**30,
        "used_ratio": 0.5,
        "utilization_pct": 35.0,
        "temperature_c": 60.0,
        "xid_errors": 0,
        "last_xid": None,
        "ecc_errors": 0,
    }
    # unsupported readings are null, not failures
    assert (second["utilization_pct"], second["ecc_errors"], second["xid_errors"]) == (None, None, None)
    assert second["used_ratio"] == 0.95
    assert status.max_used_ratio == 0.95
    reader.close()
    # gpu 1's event set was freed when registration was refused, gpu 0's on close
    assert fake.shutdowns == 1 and len(fake.freed) == 2


def test_reader_counts_xid_events(monkeypatch):
    fake = FakeNvml([h100(), h100()])
    fake.install(monkeypatch)
    reader = NvmlReader()
    reader.read()
    fake.events[1].extend([79, 48])
    gpus = reader.read().to_json()["gpus"]
    assert (gpus[0]["xid_errors"], gpus[1]["xid_errors"], gpus[1]["last_xid"]) == (0, 2, 48)
    assert reader.read().to_json()["gpus"][1]["xid_errors"] == 2  # drained, not recounted


def test_lost_gpu_makes_the_host_unhealthy(monkeypatch):
    fake = FakeNvml([h100(), h100(lost=True)])
    fake.install(monkeypatch)
    status = NvmlReader().read()
    assert not status.healthy
    assert status.reason == "gpu 1: GPU is lost"
    assert [g.index for g in status.gpus] == [0]


def test_init_failure_is_reported_and_retried(monkeypatch):
    fake = FakeNvml([h100()])
    fake.install(monkeypatch)
    calls = {"n": 0}

    def failing_init() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise nvml_error(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", failing_init)
    reader = NvmlReader()
    first = reader.read()
    assert (first.healthy, first.reason) == (False, "NVML unavailable: Driver Not Loaded")
    assert reader.read().healthy


def test_no_gpus_visible_is_unhealthy(monkeypatch):
    FakeNvml([]).install(monkeypatch)
    status = NvmlReader().read()
    assert (status.healthy, status.reason) == (False, "no GPUs visible to NVML")


@asynccontextmanager
async def running_agent(sampler: Sampler):
    from aiohttp import web

    runner = web.AppRunner(create_app(sampler), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_agent_serves_status_memory_and_metrics_to_the_reader(monkeypatch):
    fake = FakeNvml([h100(), h100(used=60 * 2**30)])
    fake.install(monkeypatch)
    sampler = Sampler(interval_s=0.02)
    async with running_agent(sampler) as url, aiohttp.ClientSession() as session:
        await wait_until(lambda: sampler.latest is not None, 5, "first NVML reading")
        async with session.get(f"{url}/health") as resp:
            assert resp.status == 200
        async with session.get(f"{url}/gpu-memory") as resp:
            memory = await resp.json()
        assert memory["used_ratio"] == 0.75
        async with session.get(f"{url}/metrics") as resp:
            samples = parse_metrics(await resp.read())
        assert samples.series("litellm_failover_gpu_healthy") == [({}, 1.0)]
        ratios = {
            labels["gpu"]: value for labels, value in samples.series("litellm_failover_gpu_memory_used_ratio")
        }
        assert ratios == {"0": 0.5, "1": 0.75}
        assert "litellm_failover_gpu_xid_errors_total" in samples

        reader = AgentGpuReader(url)
        client = ProbeClient()
        outcome = await reader.read(client, ProbeThresholds(), ReadTracker())
        assert [(c.name, c.ok) for c in outcome.checks] == [("gpu_health", True), ("gpu_memory", True)]
        assert outcome.memory_ratio == 0.75

        fake.events[0].append(79)  # an XID on gpu 0 reaches the reader as a new error

        async def failed() -> bool:
            result = await reader.read(client, ProbeThresholds(), ReadTracker())
            return (
                not result.checks[0].ok
                and "gpu 0: 1 new XID error(s) (last XID 79)" in result.checks[0].reason
            )

        await wait_until(failed, 5, "the XID to fail gpu_health")
        await client.close()
    assert fake.shutdowns == 1  # stopping the app stopped the sampler and shut NVML down


async def test_agent_without_nvml_on_this_machine_still_serves():
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("NVML is available here; this test covers hosts without a driver")
    sampler = Sampler(interval_s=0.05)
    async with running_agent(sampler) as url, aiohttp.ClientSession() as session:
        await wait_until(lambda: sampler.latest is not None, 5, "first NVML reading")
        async with session.get(f"{url}/gpu-status") as resp:
            doc = await resp.json()
        assert doc["healthy"] is False
        assert doc["reason"].startswith("NVML unavailable: ")
        assert "Not Found" in doc["reason"] or "not found" in doc["reason"].lower()
        assert doc["gpus"] == []
        async with ProbeClient() as client:
            outcome = await AgentGpuReader(url).read(client, ProbeThresholds(), ReadTracker())
        assert outcome.checks[0].reason == f"GPU agent reports unhealthy: {doc['reason']}"
        async with session.get(f"{url}/gpu-memory") as resp:
            assert (await resp.json())["used_ratio"] is None


async def test_status_before_the_first_reading_ages_into_staleness():
    sampler = Sampler(reader=NvmlReader(), interval_s=1.0)  # never started
    status = sampler.status()
    assert (status.healthy, status.reason, status.read_at) == (
        False,
        "no GPU reading yet",
        sampler.started_at,
    )


def test_cli_registers_gpu_agent_subcommand():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["gpu-agent", "--host", "0.0.0.0", "--port", "9500"])
    assert (args.host, args.port, args.interval, args.handler) == ("0.0.0.0", 9500, 1.0, cli.run)
    defaults = parser.parse_args(["gpu-agent"])
    assert (defaults.host, defaults.port) == ("127.0.0.1", 9400)


async def test_cli_handler_serves_until_stopped(monkeypatch):
    from waiting import free_port

    from litellm_failover.providers import gpu_agent

    FakeNvml([h100()]).install(monkeypatch)
    stop = asyncio.Event()
    real_run_agent = gpu_agent.run_agent

    async def run_agent(*args, **kwargs):
        kwargs["stop"] = stop  # the CLI waits on signals; the test stops it directly
        await real_run_agent(*args, **kwargs)

    monkeypatch.setattr(gpu_agent, "run_agent", run_agent)
    port = free_port()
    task = asyncio.create_task(cli.run(argparse.Namespace(host="127.0.0.1", port=port, interval=0.05)))
    async with aiohttp.ClientSession() as session:

        async def up() -> bool:
            try:
                async with session.get(f"http://127.0.0.1:{port}/gpu-status") as resp:
                    return (await resp.json())["healthy"] is True
            except aiohttp.ClientError:
                return False

        await wait_until(up, 5, "the agent to serve a healthy reading")
    stop.set()
    assert await asyncio.wait_for(task, 5) == 0

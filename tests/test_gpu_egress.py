"""GPU telemetry (and engine metrics) served over TLS by a private CA: reads trust ``ca_file``.

Real parts only: a CA and server certificate made here (``egress_support.make_ca``), an aiohttp
"exporter" on 127.0.0.1 over TLS serving the fake vLLM's telemetry (the GPU agent's
``/gpu-status``, a DCGM exporter's ``/metrics`` and the engine's vLLM metrics), and the
deployment's API server on plain HTTP, so the health check passing shows that only the TLS reads
are at stake. Before the fix the GPU reads ignored ``ca_file``: ``gpu_health`` failed on a
certificate the deployment's configuration said to trust.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from egress_support import EgressProxy, make_ca, server_context
from fake_nodes import serving
from provider_servers import Server, by_name, probe_once, prober_for, serve, text
from test_router_failover import make_plugin  # noqa: F401 (fixture)
from waiting import wait_until

from litellm_failover.providers.fake import telemetry
from litellm_failover.providers.fake.vllm import FakeVLLM

TLS_UNTRUSTED = "TLS error talking to 127.0.0.1: [SSL: CERTIFICATE_VERIFY_FAILED]"
SOURCES = {"agent": ("", "GPU agent"), "dcgm": ("/metrics", "DCGM exporter")}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return make_ca(tmp_path_factory.mktemp("pki"))


async def _gpu_status(_: web.Request) -> web.Response:
    return web.json_response(telemetry.gpu_status(None, 0))  # read_at is now, as a live agent's


async def _dcgm(_: web.Request) -> web.Response:
    return web.Response(text=telemetry.dcgm_text(telemetry.gpu_status(None, 0)))


@asynccontextmanager
async def exporter(pki) -> AsyncIterator[Server]:
    """The GPU host's telemetry over TLS: agent, DCGM exporter and engine metrics on one port."""
    routes = {
        "/gpu-status": _gpu_status,
        "/metrics": _dcgm,
        "/engine-metrics": text(telemetry.metrics_text("m", None, running=1, waiting=0)),
    }
    async with serve(routes, tls=server_context(pki)) as server:
        yield server


@asynccontextmanager
async def node() -> AsyncIterator[Server]:
    """The deployment's API server, on plain HTTP."""
    async with serve({"/health": text("")}) as server:
        yield server


def deployment(node_url: str, tls_url: str, source: str, ca_file: Path | None) -> tuple[dict, dict]:
    failover: dict = {
        "metrics_url": f"{tls_url}/engine-metrics",
        "gpu_url": tls_url + SOURCES[source][0],
        "gpu_source": source,
    }
    if ca_file is not None:
        failover["ca_file"] = str(ca_file)
    return {"model": "hosted_vllm/m", "api_base": f"{node_url}/v1"}, failover


def outcome(report, name: str) -> tuple[bool, str]:
    check = by_name(report)[name]
    return check.ok, check.reason


@pytest.mark.parametrize("source", list(SOURCES))
async def test_gpu_and_metrics_reads_trust_ca_file_and_go_direct(monkeypatch, pki, source):
    label = SOURCES[source][1]
    async with node() as api, exporter(pki) as tls, EgressProxy().running() as proxy:
        # Self-hosted telemetry is on the inside network: an egress proxy never carries it.
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        report = await probe_once(prober_for(*deployment(api.url, tls.url, source, pki.ca_file)))
        checks = by_name(report)
        assert [c for c in report.checks if not c.ok] == []
        assert {"http_health", "metrics", "kv_cache", "gpu_health", "gpu_memory"} <= set(checks)
        assert checks["gpu_memory"].value == pytest.approx(0.6)
        assert report.load.gpu_memory_ratio == pytest.approx(0.6)
        assert report.load.requests_running == 1.0

        untrusting = await probe_once(prober_for(*deployment(api.url, tls.url, source, None)))
        assert outcome(untrusting, "http_health") == (True, "200 OK")  # plain HTTP: no TLS involved
        ok, reason = outcome(untrusting, "gpu_health")
        assert not ok and reason.startswith(f"{label}: {TLS_UNTRUSTED}")
        ok, reason = outcome(untrusting, "metrics")
        assert not ok and reason.startswith(TLS_UNTRUSTED)
    assert proxy.requests == []
    wanted = "/gpu-status" if source == "agent" else "/metrics"
    assert [path for path, _ in tls.requests].count(wanted) == 1  # the trusting round's read


async def test_an_unloadable_ca_file_is_the_reason_and_the_next_round_recovers(pki, tmp_path):
    ca_file = tmp_path / "internal-ca.pem"
    shutil.copy(pki.ca_file, ca_file)
    async with node() as api, exporter(pki) as tls:
        prober = prober_for(*deployment(api.url, tls.url, "agent", ca_file))  # checked here: loadable
        ca_file.write_text("replaced by something that is not a certificate\n")
        report = await probe_once(prober)
        assert outcome(report, "http_health") == (True, "200 OK")
        ok, reason = outcome(report, "gpu_health")
        assert not ok and reason.startswith(f"GPU agent: cannot load CA file {ca_file}: ")
        assert "NO_CERTIFICATE_OR_CRL_FOUND" in reason
        ok, reason = outcome(report, "metrics")
        assert not ok and reason.startswith(f"cannot load CA file {ca_file}: ")

        shutil.copy(pki.ca_file, ca_file)  # the bundle is back: the same prober reads again
        assert [c for c in (await probe_once(prober)).checks if not c.ok] == []


async def test_the_probe_loop_reports_a_missing_ca_file_and_carries_on(pki, tmp_path, make_plugin):  # noqa: F811
    """In the plugin: a CA bundle gone after start-up fails the GPU check with the file's name,
    the rounds go on, and the bundle coming back brings the check back."""
    ca_file = tmp_path / "internal-ca.pem"
    shutil.copy(pki.ca_file, ca_file)
    async with serving({"n1": FakeVLLM("n1", tokens_per_s=0)}) as servers, exporter(pki) as tls:
        params = {"model": "hosted_vllm/fake-model", "api_base": servers["n1"].api_base, "timeout": 5}
        failover = {"gpu_url": tls.url, "ca_file": str(ca_file)}
        entry = {
            "model_name": "chat",
            "litellm_params": params,
            "model_info": {"id": "n1", "failover": failover},
        }
        _, plugin = make_plugin([entry])  # the configuration is checked here, with the file present
        ca_file.unlink()
        async with plugin:

            def gpu_check() -> dict:
                checks = plugin.status()["groups"]["chat"]["deployments"][0]["checks"]
                return checks.get("gpu_health") or {"ok": None, "reason": ""}

            await wait_until(lambda: gpu_check()["ok"] is False, timeout=10, what="gpu_health failing")
            reason = gpu_check()["reason"]
            assert reason.startswith(f"GPU agent: cannot load CA file {ca_file}: No such file or directory")
            rounds = plugin.prober.rounds
            shutil.copy(pki.ca_file, ca_file)
            await wait_until(lambda: gpu_check()["ok"] is True, timeout=10, what="gpu_health passing again")
            assert plugin.prober.rounds > rounds

"""Hosted kinds (OpenAI, OpenAI-compatible, Azure, Anthropic): one authenticated models read."""

from __future__ import annotations

import pytest
from aiohttp import web
from provider_servers import by_name, json_answer, never_answers, probe_once, prober_for, serve, text

from litellm_failover.providers.base import Severity
from litellm_failover.providers.thresholds import ProbeThresholds

MODELS = {"object": "list", "data": [{"id": "m", "object": "model"}]}


def requires(header: str, value: str, answer: object = MODELS) -> web.RequestHandler:
    """A models endpoint that answers 401 unless the request carries the expected credential."""

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get(header) != value:
            return web.json_response(
                {"error": {"message": f"Incorrect API key provided: {request.headers.get(header)}"}},
                status=401,
            )
        return web.json_response(answer)

    return handler


async def test_openai_lists_models_with_a_bearer_key():
    async with serve({"/v1/models": requires("Authorization", "Bearer sk-openai")}) as srv:
        params = {"model": "openai/gpt-4o", "api_base": f"{srv.url}/v1", "api_key": "sk-openai"}
        prober = prober_for(params, {"provider": "openai"})
        report = await probe_once(prober)
    assert prober.kind == "openai"
    assert [c.name for c in report.checks] == ["http_health", "probe_latency"]
    assert all(c.ok for c in report.checks), report
    assert by_name(report)["http_health"].reason == "200 OK"
    assert srv.requests[0][0] == "/v1/models"


async def test_openai_defaults_to_api_openai_com_and_env_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    prober = prober_for({"model": "openai/gpt-4o"})
    assert prober.kind == "openai"
    assert prober.target.health_url == "https://api.openai.com/v1/models"
    assert prober.target.api_key == "sk-from-env"


async def test_openai_compatible_without_key_sends_no_auth():
    async with serve({"/v1/models": json_answer(MODELS)}) as srv:
        prober = prober_for({"model": "openai/m", "api_base": f"{srv.url}/v1"})
        report = await probe_once(prober)
    assert prober.kind == "openai-compatible"
    assert report.failed == ()
    assert "Authorization" not in srv.headers_of("/v1/models")[0]


async def test_azure_uses_api_key_header_and_api_version():
    seen = {}

    async def models(request: web.Request) -> web.Response:
        seen["version"] = request.query.get("api-version")
        return await requires("api-key", "az-key")(request)

    async with serve({"/openai/models": models}) as srv:
        params = {
            "model": "azure/gpt",
            "api_base": f"{srv.url}/",
            "api_key": "az-key",
            "api_version": "2024-06-01",
        }
        report = await probe_once(prober_for(params))
    assert report.failed == (), report
    assert seen["version"] == "2024-06-01"


async def test_azure_default_api_version(monkeypatch):
    monkeypatch.delenv("AZURE_API_VERSION", raising=False)
    prober = prober_for(
        {"model": "azure/gpt", "api_base": "https://x.openai.azure.com/openai", "api_key": "k"}
    )
    assert prober.target.health_url == "https://x.openai.azure.com/openai/models?api-version=2024-10-21"


async def test_anthropic_sends_key_and_version():
    async def models(request: web.Request) -> web.Response:
        if request.headers.get("anthropic-version") != "2023-06-01":
            return web.json_response({}, status=400)
        return await requires("x-api-key", "sk-ant")(request)

    async with serve({"/v1/models": models}) as srv:
        report = await probe_once(
            prober_for({"model": "anthropic/claude", "api_base": srv.url, "api_key": "sk-ant"})
        )
    assert report.failed == (), report
    assert "Authorization" not in srv.headers_of("/v1/models")[0]


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_key_fails_without_quoting_the_body(status):
    secret = "sk-wrong-0123456789"

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"error": f"bad key {request.headers['Authorization']}"}, status=status)

    async with serve({"/v1/models": models}) as srv:
        prober = prober_for({"model": "openai/m", "api_base": f"{srv.url}/v1", "api_key": secret})
        report = await probe_once(prober)
    health = by_name(report)["http_health"]
    assert not health.ok and health.severity is Severity.FAIL
    assert health.reason == f"authentication rejected ({status})"
    for shown in (repr(report), repr(prober), repr(prober.target), *(c.reason for c in report.checks)):
        assert secret not in shown


async def test_rate_limited_only_degrades():
    async with serve({"/v1/models": json_answer({"error": "slow down"}, status=429)}) as srv:
        report = await probe_once(prober_for({"model": "openai/m", "api_base": f"{srv.url}/v1"}))
    assert report.failed == ()
    assert [(c.name, c.reason) for c in report.degraded] == [("http_health", "rate limited (429)")]


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (text("<html>gateway</html>"), "models list is not JSON: Expecting value at line 1 column 1"),
        (text(""), "models list is not JSON: empty body"),
        (json_answer([1, 2]), "models list is not a JSON object"),
        (json_answer({}, status=502), "answered 502"),
        (json_answer({}, status=404), "answered 404"),
    ],
    ids=["html", "empty", "array", "502", "404"],
)
async def test_malformed_or_failing_answers(handler, reason):
    async with serve({"/v1/models": handler}) as srv:
        report = await probe_once(prober_for({"model": "openai/m", "api_base": f"{srv.url}/v1?secret=1"}))
    health = by_name(report)["http_health"]
    assert not health.ok and health.severity is Severity.FAIL
    assert health.reason.endswith(reason), health.reason
    assert "secret" not in health.reason  # query strings never reach a reason


async def test_hosted_timeout():
    thresholds = ProbeThresholds(max_probe_latency_s=0.2)
    async with serve({"/v1/models": never_answers()}) as srv:
        report = await probe_once(
            prober_for({"model": "openai/m", "api_base": f"{srv.url}/v1"}, thresholds=thresholds)
        )
    checks = by_name(report)
    assert checks["probe_latency"].reason == "no answer within 0.2 s"
    assert (
        checks["http_health"].reason
        == f"no answer within 0.2 s (waiting on models list at {srv.url}/v1/models)"
    )


async def test_redirects_are_not_followed():
    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://elsewhere.invalid/models")

    async with serve({"/v1/models": redirect}) as srv:
        report = await probe_once(
            prober_for({"model": "openai/m", "api_base": f"{srv.url}/v1", "api_key": "k"})
        )
    assert by_name(report)["http_health"].reason == f"GET {srv.url}/v1/models answered 302"

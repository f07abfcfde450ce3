"""Probes of hosted endpoints take the egress the deployment's requests take.

Real parts only: a private CA and server certificate made here, aiohttp endpoints on 127.0.0.1
(over TLS or not), and a real HTTP forward/CONNECT proxy (``egress_support.EgressProxy``) whose
host table is the only place ``api.hosted.test`` resolves: a probe that passes against that
name went through the proxy. Probes are built from ``litellm_params`` and ``model_info.failover``
as the plugin builds them, and run on a ``ProbeClient`` made after the environment is set (as the
prober makes one when it starts).
"""

from __future__ import annotations

import litellm
import pytest
from egress_support import HOSTED_NAME, EgressProxy, endpoint, make_ca
from provider_servers import by_name, probe_once, prober_for

from litellm_failover.providers.egress import DIRECT, Egress
from litellm_failover.providers.probe_client import ProbeClient, TlsFailed
from litellm_failover.settings import FailoverConfigError

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_VERIFY", "DISABLE_AIOHTTP_TRUST_ENV")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return make_ca(tmp_path_factory.mktemp("pki"))


def hosted(api_base: str, **params: object) -> dict:
    return {"model": "openai/gpt-test", "api_base": api_base, "api_key": "sk-test-egress", **params}


def health(report) -> tuple[bool, str]:
    check = by_name(report)["http_health"]
    return check.ok, check.reason


async def test_an_https_hosted_probe_goes_through_the_https_proxy(monkeypatch, pki):
    async with endpoint(pki) as api, EgressProxy().running() as proxy:
        proxy.hosts[HOSTED_NAME] = api.port
        prober = prober_for(hosted(f"{api.url(HOSTED_NAME, tls=True)}/v1", ssl_verify=str(pki.ca_file)))
        # Without the proxy the name resolves nowhere: the probe would fail as the issue says.
        ok, reason = health(await probe_once(prober))
        assert not ok and reason == f"DNS lookup failed for {HOSTED_NAME}"
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        assert health(await probe_once(prober)) == (True, "200 OK")
    assert proxy.requests == [f"CONNECT {HOSTED_NAME}:{api.port}"]
    assert api.paths == ["/v1/models"]


async def test_a_plain_http_hosted_probe_is_forwarded_by_http_proxy(monkeypatch):
    async with endpoint() as api, EgressProxy().running() as proxy:
        proxy.hosts[HOSTED_NAME] = api.port
        monkeypatch.setenv("http_proxy", proxy.url)  # lower case counts too
        prober = prober_for(hosted(f"{api.url(HOSTED_NAME, tls=False)}/v1"))
        assert health(await probe_once(prober)) == (True, "200 OK")
    assert proxy.requests == [f"GET http://{HOSTED_NAME}:{api.port}/v1/models"]


async def test_no_proxy_sends_the_probe_direct(monkeypatch, pki):
    async with endpoint(pki) as api, EgressProxy().running() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        prober = prober_for(hosted(f"{api.url(tls=True)}/v1", ssl_verify=str(pki.ca_file)))
        assert health(await probe_once(prober)) == (True, "200 OK")
    assert proxy.requests == []
    assert api.paths == ["/v1/models"]


async def test_self_hosted_probes_stay_direct(monkeypatch):
    """vLLM and friends sit on the inside network: their probes ignore the egress proxy."""
    async with endpoint() as node, EgressProxy().running() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        prober = prober_for({"model": "hosted_vllm/m", "api_base": f"{node.url(tls=False)}/v1"})
        assert health(await probe_once(prober)) == (True, "200 OK")
    assert proxy.requests == []


async def test_litellm_disabling_trust_env_sends_probes_direct(monkeypatch, pki):
    async with endpoint(pki) as api, EgressProxy().running() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setattr(litellm, "disable_aiohttp_trust_env", True)
        prober = prober_for(hosted(f"{api.url(tls=True)}/v1", ssl_verify=str(pki.ca_file)))
        assert health(await probe_once(prober)) == (True, "200 OK")
    assert proxy.requests == []


async def test_proxy_credentials_are_sent_and_never_shown(monkeypatch, pki):
    async with endpoint(pki) as api, EgressProxy(credentials=("team", "pr0xy-s3cret")).running() as proxy:
        proxy.hosts[HOSTED_NAME] = api.port
        prober = prober_for(hosted(f"{api.url(HOSTED_NAME, tls=True)}/v1", ssl_verify=str(pki.ca_file)))
        with_auth = proxy.url.replace("http://", "http://team:pr0xy-s3cret@")
        monkeypatch.setenv("HTTPS_PROXY", with_auth)
        assert health(await probe_once(prober)) == (True, "200 OK")

        monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("http://", "http://team:wrong-s3cret@"))
        ok, reason = health(await probe_once(prober))
    proxy_host = proxy.url.removeprefix("http://")
    assert not ok
    assert reason == (
        f"proxy {proxy_host}: refused CONNECT {HOSTED_NAME}:{api.port}: proxy authentication required"
    )
    assert "s3cret" not in repr(prober.target) and "s3cret" not in reason


async def test_an_unreachable_or_unsupported_proxy_is_a_clear_reason(monkeypatch, pki, unused_tcp_port):
    prober = prober_for(hosted(f"https://{HOSTED_NAME}:443/v1"))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{unused_tcp_port}")
    ok, reason = health(await probe_once(prober))
    assert not ok
    assert reason.startswith(f"proxy 127.0.0.1:{unused_tcp_port}: cannot connect")
    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:pw@127.0.0.1:1080")
    ok, reason = health(await probe_once(prober))
    assert not ok
    assert reason == (
        "proxy from the environment: socks5:// proxies are not supported for probes (use an http:// proxy)"
    )


async def test_ssl_verify_ca_file_passes_and_none_fails_with_the_reason(pki):
    async with endpoint(pki) as api:
        base = f"{api.url(tls=True)}/v1"
        ok, reason = health(await probe_once(prober_for(hosted(base))))
        assert not ok
        assert reason.startswith("TLS error talking to 127.0.0.1: [SSL: CERTIFICATE_VERIFY_FAILED]")
        assert "certificate verify failed" in reason
        assert health(await probe_once(prober_for(hosted(base, ssl_verify=str(pki.ca_file))))) == (
            True,
            "200 OK",
        )
        assert health(await probe_once(prober_for(hosted(base, ssl_verify=False)))) == (True, "200 OK")


async def test_litellms_own_ssl_settings_apply(monkeypatch, pki):
    async with endpoint(pki) as api:
        base = f"{api.url(tls=True)}/v1"
        monkeypatch.setattr(litellm, "ssl_verify", str(pki.ca_file))
        assert health(await probe_once(prober_for(hosted(base)))) == (True, "200 OK")
        monkeypatch.setattr(litellm, "ssl_verify", True)
        monkeypatch.setenv("SSL_VERIFY", "False")
        assert health(await probe_once(prober_for(hosted(base)))) == (True, "200 OK")
        monkeypatch.setenv("CA_BUNDLE", str(pki.ca_file))  # os.environ/ references resolve
        monkeypatch.delenv("SSL_VERIFY")
        prober = prober_for(hosted(base, ssl_verify="os.environ/CA_BUNDLE"))
        assert health(await probe_once(prober)) == (True, "200 OK")


async def test_self_hosted_ca_file(pki):
    async with endpoint(pki) as node:
        params = {"model": "hosted_vllm/m", "api_base": f"{node.url(tls=True)}/v1"}
        ok, reason = health(await probe_once(prober_for(params)))
        assert not ok and "certificate verify failed" in reason
        prober = prober_for(params, {"ca_file": str(pki.ca_file)})
        assert health(await probe_once(prober)) == (True, "200 OK")


def test_bad_tls_settings_name_the_key(tmp_path):
    missing = tmp_path / "nope.pem"
    with pytest.raises(FailoverConfigError) as err:
        prober_for({"model": "hosted_vllm/m", "api_base": "https://node:8000/v1"}, {"ca_file": str(missing)})
    assert str(err.value) == (
        "invalid configuration: model_list[0].model_info.failover.ca_file: "
        f"CA file {str(missing)!r} does not exist"
    )
    with pytest.raises(FailoverConfigError) as err:
        prober_for(hosted("https://gw.example/v1", ssl_verify=str(missing)))
    assert str(err.value).startswith(
        "invalid configuration: model_list[0].litellm_params.ssl_verify: CA file"
    )
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(FailoverConfigError) as err:
        prober_for(hosted("https://gw.example/v1", ssl_verify=str(not_pem)))
    assert "is not a PEM CA bundle" in str(err.value)


async def test_connections_are_kept_per_route(pki):
    """A connection opened with one trust is never reused by a probe that asked for another."""
    async with endpoint(pki) as api, ProbeClient() as client:
        url = f"{api.url(tls=True)}/v1/models"
        trusting = Egress(verify=True, ca_file=str(pki.ca_file))
        assert (await client.get(url, max_body_bytes=10_000, egress=trusting)).status == 200
        with pytest.raises(TlsFailed, match="certificate verify failed"):
            await client.get(url, max_body_bytes=10_000, egress=DIRECT)

"""A CA bundle replaced on disk (a rotated private CA) is trusted from the next probe, no restart.

Real parts only: two CAs made here (``egress_support.make_ca``), a TLS endpoint on 127.0.0.1 that
moves from CA1's certificate to CA2's (``Endpoint.rotate``: new handshakes only, as a server
reloading its certificate), and the bundle replaced the ways operators replace it: a new file
renamed over the old, a rewrite in place, and a Kubernetes secret's ``..data`` symlink swap
(``MountedSecret``). Before the fix the first loaded bundle was trusted for the life of the
process and the probe client kept reusing connections verified under it: after the rotation the
probes failed with a TLS error (or passed only on an old connection) while traffic, which builds
its own context, worked.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from egress_support import MountedSecret, Pki, endpoint, make_ca
from test_router_failover import events_of, make_plugin, state_of  # noqa: F401 (fixture)
from waiting import wait_until

from litellm_failover.providers import egress
from litellm_failover.providers.egress import CaFileError, Egress, ssl_context
from litellm_failover.providers.probe_client import ProbeClient

LIMIT = 10_000


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_VERIFY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Pki]:
    return make_ca(tmp_path_factory.mktemp("ca1")), make_ca(tmp_path_factory.mktemp("ca2"))


def installed(how: str, folder: Path, pem: bytes) -> tuple[Path, Callable[[bytes], None]]:
    """The bundle's path and how it is replaced."""
    if how == "kubernetes":
        secret = MountedSecret(folder, pem)
        return secret.path, secret.update
    path = folder / "internal-ca.pem"
    path.write_bytes(pem)
    if how == "rewritten":
        return path, path.write_bytes

    def renamed_over(new: bytes) -> None:
        (folder / "internal-ca.pem.new").write_bytes(new)
        os.replace(folder / "internal-ca.pem.new", path)

    return path, renamed_over


@pytest.mark.parametrize("how", ["renamed", "rewritten", "kubernetes"])
async def test_a_replaced_bundle_is_trusted_from_the_next_request(cas, tmp_path, how):
    ca1, ca2 = cas
    path, replace = installed(how, tmp_path, ca1.ca_file.read_bytes())
    route = Egress(verify=True, ca_file=str(path))
    async with endpoint(ca1) as api, ProbeClient() as client:
        url = f"{api.url(tls=True)}/v1/models"
        for _ in range(2):
            assert (await client.get(url, max_body_bytes=LIMIT, egress=route)).status == 200
        old = api.connections[0]
        assert api.connections == [old, old]  # kept alive: there is an old connection to reuse

        api.rotate(ca2)
        replace(ca2.ca_file.read_bytes())
        # A new connection, verified under CA2: reusing the old one would hide a stale trust,
        # and a new one verified under the old bundle would fail against CA2's certificate.
        assert (await client.get(url, max_body_bytes=LIMIT, egress=route)).status == 200
        new = api.connections[-1]
        assert new is not old
        await wait_until(old.is_closing, timeout=5, what="the connection verified under CA1 closed")
        assert (await client.get(url, max_body_bytes=LIMIT, egress=route)).status == 200
        assert api.connections[-1] is new  # the new trust's connection is kept in its turn


async def test_a_removed_bundle_fails_naming_the_file_even_on_a_kept_connection(cas, tmp_path):
    ca1, _ = cas
    path = tmp_path / "internal-ca.pem"
    shutil.copy(ca1.ca_file, path)
    route = Egress(verify=True, ca_file=str(path))
    async with endpoint(ca1) as api, ProbeClient() as client:
        url = f"{api.url(tls=True)}/v1/models"
        assert (await client.get(url, max_body_bytes=LIMIT, egress=route)).status == 200
        path.unlink()
        with pytest.raises(CaFileError) as err:
            await client.get(url, max_body_bytes=LIMIT, egress=route)
        assert str(err.value) == f"cannot load CA file {path}: No such file or directory"
        shutil.copy(ca1.ca_file, path)
        assert (await client.get(url, max_body_bytes=LIMIT, egress=route)).status == 200
    assert len(api.connections) == 2


def test_the_context_cache_holds_one_version_per_file_and_a_bounded_number_of_files(cas, tmp_path):
    ca1, ca2 = cas
    path = tmp_path / "rotating.pem"
    seen = []
    for pki in (ca1, ca2, ca1, ca2):
        (tmp_path / "next.pem").write_bytes(pki.ca_file.read_bytes())
        os.replace(tmp_path / "next.pem", path)
        seen.append(ssl_context(True, str(path)))
        assert ssl_context(True, str(path)) is seen[-1]  # unchanged file: the loaded context
    assert len({id(context) for context in seen}) == 4  # each replacement loaded anew
    assert [key for key in egress._ca_contexts if key == str(path)] == [str(path)]
    for index in range(egress.CA_FILES_KEPT + 5):
        other = tmp_path / f"bundle-{index}.pem"
        shutil.copy(ca1.ca_file, other)
        ssl_context(True, str(other))
    assert len(egress._ca_contexts) == egress.CA_FILES_KEPT
    assert str(path) not in egress._ca_contexts  # the least recently used went first


async def test_the_probe_loop_follows_a_rotated_secret_and_names_a_removed_one(cas, tmp_path, make_plugin):  # noqa: F811
    """In the plugin: a hosted deployment trusting a mounted secret (its ``ssl_verify``) stays
    healthy through a rotation, the bundle gone is the check's reason, and the rounds go on."""
    ca1, ca2 = cas
    secret = MountedSecret(tmp_path, ca1.ca_file.read_bytes())
    async with endpoint(ca1) as api:
        params = {
            "model": "openai/gpt-test",
            "api_base": f"{api.url(tls=True)}/v1",
            "api_key": "sk-test-rotation",
            "ssl_verify": str(secret.path),
            "timeout": 5,
        }
        entry = {"model_name": "chat", "litellm_params": params, "model_info": {"id": "h1"}}
        _, plugin = make_plugin([entry])
        async with plugin:

            def health() -> dict:
                checks = plugin.status()["groups"]["chat"]["deployments"][0]["checks"]
                return checks.get("http_health") or {"ok": None, "reason": ""}

            await wait_until(lambda: health()["ok"] is True, timeout=10, what="h1's probe passing (CA1)")
            before = set(map(id, api.connections))
            api.rotate(ca2)  # no await in between: no probe sees one changed without the other
            secret.update(ca2.ca_file.read_bytes())

            def passed_under_ca2() -> int:
                return sum(id(connection) not in before for connection in api.connections)

            await wait_until(lambda: passed_under_ca2() >= 3, timeout=10, what="probes passing under CA2")
            assert health()["ok"] is True
            assert state_of(plugin, "h1") == "healthy"
            assert await events_of(plugin, "state_change") == []  # never ejected, nor degraded

            os.unlink(secret.path)
            rounds = plugin.prober.rounds
            await wait_until(lambda: health()["ok"] is False, timeout=10, what="the removed bundle failing")
            assert health()["reason"] == f"cannot load CA file {secret.path}: No such file or directory"
            await wait_until(lambda: plugin.prober.rounds > rounds + 2, timeout=10, what="rounds going on")

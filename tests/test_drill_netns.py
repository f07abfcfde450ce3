"""The network black hole: a fake vLLM in its own namespace whose link is cut silently.

What the drill relies on, checked against the real kernel: the node serves over the veth; after
``cut()`` a connect times out (not refused, not "no route to host") and an in-flight stream stalls
without a reset; after ``restore()`` it serves again; ``close()`` leaves nothing behind.
Skipped with the reason where namespaces are not allowed, except as root under CI=true, where the
runner is known to allow them and a skip would hide a regression.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from services import in_ci

from litellm_failover.drill.iproute import NetnsError
from litellm_failover.drill.namespaces import NETNS_PREFIX, STATE_DIR, cleanup_stale, netns_support
from litellm_failover.drill.netns import BlackholeNode
from litellm_failover.providers.fake.vllm import DEFAULT_MODEL

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_STALL_S = 1.5


@pytest.fixture
def netns_ok() -> None:
    """Skip (or, as root under CI=true, fail) with netns_support()'s reason when unavailable."""
    reason = netns_support()
    if reason is None:
        return
    if in_ci() and os.geteuid() == 0:
        pytest.fail(f"CI=true as root but network namespaces unavailable: {reason}", pytrace=False)
    pytest.skip(f"network black hole unavailable: {reason}")


@pytest.fixture
def node(netns_ok: None) -> Iterator[BlackholeNode]:
    # Slow stream: 200 words at 20 tokens/s lasts ~10 s, longer than any stall check below.
    with BlackholeNode("bh-node", words=200, tokens_per_s=20) as started:
        yield started


def _get_json(url: str, timeout: float = 3.0) -> dict:
    with _OPENER.open(url, timeout=timeout) as response:
        return json.loads(response.read())


def _chat(node: BlackholeNode, timeout: float = 5.0) -> dict:
    # max_tokens keeps the answer short on the deliberately slow node.
    body = json.dumps(
        {"model": DEFAULT_MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    request = urllib.request.Request(
        f"{node.api_base}/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with _OPENER.open(request, timeout=timeout) as response:
        return json.loads(response.read())


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=10, check=True).stdout


def _namespaces() -> str:
    return subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True
    ).stdout


def _connect_outcome(host: str, port: int, timeout: float) -> tuple[str, float]:
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            outcome = "connected"
    except TimeoutError:
        outcome = "timeout"
    except OSError as exc:
        outcome = f"error: {exc!r}"
    return outcome, time.monotonic() - start


def test_node_serves_health_and_chat_from_the_host(node: BlackholeNode) -> None:
    assert node.host.startswith("10.200.") and node.url == f"http://{node.host}:{node.port}"
    assert node.api_base == node.url + "/v1"
    with _OPENER.open(node.url + "/health", timeout=3.0) as response:
        assert response.status == 200
    answer = _chat(node)
    assert answer["choices"][0]["message"]["content"].split()
    assert node.state()["name"] == "bh-node"
    assert node.set_fault("http_500")["fault"]["mode"] == "http_500"
    assert node.clear_fault()["fault"] is None


def test_cut_black_holes_connects_and_streams_then_restore_serves(node: BlackholeNode) -> None:
    # An in-flight stream: headers and a first chunk arrive before the cut.
    sock = socket.create_connection((node.host, node.port), timeout=3.0)
    try:
        body = json.dumps(
            {"model": DEFAULT_MODEL, "stream": True, "messages": [{"role": "user", "content": "go"}]}
        ).encode()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"data:" not in received:
            chunk = sock.recv(65536)
            assert chunk, "stream closed before its first chunk"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200")

        node.cut()
        assert node.is_cut

        # Drain what was already in flight, then: nothing at all for _STALL_S, and no reset/EOF.
        sock.settimeout(0.3)
        drain_deadline = time.monotonic() + 2.0
        while time.monotonic() < drain_deadline:
            try:
                assert sock.recv(65536), "stream got EOF after the cut instead of stalling"
            except TimeoutError:
                break
        sock.settimeout(_STALL_S)
        stall_start = time.monotonic()
        with pytest.raises(TimeoutError):
            data = sock.recv(65536)
            pytest.fail(f"stream delivered {data[:60]!r} while the link was cut")
        assert time.monotonic() - stall_start >= _STALL_S * 0.9

        # A new connect neither succeeds nor is refused nor unreachable: it times out.
        outcome, took = _connect_outcome(node.host, node.port, timeout=1.0)
        assert outcome == "timeout", outcome
        assert 0.9 <= took < 3.0
        # Control calls travel the same link, so they time out too.
        with pytest.raises(urllib.error.URLError) as control:
            node.state(timeout=0.5)
        assert isinstance(control.value.reason, TimeoutError), control.value
    finally:
        sock.close()

    node.restore()
    assert not node.is_cut
    assert _chat(node)["choices"][0]["message"]["content"]
    assert _connect_outcome(node.host, node.port, timeout=2.0)[0] == "connected"


def test_close_leaves_no_namespace_or_veth_and_two_nodes_get_distinct_addresses(netns_ok: None) -> None:
    with BlackholeNode() as first, BlackholeNode() as second:
        names = (first.namespace, second.namespace)
        assert first.namespace != second.namespace and first.name == first.namespace
        assert first.subnet != second.subnet and not first.subnet.overlaps(second.subnet)
        assert first.state()["name"] == first.namespace
        assert second.state()["name"] == second.namespace
        first.cut()  # a cut node must clean up as well
        assert all(name in _namespaces() for name in names)
        assert all(f"{name}-h" in _links() for name in names)
        pids = (first.server.pid, second.server.pid)
    namespaces, links = _namespaces(), _links()
    for name in names:
        assert name not in namespaces and name not in links
    for pid in pids:
        assert pid is not None and not os.path.exists(f"/proc/{pid}")


def test_exception_inside_block_still_cleans_up(netns_ok: None) -> None:
    with pytest.raises(RuntimeError, match="boom"), BlackholeNode() as node:
        name = node.namespace
        raise RuntimeError("boom")
    assert name not in _namespaces() and name not in _links()
    node.close()  # idempotent


def test_failed_start_cleans_up_and_names_the_cause(netns_ok: None) -> None:
    node = BlackholeNode(extra_args=["--fault", "no-such-fault"], start_timeout=5.0)
    with pytest.raises(Exception, match="no-such-fault"):
        node.start()
    assert node.namespace not in _namespaces() and node.namespace not in _links()


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped: an owner that crashed."""
    probe = subprocess.Popen(["true"])
    probe.wait(timeout=10)
    return probe.pid


def test_cleanup_stale_removes_orphans_but_not_live_nodes(netns_ok: None) -> None:
    """A crashed run's namespace (dead owner, fake vLLM still inside) goes; a live node stays."""
    orphan = f"{NETNS_PREFIX}{secrets.token_hex(4)}"
    (STATE_DIR / f"{orphan}.owner").write_text(f"{_dead_pid()}\n")
    subprocess.run(["ip", "netns", "add", orphan], check=True, timeout=10)
    leftover: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            ["ip", "link", "add", f"{orphan}-h", "type", "veth", "peer", "name", "x", "netns", orphan],
            check=True,
            timeout=10,
        )
        leftover = subprocess.Popen(
            ["ip", "netns", "exec", orphan, sys.executable, "-m", "litellm_failover.cli", "fake-vllm",
             "--host", "127.0.0.1", "--port", "8000", "--name", "leftover"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 5.0
        cmdline = Path(f"/proc/{leftover.pid}/cmdline")
        while b"fake-vllm" not in cmdline.read_bytes() or b"netns" in cmdline.read_bytes():
            assert time.monotonic() < deadline, "leftover server never exec'd"
            assert leftover.poll() is None, "leftover server exited on its own"
            time.sleep(0.02)
        with BlackholeNode() as live:
            removed = cleanup_stale()
            # A parallel test run may have removed the orphan first; it is stale for everyone.
            assert orphan in removed or orphan not in _namespaces()
            assert live.namespace not in removed
            assert orphan not in _namespaces() and f"{orphan}-h" not in _links()
            assert leftover.wait(timeout=5) == -signal.SIGKILL
            assert not (STATE_DIR / f"{orphan}.owner").exists()
            assert live.state()["name"] == live.namespace
    finally:
        if leftover is not None and leftover.poll() is None:
            leftover.kill()
            leftover.wait(timeout=5)
        subprocess.run(["ip", "link", "del", f"{orphan}-h"], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", orphan], capture_output=True, timeout=10)
        (STATE_DIR / f"{orphan}.owner").unlink(missing_ok=True)


def test_bad_input_and_misuse_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=re.escape("port must be 1..65535, got 0")):
        BlackholeNode(port=0)
    idle = BlackholeNode()
    with pytest.raises(NetnsError, match="not started"):
        idle.cut()
    with pytest.raises(NetnsError, match="not started"):
        _ = idle.url

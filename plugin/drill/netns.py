"""A fake vLLM node behind a link that can be cut: the drill's network black hole.

A killed node refuses connections and resets streams, so a gateway notices at once. A node whose
network silently drops packets is worse: connects hang until a timeout, streams stall without an
error, and only deadlines save the client. To show that honestly the node runs in its own network
namespace, reached from the host over a veth pair on a private /30 out of 10.200.0.0/16, and
``cut()`` makes both ends of that pair drop every packet.

How the drop is done: a ``pfifo`` qdisc with ``limit 0`` at the root of both veth ends, so every
packet is discarded on enqueue without an RST or an ICMP error (``netem`` and ``iptables`` are
often missing from CI kernels; ``pfifo`` is always built in). The neighbour entries on both ends
are permanent, so a cut never turns into a failed ARP lookup, which the kernel would report to the
local sender as "no route to host" instead of staying silent, as a link lost several hops away is.

Needs root or CAP_NET_ADMIN and iproute2 (``ip``, ``tc``); :func:`netns_support` says whether this
machine allows it and why not. Every namespace made here is named ``lfo-`` + 8 hex digits and its
owner's pid is recorded under ``/run/litellm-failover-netns``, so :func:`cleanup_stale` can remove
what a crashed run left behind without touching a live run's nodes.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.text import DEFAULT_WORDS
from litellm_failover.providers.fake.vllm import DEFAULT_MODEL, DEFAULT_TOKENS_PER_S

__all__ = [
    "NETNS_PREFIX",
    "STATE_DIR",
    "BlackholeNode",
    "NetnsError",
    "cleanup_stale",
    "netns_support",
]

NETNS_PREFIX = "lfo-"
DEFAULT_PORT = 8000
_POOL = ipaddress.ip_network("10.200.0.0/16")
_CMD_TIMEOUT_S = 10.0
STATE_DIR = Path("/run/litellm-failover-netns")
_CAP_NET_ADMIN_BIT = 12
_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


class NetnsError(RuntimeError):
    """An ``ip``/``tc`` command failed or timed out; the message names the command and its stderr."""


# --- running iproute2 -------------------------------------------------------------------------


def _find_tool(name: str) -> str | None:
    """``ip``/``tc`` live in sbin, which a non-root PATH often lacks."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _tool(name: str) -> str:
    path = _find_tool(name)
    if path is None:
        raise NetnsError(f"iproute2 `{name}` not found (looked in PATH and {', '.join(_SBIN_DIRS)})")
    return path


def _run(args: Sequence[str], *, timeout: float = _CMD_TIMEOUT_S, check: bool = True) -> str:
    """Run one command with a timeout; its stdout, or ``NetnsError`` naming the command and stderr."""
    shown = " ".join(args)
    try:
        done = subprocess.run(
            list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise NetnsError(f"`{shown}` did not finish within {timeout}s") from exc
    except OSError as exc:
        raise NetnsError(f"`{shown}` could not run: {exc}") from exc
    if check and done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip() or "(no output)"
        raise NetnsError(f"`{shown}` failed with exit status {done.returncode}: {detail}")
    return done.stdout


def _ip(*args: str, check: bool = True) -> str:
    return _run([_tool("ip"), *args], check=check)


def _tc(*args: str, check: bool = True) -> str:
    return _run([_tool("tc"), *args], check=check)


def _ip_json(*args: str) -> list[dict[str, Any]]:
    text = _ip("-j", *args).strip()
    return json.loads(text) if text else []


# --- support check ----------------------------------------------------------------------------


def _has_net_admin() -> bool:
    if os.geteuid() == 0:
        return True
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN_BIT & 1)
    return False


@functools.cache
def netns_support() -> str | None:
    """None when this machine can run a :class:`BlackholeNode`, else a one-line reason why not.

    The answer comes from actually doing it once (a namespace, a veth pair into it, ``ip netns
    exec``, a drop qdisc) and cleaning up, because containers often have the tools and the
    capability but forbid one of these steps. Cached for the life of the process.
    """
    if not _has_net_admin():
        return "network namespaces need root or CAP_NET_ADMIN"
    for name in ("ip", "tc"):
        if _find_tool(name) is None:
            return f"iproute2 `{name}` not found"
    try:
        _ensure_state_dir()
    except OSError as exc:
        return f"cannot write {STATE_DIR}: {exc}"
    name = _new_name()
    try:
        _claim(name)
        _ip("netns", "add", name)
        _ip("link", "add", f"{name}-h", "type", "veth", "peer", "name", f"{name}-n", "netns", name)
        _ip("netns", "exec", name, _tool("ip"), "link", "set", "lo", "up")
        _tc("qdisc", "add", "dev", f"{name}-h", "root", "pfifo", "limit", "0")
    except NetnsError as exc:
        return str(exc).splitlines()[0] if str(exc) else "network namespace setup failed"
    finally:
        with contextlib.suppress(NetnsError):
            _delete(name)
    return None


# --- names, ownership, addresses ------------------------------------------------------------


def _new_name() -> str:
    return f"{NETNS_PREFIX}{secrets.token_hex(4)}"


def _ensure_state_dir() -> None:
    STATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)


def _claim(name: str) -> None:
    """Record this process as the namespace's owner before it exists, so no window looks stale."""
    _ensure_state_dir()
    # Write then rename: a concurrent cleanup_stale() never reads a half-written (empty) file.
    partial = STATE_DIR / f".{name}.owner.{os.getpid()}"
    partial.write_text(f"{os.getpid()}\n")
    os.replace(partial, STATE_DIR / f"{name}.owner")


def _release(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (STATE_DIR / f"{name}.owner").unlink()


def _owner_alive(name: str) -> bool:
    try:
        pid = int((STATE_DIR / f"{name}.owner").read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _address_lock() -> Iterator[None]:
    """Serialise pick-and-assign of /30s across processes (parallel test runs, several drills)."""
    _ensure_state_dir()
    with open(STATE_DIR / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host already has an address or a route in (all tables)."""
    used: list[ipaddress.IPv4Network] = []
    for link in _ip_json("-4", "addr", "show"):
        for info in link.get("addr_info", []):
            with contextlib.suppress(KeyError, ValueError):
                used.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in _ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    return used


def _pick_subnet(in_use: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """A random free /30 from the pool (random, so parallel pickers rarely even collide)."""
    count = _POOL.num_addresses // 4
    start = random.randrange(count)
    base = int(_POOL.network_address)
    for offset in range(count):
        index = (start + offset) % count
        candidate = ipaddress.IPv4Network((base + 4 * index, 30))
        if not any(candidate.overlaps(net) for net in in_use if net.prefixlen > 0):
            return candidate
    raise NetnsError(f"no free /30 left in {_POOL}")


def _delete(name: str) -> None:
    """Remove the veth pair and the namespace (each step tolerated if already gone)."""
    errors: list[str] = []
    if _link_exists(f"{name}-h"):
        try:
            _ip("link", "del", f"{name}-h")
        except NetnsError as exc:
            errors.append(str(exc))
    if name in _namespaces():
        try:
            _ip("netns", "del", name)
        except NetnsError as exc:
            errors.append(str(exc))
    if errors:
        # The owner file stays, so cleanup_stale() retries once this process is gone.
        raise NetnsError("; ".join(errors))
    _release(name)


def _namespaces() -> list[str]:
    """Names of the named network namespaces (``ip netns list`` prints ``NAME (id: N)``)."""
    return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]


def _link_exists(ifname: str) -> bool:
    return bool(_ip("-o", "link", "show", "dev", ifname, check=False).strip())


def _is_fake_vllm(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"litellm_failover.cli" in cmdline and b"fake-vllm" in cmdline


def cleanup_stale() -> list[str]:
    """Remove ``lfo-`` namespaces (and their host veths) whose owning process is gone.

    A crashed run leaves its namespace, veth and maybe a fake vLLM inside; the drill calls this
    at start. Namespaces of live runs (owner pid alive) are left alone, so parallel runs are safe.
    Fake vLLM servers still running inside a stale namespace are SIGKILLed (only those: any other
    process found there is left running, and its namespace is unnamed but survives until it exits).
    Returns the names removed. Does nothing (returns []) where :func:`netns_support` says no.
    """
    if netns_support() is not None:
        return []
    removed: list[str] = []
    live = set()
    for name in _namespaces():
        if not name.startswith(NETNS_PREFIX):
            continue
        if _owner_alive(name):
            live.add(name)
            continue
        for pid_text in _ip("netns", "pids", name, check=False).split():
            if pid_text.isdigit() and _is_fake_vllm(int(pid_text)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid_text), signal.SIGKILL)
        _delete(name)
        removed.append(name)
    # Host ends whose namespace is gone but whose peer was kept alive by a process inside it.
    for link in _ip_json("link", "show", "type", "veth"):
        ifname = str(link.get("ifname", ""))
        owner = ifname.removesuffix("-h")
        if ifname.startswith(NETNS_PREFIX) and ifname.endswith("-h") and owner not in live:
            if not _owner_alive(owner):
                _ip("link", "del", ifname, check=False)
                _release(owner)
                if owner not in removed:
                    removed.append(owner)
    return removed


# --- the node ---------------------------------------------------------------------------------


class _NamespacedFakeVLLM(FakeVLLMProcess):
    """``FakeVLLMProcess`` run under ``ip netns exec`` and bound to the namespace-side address.

    ``ip netns exec`` execs the command in place (no fork), so the Popen pid is the server itself
    and the parent's kill/stop/readiness logic works unchanged.
    """

    def __init__(self, namespace: str, bind_host: str, name: str, port: int, **kwargs: Any) -> None:
        super().__init__(name, port, **kwargs)
        self.namespace = namespace
        self.bind_host = bind_host

    @property
    def url(self) -> str:
        return f"http://{self.bind_host}:{self.port}"

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("--host") + 1] = self.bind_host
        return [_tool("ip"), "netns", "exec", self.namespace, *command]


class BlackholeNode:
    """A fake vLLM server in its own network namespace whose link can be cut silently.

    ``with BlackholeNode() as node:`` creates the namespace and veth pair, starts the server and
    waits until it serves; leaving the block (also on an exception) kills the server and deletes
    the namespace and veth pair. ``cut()`` drops every packet to and from the node, ``restore()``
    undoes it. The control calls (``set_fault``, ``clear_fault``, ``state``) go over the veth, so
    they time out while the link is cut, as any other traffic does.
    """

    def __init__(
        self,
        node_name: str | None = None,
        *,
        port: int = DEFAULT_PORT,
        words: int = DEFAULT_WORDS,
        tokens_per_s: float = DEFAULT_TOKENS_PER_S,
        model: str = DEFAULT_MODEL,
        extra_args: Sequence[str] = (),
        start_timeout: float = 15.0,
    ) -> None:
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be 1..65535, got {port!r}")
        self.namespace = _new_name()
        self._node_name = node_name or self.namespace
        self._port = port
        self._server_kwargs: dict[str, Any] = {
            "words": words,
            "tokens_per_s": tokens_per_s,
            "model": model,
            "extra_args": tuple(extra_args),
        }
        self._start_timeout = start_timeout
        self._subnet: ipaddress.IPv4Network | None = None
        self._server: _NamespacedFakeVLLM | None = None
        self._cut = False
        self._created = False

    # --- identity -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The fake vLLM node name (defaults to the namespace name), as on ``FakeVLLMProcess``."""
        return self._node_name

    @property
    def host_ifname(self) -> str:
        return f"{self.namespace}-h"

    @property
    def node_ifname(self) -> str:
        return f"{self.namespace}-n"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        if self._subnet is None:
            raise NetnsError(f"blackhole node {self.namespace} is not started")
        return self._subnet

    @property
    def host(self) -> str:
        """The namespace-side address, where the server listens."""
        return str(self.subnet.network_address + 2)

    @property
    def host_side_ip(self) -> str:
        """The host end of the veth pair (the node's only peer)."""
        return str(self.subnet.network_address + 1)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    @property
    def model(self) -> str:
        return str(self._server_kwargs["model"])

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def alive(self) -> bool:
        return self._server is not None and self._server.alive

    @property
    def server(self) -> FakeVLLMProcess:
        """The underlying process handle (pid, stderr_text, kill/restart for combined drills)."""
        if self._server is None:
            raise NetnsError(f"blackhole node {self.namespace} is not started")
        return self._server

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> BlackholeNode:
        """Create namespace and veth pair, start the server, wait until it serves; undo on failure."""
        if self._created:
            raise NetnsError(f"blackhole node {self.namespace} is already started")
        reason = netns_support()
        if reason is not None:
            raise NetnsError(f"network black hole unavailable: {reason}")
        self._created = True
        try:
            self._create_network()
            self._server = _NamespacedFakeVLLM(
                self.namespace, self.host, self._node_name, self._port, **self._server_kwargs
            )
            self._server.start(timeout=self._start_timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _create_network(self) -> None:
        ns, host_if, node_if = self.namespace, self.host_ifname, self.node_ifname
        _claim(ns)
        with _address_lock():
            self._subnet = _pick_subnet(_networks_in_use())
            _ip("netns", "add", ns)
            _ip("link", "add", host_if, "type", "veth", "peer", "name", node_if, "netns", ns)
            _ip("addr", "add", f"{self.host_side_ip}/30", "dev", host_if)
        _ip("-n", ns, "addr", "add", f"{self.host}/30", "dev", node_if)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", node_if, "up")
        _ip("link", "set", host_if, "up")
        host_mac = _ip_json("link", "show", "dev", host_if)[0]["address"]
        node_mac = _ip_json("-n", ns, "link", "show", "dev", node_if)[0]["address"]
        _ip("neigh", "replace", self.host, "lladdr", node_mac, "dev", host_if, "nud", "permanent")
        _ip("-n", ns, "neigh", "replace", self.host_side_ip, "lladdr", host_mac, "dev", node_if, "nud",
            "permanent")  # fmt: skip

    def close(self) -> None:
        """Kill the server, delete veth pair and namespace. Idempotent; safe after a failed start."""
        errors: list[str] = []
        if self._server is not None:
            self._server.kill()
            self._server.stop()  # already dead: only releases its stderr file
        if self._created:
            try:
                _delete(self.namespace)
            except NetnsError as exc:
                errors.append(str(exc))
            self._created = False
        self._cut = False
        if errors:
            raise NetnsError(f"cleaning up {self.namespace}: {'; '.join(errors)}")

    def __enter__(self) -> BlackholeNode:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the fault ------------------------------------------------------------------------------

    def cut(self) -> None:
        """Drop every packet to and from the node, silently: no RST, no ICMP. Idempotent."""
        self._require_started()
        _tc("qdisc", "replace", "dev", self.host_ifname, "root", "pfifo", "limit", "0")
        _tc("-n", self.namespace, "qdisc", "replace", "dev", self.node_ifname, "root", "pfifo", "limit", "0")
        self._cut = True

    def restore(self) -> None:
        """Reconnect the link, same addresses; new connections work again. Idempotent."""
        self._require_started()
        ends: tuple[tuple[tuple[str, ...], str], ...] = (
            ((), self.host_ifname),
            (("-n", self.namespace), self.node_ifname),
        )
        for prefix, dev in ends:
            if "pfifo" in _tc(*prefix, "qdisc", "show", "dev", dev, "root"):
                _tc(*prefix, "qdisc", "del", "dev", dev, "root")
        self._cut = False

    def _require_started(self) -> None:
        if not self._created or self._subnet is None:
            raise NetnsError(f"blackhole node {self.namespace} is not started")

    # --- control, as on FakeVLLMProcess ---------------------------------------------------------

    def set_fault(self, mode: str, **params: Any) -> dict[str, Any]:
        return self.server.set_fault(mode, **params)

    def clear_fault(self) -> dict[str, Any]:
        return self.server.clear_fault()

    def state(self, timeout: float = 2.0) -> dict[str, Any]:
        return self.server.state(timeout=timeout)

    def __repr__(self) -> str:
        where = self.url if self._subnet is not None else "not started"
        return f"BlackholeNode({self._node_name!r}, netns={self.namespace}, {where}, cut={self._cut})"

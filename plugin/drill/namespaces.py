"""The drill's network namespaces: can this machine make one, which are ours, what to clean up.

Needs root or CAP_NET_ADMIN and iproute2 (``ip``, ``tc``); :func:`netns_support` says whether this
machine allows it and why not. Every namespace made here is named ``lfo-`` + 8 hex digits and its
owner's pid is recorded under ``/run/litellm-failover-netns``, so :func:`cleanup_stale` can remove
what a crashed run left behind without touching a live run's nodes. Addresses are private /30s out
of 10.200.0.0/16, picked under a lock so that parallel runs never share one.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import os
import random
import secrets
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

from litellm_failover.drill.iproute import NetnsError, find_tool, ip, ip_json, tc, tool

NETNS_PREFIX = "lfo-"
STATE_DIR = Path("/run/litellm-failover-netns")
_POOL = ipaddress.ip_network("10.200.0.0/16")
_CAP_NET_ADMIN_BIT = 12


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
        if find_tool(name) is None:
            return f"iproute2 `{name}` not found"
    try:
        _ensure_state_dir()
    except OSError as exc:
        return f"cannot write {STATE_DIR}: {exc}"
    name = new_name()
    try:
        claim(name)
        ip("netns", "add", name)
        ip("link", "add", f"{name}-h", "type", "veth", "peer", "name", f"{name}-n", "netns", name)
        ip("netns", "exec", name, tool("ip"), "link", "set", "lo", "up")
        tc("qdisc", "add", "dev", f"{name}-h", "root", "pfifo", "limit", "0")
    except NetnsError as exc:
        return str(exc).splitlines()[0] if str(exc) else "network namespace setup failed"
    finally:
        with contextlib.suppress(NetnsError):
            delete(name)
    return None


def new_name() -> str:
    return f"{NETNS_PREFIX}{secrets.token_hex(4)}"


def _ensure_state_dir() -> None:
    STATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)


def claim(name: str) -> None:
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
def address_lock() -> Iterator[None]:
    """Serialise pick-and-assign of /30s across processes (parallel test runs, several drills)."""
    _ensure_state_dir()
    with open(STATE_DIR / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host already has an address or a route in (all tables)."""
    used: list[ipaddress.IPv4Network] = []
    for link in ip_json("-4", "addr", "show"):
        for info in link.get("addr_info", []):
            with contextlib.suppress(KeyError, ValueError):
                used.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    return used


def pick_subnet(in_use: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
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


def delete(name: str) -> None:
    """Remove the veth pair and the namespace (each step tolerated if already gone)."""
    errors: list[str] = []
    if _link_exists(f"{name}-h"):
        try:
            ip("link", "del", f"{name}-h")
        except NetnsError as exc:
            errors.append(str(exc))
    if name in _namespaces():
        try:
            ip("netns", "del", name)
        except NetnsError as exc:
            errors.append(str(exc))
    if errors:
        # The owner file stays, so cleanup_stale() retries once this process is gone.
        raise NetnsError("; ".join(errors))
    _release(name)


def _namespaces() -> list[str]:
    """Names of the named network namespaces (``ip netns list`` prints ``NAME (id: N)``)."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def _link_exists(ifname: str) -> bool:
    return bool(ip("-o", "link", "show", "dev", ifname, check=False).strip())


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
        for pid_text in ip("netns", "pids", name, check=False).split():
            if pid_text.isdigit() and _is_fake_vllm(int(pid_text)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid_text), signal.SIGKILL)
        delete(name)
        removed.append(name)
    # Host ends whose namespace is gone but whose peer was kept alive by a process inside it.
    for link in ip_json("link", "show", "type", "veth"):
        ifname = str(link.get("ifname", ""))
        owner = ifname.removesuffix("-h")
        if ifname.startswith(NETNS_PREFIX) and ifname.endswith("-h") and owner not in live:
            if not _owner_alive(owner):
                ip("link", "del", ifname, check=False)
                _release(owner)
                if owner not in removed:
                    removed.append(owner)
    return removed

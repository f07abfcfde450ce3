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

The namespaces themselves (support check, ownership, addresses, stale cleanup) are
``drill.namespaces``; the ``ip``/``tc`` calls are ``drill.iproute``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from litellm_failover.drill.iproute import NetnsError, ip, ip_json, tc, tool
from litellm_failover.drill.namespaces import (
    address_lock,
    claim,
    delete,
    netns_support,
    networks_in_use,
    new_name,
    pick_subnet,
)
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.providers.fake.text import DEFAULT_WORDS
from litellm_failover.providers.fake.vllm import DEFAULT_MODEL, DEFAULT_TOKENS_PER_S

DEFAULT_PORT = 8000


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
        return [tool("ip"), "netns", "exec", self.namespace, *command]


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
        self.namespace = new_name()
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
        claim(ns)
        with address_lock():
            self._subnet = pick_subnet(networks_in_use())
            ip("netns", "add", ns)
            ip("link", "add", host_if, "type", "veth", "peer", "name", node_if, "netns", ns)
            ip("addr", "add", f"{self.host_side_ip}/30", "dev", host_if)
        ip("-n", ns, "addr", "add", f"{self.host}/30", "dev", node_if)
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "set", node_if, "up")
        ip("link", "set", host_if, "up")
        host_mac = ip_json("link", "show", "dev", host_if)[0]["address"]
        node_mac = ip_json("-n", ns, "link", "show", "dev", node_if)[0]["address"]
        ip("neigh", "replace", self.host, "lladdr", node_mac, "dev", host_if, "nud", "permanent")
        ip("-n", ns, "neigh", "replace", self.host_side_ip, "lladdr", host_mac, "dev", node_if, "nud",
            "permanent")  # fmt: skip

    def close(self) -> None:
        """Kill the server, delete veth pair and namespace. Idempotent; safe after a failed start."""
        errors: list[str] = []
        if self._server is not None:
            self._server.kill()
            self._server.stop()  # already dead: only releases its stderr file
        if self._created:
            try:
                delete(self.namespace)
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
        tc("qdisc", "replace", "dev", self.host_ifname, "root", "pfifo", "limit", "0")
        tc("-n", self.namespace, "qdisc", "replace", "dev", self.node_ifname, "root", "pfifo", "limit", "0")
        self._cut = True

    def restore(self) -> None:
        """Reconnect the link, same addresses; new connections work again. Idempotent."""
        self._require_started()
        ends: tuple[tuple[tuple[str, ...], str], ...] = (
            ((), self.host_ifname),
            (("-n", self.namespace), self.node_ifname),
        )
        for prefix, dev in ends:
            if "pfifo" in tc(*prefix, "qdisc", "show", "dev", dev, "root"):
                tc(*prefix, "qdisc", "del", "dev", dev, "root")
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

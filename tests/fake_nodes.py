"""Start a set of fake vLLM servers for a test and stop every one afterwards, whatever happened.

``serving`` runs in-process ``FakeVLLM`` servers (the Router tests); ``running`` runs
``FakeVLLMProcess`` subprocesses (the proxy tests, where a node is SIGKILLed and restarted).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from litellm_failover.providers.fake_vllm import FakeVLLM
from litellm_failover.providers.fake_vllm_process import FakeVLLMProcess


@asynccontextmanager
async def serving(servers: dict[str, FakeVLLM]) -> AsyncIterator[dict[str, FakeVLLM]]:
    try:
        for server in servers.values():
            await server.start()
        yield servers
    finally:
        for server in servers.values():
            await server.stop()


@contextmanager
def running(nodes: dict[str, FakeVLLMProcess]) -> Iterator[dict[str, FakeVLLMProcess]]:
    try:
        for node in nodes.values():
            node.start()
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()

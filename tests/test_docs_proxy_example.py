"""The docs' proxy example runs as pasted: offline, with no environment variable set.

The test takes the fenced ``config.yaml`` block from docs/getting-started.md itself (README.md must
show the same text), edits only the addresses (each ``gpu-node-N:port`` becomes a fake vLLM server
on 127.0.0.1, whose NVML and dcgm-exporter readings answer on the same port), and starts the real
``litellm --config`` with the machine's environment minus everything a test harness or an earlier
test may have set: no LiteLLM or litellm-failover variable, no Hugging Face offline switch, no
OpenAI key. The hosted OpenAI standby stays as written; with no key and no network it must not
stop the proxy or the primaries from serving. Offline, LiteLLM's token counting for the example's
Llama model once tried to download a tokenizer on the event loop and froze the proxy; the
requests here must come back promptly and the proxy's liveness route must keep answering.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from fake_nodes import running
from openai import AsyncOpenAI
from waiting import free_port, wait_until

from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.store.queries import list_deployment_states

pytestmark = pytest.mark.proxy

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "getting-started.md"
EXAMPLE_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
# Variables a harness sets that would make the example pass where a user's shell would not.
SCRUBBED_PREFIXES = (
    "LITELLM",
    "HF_",
    "HUGGING",
    "TRANSFORMERS_",
    "OPENAI",
    "CONFIG_FILE_PATH",
    "DATABASE_URL",
)
PROMPT = [{"role": "user", "content": "Name some places in the mountains"}]
ANSWER_WITHIN_S = 15.0  # offline, the tokenizer download LiteLLM tried kept a request 24 s and more here


def proxy_example(markdown: str) -> str:
    """The one fenced YAML block that is a proxy config (a model list and failover_settings)."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", markdown, flags=re.S | re.M)
    examples = [b for b in blocks if "model_list:" in b and "failover_settings:" in b]
    assert len(examples) == 1, f"expected one proxy example, found {len(examples)}"
    return examples[0]


def node_hosts(example: str) -> list[str]:
    """The hosts the example's addresses name, in order of first appearance."""
    return list(dict.fromkeys(re.findall(r"http://([a-z0-9-]+):\d+", example)))


def point_at(example: str, ports: dict[str, int]) -> str:
    """Only the addresses change: ``http://host:any-port`` becomes the host's fake on 127.0.0.1."""

    def replace(match: re.Match[str]) -> str:
        return f"http://127.0.0.1:{ports[match.group(1)]}"

    return re.sub(r"http://([a-z0-9-]+):\d+", replace, example)


def string_values(node: object) -> Iterator[str]:
    """Every string value in a parsed YAML document (comments are gone by then)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from string_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from string_values(value)


def bare_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(SCRUBBED_PREFIXES)}


@pytest.fixture
def example() -> str:
    text = proxy_example(PAGE.read_text())
    assert proxy_example((ROOT / "README.md").read_text()) == text, "README's proxy example differs"
    return text


@pytest.fixture
def nodes(example: str) -> Iterator[dict[str, FakeVLLMProcess]]:
    hosts = node_hosts(example)
    assert hosts == ["gpu-node-1", "gpu-node-2"]
    fakes = {host: FakeVLLMProcess(host, model=EXAMPLE_MODEL, tokens_per_s=400) for host in hosts}
    with running(fakes) as started:
        yield started


@pytest.fixture
def proxy_url(example: str, nodes: dict[str, FakeVLLMProcess], tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "config.yaml"
    config.write_text(point_at(example, {host: node.port for host, node in nodes.items()}))
    port = free_port()
    litellm = Path(sys.executable).with_name("litellm")
    log_path = tmp_path / "proxy.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            env=bare_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # LiteLLM retries its remote cost map before it falls back
        while not _live(url):
            assert process.poll() is None, f"proxy exited:\n{log_path.read_text(errors='replace')[-6000:]}"
            assert time.monotonic() < deadline, (
                f"proxy not up:\n{log_path.read_text(errors='replace')[-6000:]}"
            )
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        print(log_path.read_text(errors="replace")[-6000:])  # shown by pytest when the test failed


def _live(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/liveliness", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_docs_name_no_environment_variable_the_proxy_needs(example: str) -> None:
    config = yaml.safe_load(example)
    assert "database_url" not in config["failover_settings"]
    assert "LITELLM_FAILOVER_DATABASE_URL" in example  # the comment says how to choose another database
    required = {value.split("/", 1)[1] for value in string_values(config) if value.startswith("os.environ/")}
    assert required <= {"OPENAI_API_KEY"}  # the hosted standby's key: unset here, and not needed to start


async def test_the_example_serves_streams_and_non_streams_offline(
    example: str, proxy_url: str, nodes: dict[str, FakeVLLMProcess], tmp_path: Path
) -> None:
    master_key = yaml.safe_load(example)["general_settings"]["master_key"]  # what a user's client sends
    client = AsyncOpenAI(base_url=proxy_url, api_key=master_key, max_retries=0, timeout=60)
    liveness: list[float] = []
    stop = asyncio.Event()

    async def watch_liveness() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while not stop.is_set():
                started = time.monotonic()
                await http.get(f"{proxy_url}/health/liveliness")
                liveness.append(time.monotonic() - started)
                await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch_liveness())
    try:
        started = time.monotonic()
        stream = await client.chat.completions.create(model="chat", messages=PROMPT, stream=True)
        streamed = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        stream_s = time.monotonic() - started
        started = time.monotonic()
        response = await client.chat.completions.with_raw_response.create(model="chat", messages=PROMPT)
        plain_s = time.monotonic() - started
    finally:
        stop.set()
        await watcher

    completion = response.parse()
    assert streamed.split() and streamed == completion.choices[0].message.content
    assert response.headers["x-litellm-model-id"] in {"gpu-node-1", "gpu-node-2"}  # a primary answered
    assert stream_s < ANSWER_WITHIN_S and plain_s < ANSWER_WITHIN_S
    assert liveness and max(liveness) < 5.0, f"the proxy stopped answering for {max(liveness):.1f} s"
    served = sum(
        node.state()["requests"]["by_endpoint"].get("/v1/chat/completions", 0) for node in nodes.values()
    )
    assert served == 2
    # The default database is the SQLite file in the proxy's working directory; what it holds says
    # the hosted standby, with no key and no network, is out of rotation while the primaries serve.
    default_database = f"sqlite+aiosqlite:///{tmp_path}/litellm_failover.db"

    async def stored() -> dict[str, str]:
        try:
            return {
                row["deployment_id"]: row["state"] for row in await list_deployment_states(default_database)
            }
        except Exception:
            return {}  # the file and its tables appear with the plugin's first flush

    async def settled() -> bool:
        states = await stored()
        return len(states) == 3 and states["openai-standby"] != "healthy"

    await wait_until(settled, timeout=20, what="three deployments stored, the standby out of rotation")
    states = await stored()
    assert states["gpu-node-1"] == states["gpu-node-2"] == "healthy", states

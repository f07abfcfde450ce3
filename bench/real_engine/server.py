"""The cached llama.cpp server and tiny model: where they are, and a running server to talk to.

Neither is built here: ``bench/real_engine/build.sh`` compiles ``llama-server`` once into
``~/.cache/litellm-failover/llama-cpp`` (or ``$LITELLM_FAILOVER_LLAMA_CPP_DIR``) and writes the
model next to it. Tests skip, and the bench stops with the command to run, when they are missing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "litellm-failover" / "llama-cpp"
    return Path(os.environ.get("LITELLM_FAILOVER_LLAMA_CPP_DIR", default))


def server_binary() -> Path:
    return cache_dir() / "build" / "bin" / "llama-server"


MODELS = ("random", "bigram")
"""The tiny models ``make_model.py --kind`` writes: every weight random, or shaped by the
corpus' token pairs (writes the tokenizer's own tokens, as a trained model does)."""


def model_path(kind: str = "random") -> Path:
    return cache_dir() / "model" / ("tiny.gguf" if kind == "random" else f"tiny-{kind}.gguf")


def missing() -> str | None:
    """Why the real engine cannot run here, or None when it can."""
    wanted = [(server_binary(), "llama-server")] + [(model_path(k), f"the {k} tiny model") for k in MODELS]
    for path, what in wanted:
        if not path.exists():
            return f"{what} is not built ({path} missing): run bench/real_engine/build.sh"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Engine:
    """A running ``llama-server``: JSON over HTTP, one request at a time."""

    def __init__(self, base: str) -> None:
        self.base = base

    def post(self, path: str, body: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def stream_chat(self, body: dict[str, Any], timeout: float = 120.0) -> str:
        """The text of a streamed chat completion, as a client of the OpenAI API reads it."""
        request = urllib.request.Request(
            self.base + "/v1/chat/completions",
            data=json.dumps({**body, "stream": True}).encode(),
            headers={"Content-Type": "application/json"},
        )
        parts: list[str] = []
        with urllib.request.urlopen(request, timeout=timeout) as response:
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                for choice in json.loads(line[5:]).get("choices", []):
                    parts.append((choice.get("delta") or {}).get("content") or "")
        return "".join(parts)

    def tokenize(self, text: str) -> list[int]:
        return list(self.post("/tokenize", {"content": text, "add_special": False})["tokens"])

    def detokenize(self, tokens: list[int]) -> str:
        return str(self.post("/detokenize", {"tokens": tokens})["content"])


@contextmanager
def running_engine(
    model: str = "random", *, threads: int = 1, startup_timeout_s: float = 120.0
) -> Iterator[Engine]:
    """Start ``llama-server`` on 127.0.0.1 with one slot (so one request never shares a batch
    with another) and greedy defaults; stop it on exit."""
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    port = _free_port()
    args = [
        str(server_binary()),
        *("-m", str(model_path(model)), "--host", "127.0.0.1", "--port", str(port)),
        *("-c", "4096", "-np", "1", "-t", str(threads), "--temp", "0", "--seed", "12"),
        *("--jinja", "--metrics", "--no-webui"),
    ]
    # The server logs every request: to a file, never to a pipe nobody drains.
    log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    engine = Engine(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                err = Path(log.name).read_text(errors="replace")
                raise RuntimeError(f"llama-server exited with {proc.returncode}: {err[-2000:]}")
            try:
                with urllib.request.urlopen(engine.base + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama-server not ready within {startup_timeout_s:g}s")
            time.sleep(0.1)  # polling a child process's readiness, bounded by the deadline
        yield engine
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        Path(log.name).unlink(missing_ok=True)

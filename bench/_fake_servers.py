"""Many fake vLLM servers in one process, for benches that must not count the servers' CPU.

``probe_cpu`` needs up to 100 fake vLLM servers, each on its own port (a deployment per server,
each with its own ``/gpu-status``). A process per server would be 100 interpreters on a 2-core
machine; in the bench's own process their CPU would be counted as the plugin's. So they all run
here, in one helper process with one event loop: ``FakeVLLM`` servers on 127.0.0.1, port 0 each.

Protocol: once every server listens, one JSON line ``{"ports": [...]}`` goes to stdout. The
process then serves until its stdin closes (the parent exits or closes it), SIGTERM or SIGINT, or
``--max-s`` passes, whichever is first, so a parent that dies cannot leave it running for long.

Run by ``FakeServers`` (below) with the bench's own interpreter; by hand:
``.venv/bin/python bench/_fake_servers.py --count 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

_START_TIMEOUT_S = 60.0  # 100 servers start in about a second; this is a ceiling
_STOP_TIMEOUT_S = 10.0


async def serve(count: int, max_s: float) -> None:
    from litellm_failover.providers.fake.vllm import FakeVLLM

    servers = [FakeVLLM(f"gpu{i}", host="127.0.0.1", tokens_per_s=0) for i in range(count)]
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    # stdin reaching EOF means the parent is gone or finished with us.
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not sys.stdin.buffer.read1(1) else None)
    try:
        for server in servers:
            await server.start()
        print(json.dumps({"ports": [server.port for server in servers]}), flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=max_s)
    finally:
        loop.remove_reader(sys.stdin.fileno())
        await asyncio.gather(*(server.stop() for server in servers), return_exceptions=True)


class FakeServersError(RuntimeError):
    """The helper process did not come up."""


class FakeServers:
    """The parent's handle: start the helper, read its ports, stop it. A context manager."""

    def __init__(self, count: int, *, max_s: float = 1800.0) -> None:
        self.count = count
        self.max_s = max_s
        self.ports: list[int] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._stderr = tempfile.TemporaryFile()
        command = [sys.executable, str(Path(__file__).resolve()), "--count", str(self.count)]
        command += ["--max-s", str(self.max_s)]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], _START_TIMEOUT_S)
        line = self._process.stdout.readline() if ready else b""
        try:
            ports = json.loads(line)["ports"]
        except (ValueError, KeyError, TypeError):
            self.stop()
            raise FakeServersError(
                f"fake servers did not start within {_START_TIMEOUT_S:g} s: {self._stderr_text()}"
            ) from None
        if len(ports) != self.count:
            self.stop()
            raise FakeServersError(f"asked for {self.count} fake servers, got {len(ports)}")
        self.ports = [int(port) for port in ports]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()  # the helper's signal to stop
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_TIMEOUT_S)
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-2000:]

    def __enter__(self) -> FakeServers:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, required=True, help="how many servers (1-1000)")
    p.add_argument("--max-s", type=float, default=1800.0, help="exit after this long regardless")
    args = p.parse_args()
    if not 1 <= args.count <= 1000:
        p.error("--count must be between 1 and 1000")
    asyncio.run(serve(args.count, args.max_s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

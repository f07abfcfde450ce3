"""Run a real LiteLLM proxy as a child process from a config dict (tests, benches, drills).

The proxy is started exactly as a user would (``litellm --config config.yaml``), bound to
127.0.0.1, with a generated master key (the proxy refuses well-known ones) and LiteLLM's local
cost map (no network). ``start`` waits, bounded, until the proxy answers its liveness route.
``num_workers`` > 1 starts ``litellm --num_workers N`` (uvicorn worker processes sharing the port);
the process group is signalled on stop, so every worker gets the SIGTERM.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

SERVERS: dict[str, list[str]] = {"uvicorn": [], "gunicorn": ["--run_gunicorn"]}


PORT_ATTEMPTS = 3  # a proxy whose picked port was taken before it bound it tries another, in all
ADDRESS_IN_USE = ("address already in use", "connection in use")  # uvicorn's words, gunicorn's


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ProxyProcess:
    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        *,
        port: int | None = None,
        num_workers: int = 1,
        server: str = "uvicorn",
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be 1 or more, not {num_workers}")
        if server not in SERVERS:
            raise ValueError(f"server must be one of {sorted(SERVERS)}, not {server!r}")
        self.server = server  # how LiteLLM runs its workers: uvicorn's, or gunicorn's (--run_gunicorn)
        self.config = config
        self.num_workers = num_workers  # ``litellm --num_workers``: uvicorn worker processes
        self.workdir = Path(workdir)
        self.master_key = "sk-failover-" + secrets.token_hex(12)
        # A picked port can be taken before the proxy binds it (LiteLLM's imports take seconds on a
        # loaded host; any process's bind or outgoing connection can get the number meanwhile):
        # until the proxy has answered, ``start`` moves it to another and tries again.
        self._may_move = port is None
        self._use_port(port or free_port())
        self._process: subprocess.Popen[bytes] | None = None

    def _use_port(self, port: int) -> None:
        self.port = port
        self.config_path = self.workdir / f"proxy-{port}.yaml"
        self.log_path = self.workdir / f"proxy-{port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._spawn()
            assert self._process is not None
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                if self.answers():
                    self._may_move = False
                    return
                time.sleep(0.1)
            else:
                self.stop()
                raise RuntimeError(f"proxy not ready within {timeout}s:\n{self.log_tail()}")
            tail = self.log_tail().lower()
            lost_port = any(words in tail for words in ADDRESS_IN_USE)
            if not (lost_port and self._may_move and attempt < PORT_ATTEMPTS):
                raise RuntimeError(f"proxy exited with {self._process.returncode}:\n{self.log_tail()}")
            self._use_port(free_port())  # the picked port was taken before the proxy bound it
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _spawn(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        env = {
            **os.environ,
            "LITELLM_MASTER_KEY": self.master_key,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": os.environ.get("LITELLM_LOG", "ERROR"),
            "DISABLE_SCHEMA_UPDATE": "True",
            # A proxy that dies of a signal (a crash in a C extension) leaves every thread's Python
            # stack in its log, so the drill's "exited with code -11" can be traced.
            "PYTHONFAULTHANDLER": "1",
        }
        env.pop("DATABASE_URL", None)  # LiteLLM's own DB is not ours to use; the proxy runs without one
        litellm_cli = Path(sys.executable).with_name("litellm")
        command = [str(litellm_cli), "--config", str(self.config_path), "--host", "127.0.0.1"]
        command += ["--port", str(self.port)]
        if self.num_workers > 1:
            command += ["--num_workers", str(self.num_workers)]
        command += SERVERS[self.server]
        with self.log_path.open("wb") as log:  # the child holds its own copy of the descriptor
            self._process = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )

    def answers(self) -> bool:
        """The proxy answers its liveness probe (false again once its shutdown closed the port)."""
        try:
            with urllib.request.urlopen(f"{self.url}/health/liveliness", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    @property
    def pid(self) -> int | None:
        """The proxy's main process (uvicorn's or gunicorn's master with several workers)."""
        return self._process.pid if self._process is not None else None

    def wait_exit(self, timeout: float) -> int | None:
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (the proxy's graceful shutdown, which flushes the plugin's writer), then KILL."""
        if self._process is None or self._process.poll() is not None:
            return
        self.terminate()
        if self.wait_exit(timeout) is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=5)

    def terminate(self) -> None:
        """SIGTERM, the proxy's graceful shutdown, without waiting for it (``wait_exit`` does)."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> ProxyProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

"""A fake vLLM node in a real subprocess, for drills that kill and restart a node.

An in-process server can only be stopped politely. A process can be SIGKILLed, which is what
a crashed GPU node looks like from the plugin's side (refused connections, streams cut by the
kernel), and restarted on the same port, which is what a recovery looks like.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import IO, Any, NoReturn

from litellm_failover.providers.fake.faults import FaultError
from litellm_failover.providers.fake.text import DEFAULT_WORDS
from litellm_failover.providers.fake.vllm import DEFAULT_MODEL, DEFAULT_TOKENS_PER_S

_POLL_S = 0.05
_HTTP_TIMEOUT_S = 2.0
_EXIT_WAIT_S = 5.0
# How long a node may take to serve after its spawn. It is a bound on a wait for a condition (the
# node answering), not a delay: a node that serves sooner returns sooner. It has to cover the
# interpreter's start and imports on a loaded host, where a drill starts several nodes at once:
# four at once on 2 cores at a load average of about 15 took 6.5 to 9 s each.
START_TIMEOUT_S = 30.0
# A node whose picked port was taken before it bound it tries another this many times in all.
_PORT_ATTEMPTS = 3
_ADDRESS_IN_USE = "address already in use"
# Talk to 127.0.0.1 directly even when HTTP(S)_PROXY is set in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FakeVLLMProcessError(RuntimeError):
    """The subprocess did not come up, or a control call was refused."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeVLLMProcess:
    """Runs ``python -m litellm_failover.cli fake-vllm`` on 127.0.0.1 and controls it."""

    def __init__(
        self,
        name: str,
        port: int | None = None,
        *,
        words: int = DEFAULT_WORDS,
        tokens_per_s: float = DEFAULT_TOKENS_PER_S,
        model: str = DEFAULT_MODEL,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.model = model
        self.words = words
        self.tokens_per_s = tokens_per_s
        self.extra_args = tuple(extra_args)
        self._port = port if port is not None else _free_port()
        # A port picked here may be taken before the process binds it (``_free_port`` closes its
        # socket; any process's bind or outgoing connection can get the number meanwhile). Until
        # the node has served once (nobody knows its port yet), start picks another and retries.
        self._may_move = port is None
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last run (None while running or never started); 0 after a clean stop."""
        return self._process.poll() if self._process is not None else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        """The exact command line, so a drill log can show how to reproduce a node by hand."""
        return [
            sys.executable, "-m", "litellm_failover.cli", "fake-vllm",
            "--host", "127.0.0.1", "--port", str(self._port), "--name", self.name,
            "--model", self.model, "--words", str(self.words), "--tokens-per-s", str(self.tokens_per_s),
            *self.extra_args,
        ]  # fmt: skip

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Spawn the process and wait, bounded, until it serves; raise with its stderr if not.

        Readiness is ``GET /control/state`` answering with this node's name rather than
        ``/health``: a node started with ``--fault hang`` or ``http_500`` is up but never healthy,
        and the name check guards against some other server already holding the port.
        """
        if self.alive:
            raise FakeVLLMProcessError(f"fake vLLM {self.name!r} is already running (pid {self.pid})")
        deadline = time.monotonic() + timeout
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self._spawn()
            assert self._process is not None
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                if self._serving():
                    self._may_move = False  # its port is known now: a restart keeps it
                    return
                time.sleep(_POLL_S)
            else:
                self.kill()
                self._fail_start(f"not serving after {timeout}s")
            lost_port = _ADDRESS_IN_USE in self.stderr_text()
            if not (lost_port and self._may_move and attempt < _PORT_ATTEMPTS):
                self._fail_start(f"exited with {self._process.returncode}")
            self._port = _free_port()  # the picked port was taken before the node bound it
        raise AssertionError("unreachable: the last attempt returns or fails")

    def _spawn(self) -> None:
        self._close_stderr()
        self._stderr = tempfile.TemporaryFile()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env
        )

    def _fail_start(self, what: str) -> NoReturn:
        detail = self.stderr_text()
        self._close_stderr()
        raise FakeVLLMProcessError(f"fake vLLM {self.name!r} on port {self._port} {what}: {detail}")

    def _serving(self) -> bool:
        try:
            return self.state(timeout=0.5).get("name") == self.name
        except (OSError, ValueError, FakeVLLMProcessError):
            return False

    def kill(self) -> None:
        """SIGKILL, like a node losing power: no cleanup, in-flight streams cut by the kernel."""
        self._signal_and_wait(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM for a clean shutdown, SIGKILL if it doesn't exit in time."""
        if not self._signal_and_wait(signal.SIGTERM):
            self._signal_and_wait(signal.SIGKILL)
        self._close_stderr()

    def restart(self, timeout: float = START_TIMEOUT_S) -> None:
        """Kill if still running, then start again on the same port."""
        if self.alive:
            self.kill()
        self.start(timeout=timeout)

    def _signal_and_wait(self, sig: signal.Signals) -> bool:
        """Send ``sig`` and wait for exit; True when the process is gone."""
        process = self._process
        if process is None or process.poll() is not None:
            return True
        process.send_signal(sig)
        try:
            process.wait(timeout=_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stderr_text(self) -> str:
        """What the process wrote to stderr so far (for error messages)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> FakeVLLMProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- control -----------------------------------------------------------------------------

    def set_fault(self, mode: str, **params: Any) -> dict[str, Any]:
        """Set a fault over ``POST /control/fault``; returns the node's state afterwards.

        A refused fault raises ``FaultError`` (a ``ValueError``), as ``FakeVLLM.set_fault`` does.
        """
        return self._control("POST", "/control/fault", {"mode": mode, **params})

    def clear_fault(self) -> dict[str, Any]:
        return self._control("DELETE", "/control/fault")

    def state(self, timeout: float = _HTTP_TIMEOUT_S) -> dict[str, Any]:
        return self._control("GET", "/control/state", timeout=timeout)

    def _control(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = _HTTP_TIMEOUT_S
    ) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            if exc.code == 400:
                raise FaultError(_error_message(detail)) from exc
            raise FakeVLLMProcessError(
                f"{method} {path} on {self.name!r} answered {exc.code}: {detail}"
            ) from exc


def _error_message(detail: str) -> str:
    try:
        return str(json.loads(detail)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return detail

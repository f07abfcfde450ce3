"""What the control tests share: an ``OperatorTarget`` that keeps operator state in memory, a real
failover core for it to report, settings, and running the real CLI entry point off the loop.

``RecordingTarget`` is a real implementation of the protocol the control plane drives (the five
operations, refusing bad input with a ``ValueError`` and no state change, like the plugin's
``OperatorError``), so these tests exercise the transports, the acknowledgements and the CLI
end to end; what a drain does to routing is the switching tests' subject.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from litellm_failover.cli import main
from litellm_failover.control.client import signed
from litellm_failover.control.commands import Command
from litellm_failover.control.signing import keys_from_env
from litellm_failover.core import FailoverCore
from litellm_failover.deployments import read_model_list
from litellm_failover.settings import FailoverSettings, parse_settings


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """For a module that runs the real CLI, by importing this fixture: rich wraps tables to the
    terminal, so a wide one keeps cells on one line for the assertions to find; and no Redis URL
    from the environment, so a command goes the way the test sends it."""
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("LITELLM_FAILOVER_REDIS_URL", raising=False)


DEPLOYMENTS = {"p1": ("chat", 1), "p2": ("chat", 1), "s1": ("chat", 2), "e1": ("embed", 1)}


KEYS = keys_from_env()  # the test fleet's key (tests/conftest.py)


def sign_command(command: Command) -> Command:
    """The command as the CLI sends it: tagged with the test fleet's key."""
    return signed(command, KEYS)


class OperatorRefused(ValueError):
    """Stands for ``litellm_failover.switching.OperatorError`` (a ValueError subclass)."""


def model_list(names: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {
            "model_name": DEPLOYMENTS[name][0],
            "litellm_params": {
                "model": "hosted_vllm/fake-model",
                "api_base": "http://127.0.0.1:9/v1",  # never called: these tests send no traffic
                "order": DEPLOYMENTS[name][1],
            },
            "model_info": {"id": name, "failover": {"probe": False}},
        }
        for name in names
    ]


def settings(instance_id: str, **overrides: Any) -> FailoverSettings:
    raw: dict[str, Any] = {
        "instance_id": instance_id,
        "control": {"poll_interval_s": 0.05, "heartbeat_interval_s": 0.5},
    }
    raw.update(overrides)
    return parse_settings(raw)


class RecordingTarget:
    """Drains, failovers and shifts kept in memory, over a real ``FailoverCore`` (for status)."""

    def __init__(self, config: FailoverSettings, names: Sequence[str] = ("p1", "p2", "s1")) -> None:
        specs = read_model_list(model_list(names), config.health)
        self.instance_id = config.instance_id or "replica"
        self.core = FailoverCore(config, specs, instance_id=self.instance_id, probed=lambda spec: False)
        self.calls: list[tuple[Any, ...]] = []
        self.draining: set[str] = set()
        self.failed_over: set[str] = set()
        self.shifts: dict[str, dict[str, Any]] = {}

    def _group_of(self, deployment_id: str) -> str:
        record = self.core.health.get(deployment_id)
        if record is None:
            raise OperatorRefused(
                f"unknown deployment {deployment_id!r} (known: {', '.join(self.core.health)})"
            )
        return record.spec.group

    def _group(self, group: str) -> str:
        if group not in self.core.groups:
            raise OperatorRefused(f"unknown model group {group!r} (known: {', '.join(self.core.groups)})")
        return group

    def drain(self, deployment_id: str, *, timeout_s: float | None = None, source: str = "api") -> dict:
        group = self._group_of(deployment_id)
        self.calls.append(("drain", deployment_id, timeout_s, source))
        self.draining.add(deployment_id)
        return {"deployment_id": deployment_id, "group": group, "state": "draining", "in_flight": 0}

    def undrain(self, deployment_id: str, *, source: str = "api") -> dict:
        group = self._group_of(deployment_id)
        if deployment_id not in self.draining:
            raise OperatorRefused(f"deployment {deployment_id!r} is not draining")
        self.calls.append(("undrain", deployment_id, source))
        self.draining.discard(deployment_id)
        return {"deployment_id": deployment_id, "group": group, "state": "ramping"}

    def failover(self, group: str, *, source: str = "api") -> dict:
        self.calls.append(("failover", self._group(group), source))
        self.failed_over.add(group)
        return {"group": group, "message": f"{group}: failed over to tier 2"}

    def failback(self, group: str, *, source: str = "api") -> dict:
        self.calls.append(("failback", self._group(group), source))
        self.failed_over.discard(group)
        return {"group": group, "message": f"{group}: failing back to tier 1"}

    def shift(
        self, group: str, to: str, steps: Sequence[float], interval_s: float, *, source: str = "api"
    ) -> dict:
        self._group(group)
        if group in self.shifts:
            raise OperatorRefused(f"a shift is already running on {group!r}")
        self.calls.append(("shift", group, to, list(steps), interval_s, source))
        self.shifts[group] = {"to": to, "steps": list(steps), "interval_s": interval_s}
        return {"group": group, "to": to, "step": steps[0]}

    def status(self) -> dict[str, Any]:
        status = self.core.status()
        for info in status["groups"].values():
            for deployment in info["deployments"]:
                deployment["draining"] = deployment["deployment_id"] in self.draining
        return status


async def run_cli(*argv: str) -> int:
    """The real ``litellm-failover`` entry point, in a thread with its own event loop (as a
    separate process would be), while the replicas keep running on this test's loop."""
    return await asyncio.to_thread(main, list(argv))

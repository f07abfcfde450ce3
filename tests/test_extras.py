"""Extras instead of one heavy install (issue 10 §4): the base is the Router plugin and the demo,
each feature's packages are an extra, the GPU agent runs without LiteLLM, and a command whose
packages are missing says which one instead of failing with a traceback.

A package "not installed" is simulated in a child interpreter by an import hook that refuses it,
as Python itself would (``ModuleNotFoundError`` with its name).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

BLOCKER = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Refuse())
if sys.argv[2] == "--import":
    import importlib
    importlib.import_module(sys.argv[3])
    print("IMPORTED", sys.argv[3])
    sys.exit(0)
from litellm_failover.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run_without(packages: list[str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(packages), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def names(requirements: list[str]) -> set[str]:
    return {r.split(">")[0].split("<")[0].split("=")[0].split(";")[0].strip() for r in requirements}


def test_the_base_install_is_the_router_plugin_without_the_proxy_stack():
    base = PYPROJECT["dependencies"]
    assert "litellm>=1.108.7,<1.111" in base  # a range, both ends tested in CI
    assert not any(r.startswith("litellm[") for r in base)  # no proxy stack
    assert names(base).isdisjoint({"apprise", "asyncpg", "matplotlib", "nvidia-ml-py", "openai", "redis"})
    extras = PYPROJECT["optional-dependencies"]
    assert {"proxy", "postgres", "redis", "alerts", "drill", "gpu-agent", "test"} <= set(extras)
    assert "openai" in names(extras["drill"])  # the drill's load generator imports it
    assert names(extras["gpu-agent"]).isdisjoint({"litellm"})
    assert extras["test"] == ["litellm-failover[proxy,testkit]"]


def test_the_gpu_agent_runs_without_litellm_or_the_plugins_other_packages():
    absent = ["litellm", "openai", "rich", "sqlalchemy", "alembic", "aiosqlite", "redis", "apprise", "yaml"]
    result = run_without(absent, "gpu-agent", "--help")
    assert result.returncode == 0, result.stderr
    assert "--interval" in result.stdout
    # What the command runs: the agent's server and NVML sampler.
    result = run_without(absent, "--import", "litellm_failover.providers.gpu_agent")
    assert result.returncode == 0, result.stderr
    assert "IMPORTED litellm_failover.providers.gpu_agent" in result.stdout


def test_a_command_whose_package_is_missing_names_it():
    result = run_without(["rich"], "demo", "--duration", "1s")
    assert result.returncode == 2
    assert "litellm-failover demo: needs the Python package 'rich', which is not installed" in result.stderr
    assert "Traceback" not in result.stderr


ATTACH = """
import litellm
from litellm_failover import FailoverConfigError, attach
router = litellm.Router(model_list=[{"model_name": "chat", "model_info": {"id": "p1"},
    "litellm_params": {"model": "hosted_vllm/m", "api_base": "http://127.0.0.1:9/v1"}}])
plugin = attach(router, {"database_url": sys.argv[4]})
print("ATTACHED", plugin.status()["probing"])
plugin.detach()
try:
    attach(router, {"database_url": sys.argv[4], "redis_url": "redis://127.0.0.1:6379/0"})
except FailoverConfigError as exc:
    print("REFUSED", exc)
"""


def test_the_router_plugin_runs_without_the_redis_client_and_a_redis_url_names_the_extra(tmp_path):
    script = BLOCKER.replace("from litellm_failover.cli import main\nsys.exit(main(sys.argv[2:]))\n", ATTACH)
    result = subprocess.run(
        [sys.executable, "-c", script, "redis", "--attach", "-", f"sqlite+aiosqlite:///{tmp_path}/e.db"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    assert result.returncode == 0, result.stderr
    assert "ATTACHED ['p1']" in result.stdout
    assert "REFUSED" in result.stdout and "redis_url" in result.stdout
    assert "pip install 'litellm-failover[redis]'" in result.stdout

"""The CLI as a Unix tool: --version, help that lists the choices, output that survives a pipe.

- ``--version`` names the package and LiteLLM versions without importing LiteLLM.
- ``fake-vllm`` imports its own command only (a drill starts several nodes at once).
- ``chaos drill --help`` lists every scenario and profile from the constants the drill checks
  against; ``fake-vllm --help`` says the GPU sidecar shares the API's port.
- A missing matplotlib says which extra to install.
- ``events`` never cuts an id, even on a narrow terminal.
- The demo's view, piped: a plain line per phase, then its last frame on lines of its own, with
  the share column saying what it counts; ``demo --json`` prints the summary alone on stdout.
"""

from __future__ import annotations

import builtins
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from test_drill_report import make_result, sigkill_passed

from litellm_failover.cli import main
from litellm_failover.cli.events import _table as events_table
from litellm_failover.demo import SHARE_LABEL, DemoRun, Screen
from litellm_failover.drill.cli import DRILL_EXTRA_HINT, write_reports
from litellm_failover.drill.loadgen import RequestResult
from litellm_failover.drill.profiles import PROFILES
from litellm_failover.drill.scenarios import SCENARIO_NAMES


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_version_names_both_versions_without_importing_litellm() -> None:
    code = (
        "import sys\n"
        "from litellm_failover.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print('litellm' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    first, imported = done.stdout.strip().splitlines()
    assert first == f"litellm-failover {version('litellm-failover')} (LiteLLM {version('litellm')})"
    assert imported == "False"


def test_fake_vllm_imports_only_its_own_command() -> None:
    """A drill starts its fake nodes (``litellm-failover fake-vllm``) several at once, each bound
    to serve within its start timeout: on a loaded host the other commands' imports (the store,
    the control plane: about a second of CPU in all) made nodes miss it. A mistyped command still
    lists every command."""
    code = (
        "import sys\n"
        "from litellm_failover.cli import main\n"
        "try:\n"
        "    main(['fake-vllm', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = ['sqlalchemy', 'alembic', 'litellm', 'litellm_failover.control']\n"
        "heavy += ['litellm_failover.cli.status']\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    run = {"capture_output": True, "text": True, "timeout": 120}
    done = subprocess.run([sys.executable, "-c", code], check=True, **run)
    assert "--tokens-per-s" in done.stdout and done.stdout.strip().splitlines()[-1] == "[]"
    typo = subprocess.run([sys.executable, "-m", "litellm_failover.cli", "fake-vlm"], **run)
    assert typo.returncode == 2 and "invalid choice: 'fake-vlm'" in typo.stderr
    assert all(command in typo.stderr for command in ("'fake-vllm'", "'drain'", "'status'", "'gpu-agent'"))


def test_drill_help_lists_every_scenario_and_profile(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["chaos", "drill"], capsys)
    listing = text.split("scenarios (--scenarios, in the order they run):", 1)[1]
    assert [line.split()[0] for line in listing.strip().splitlines()[: len(SCENARIO_NAMES)]] == list(
        SCENARIO_NAMES
    )
    assert f"One of {', '.join(PROFILES)}" in " ".join(text.split())
    assert DRILL_EXTRA_HINT in text


def test_fake_vllm_help_says_the_gpu_sidecar_is_on_the_same_port(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(_help(["fake-vllm"], capsys).split())
    assert "simulated GPU sidecar (/gpu-status, /gpu-memory), all on --port" in text


def test_a_missing_matplotlib_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "matplotlib":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    for module in ("litellm_failover.drill.report", "litellm_failover.drill.charts"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    json_path, html_path, note = write_reports(make_result([sigkill_passed()]), tmp_path)
    assert json_path.exists() and html_path is None
    assert note == f"report.html not written: its charts need matplotlib ({DRILL_EXTRA_HINT})"


def test_events_never_cut_an_id_even_on_a_narrow_terminal() -> None:
    ids = ("vllm-llama-70b-us-east-1a-primary", "vllm-llama-70b-us-east-1b-standby")
    request = "chatcmpl-3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
    row = {
        "created_at": datetime(2026, 12, 6, 23, 0, tzinfo=UTC),
        "event_type": "request_failover",
        "model_group": "llama-3.1-70b-instruct-prod",
        "from_deployment": ids[0],
        "to_deployment": ids[1],
        "deployment_id": None,
        "reason": "request failed on the primary (connection refused), served by the standby",
        "request_id": request,
    }
    for width in (200, 100):
        out = io.StringIO()
        Console(file=out, width=width).print(events_table([row]))
        text = out.getvalue()
        assert "\u2026" not in text and "..." not in text
        # Folded or whole, every character of every id is there, in order, in its column.
        cells = "".join(line.split("\u2502")[4].strip() for line in text.splitlines() if "\u2502" in line)
        assert cells.replace(" ", "") == f"{ids[0]}->{ids[1]}"
        cells = "".join(line.split("\u2502")[6].strip() for line in text.splitlines() if "\u2502" in line)
        assert cells == request


class _Plugin:
    def status(self) -> dict[str, Any]:
        deployments = [
            {"deployment_id": name, "tier": tier, "state": "healthy", "effective_weight": 1.0, "reason": "ok"}
            for name, tier in (("p1", 1), ("p2", 1), ("s1", 2))
        ]
        return {"groups": {"demo-chat": {"deployments": deployments}}}


def test_the_demo_piped_prints_a_line_per_phase_then_its_last_frame() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200)
    assert not console.is_terminal
    run = DemoRun()
    long_phase = "p1 recovered: traffic shared again across the primary tier after its probes passed"
    with Screen(console, run, _Plugin()) as screen:
        for phase in ("steady: traffic on the primary tier (p1, p2)", long_phase):
            run.phase = phase
            for i in range(3):  # updates within a phase print nothing new
                run.take(RequestResult(i, False, 0.0, 0.1, ok=True, served_by="p2"))
                screen.update()
        run.events.append("  1.0s SIGKILL p1")
    console.print("summary title")
    text = out.getvalue()
    assert "\x1b" not in text  # no terminal codes in a pipe
    lines = text.splitlines()
    assert [line.split("phase: ", 1)[1].split(" (requests")[0] for line in lines[:2]] == [
        "steady: traffic on the primary tier (p1, p2)",
        long_phase,
    ]
    assert SHARE_LABEL == "share of the last 60 requests" and SHARE_LABEL in text
    assert "100.0%" in text and "SIGKILL p1" in text
    assert lines[-2] == "" and lines[-1] == "summary title"  # the next title is not glued to a box


def test_demo_json_prints_the_summary_alone_on_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, Any] = {}

    async def fake_run_demo(duration_s: float, output_dir: Path, console: Console) -> dict[str, Any]:
        console.print("the running view")
        seen["stderr"] = console.stderr
        return {"requests": 10, "client_visible_errors": 0}

    monkeypatch.setattr("litellm_failover.demo.run_demo", fake_run_demo)
    assert main(["demo", "--duration", "1s", "--output-dir", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"requests": 10, "client_visible_errors": 0}
    assert seen["stderr"] is True and "the running view" in captured.err

"""``litellm-failover chaos drill`` end to end: real fake vLLM processes, a real LiteLLM proxy, the
openai SDK as client, run through the real CLI entry point (``litellm_failover.cli.main``).

- The plugin profile on two scenarios (SIGKILL of the primary, streams dropped mid-answer) passes:
  exit 0, zero client errors and broken streams, the standby answering within a second of the
  kill, the failback ramp in the configured steps, and a report.json that matches the schema.
- Plain LiteLLM on the mid-stream drop loses streams and the drill says so with exit 1: the
  drill can fail, it does not just print green.
- Bad input exits 2 with a message naming the option and the value.
- The ramp check itself passes a stepped failback and fails a jump, a cut-short ramp and a
  failback with no steps; the ``health_fail`` fault (panic-mode scenario) fails probes but serves.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import aiohttp
import openai
import pytest

from litellm_failover.cli import main
from litellm_failover.drill.load import Outcome
from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.drill.ramp import MIN_STEP_REQUESTS, check_ramp, plain_ramp_ok
from litellm_failover.drill.report_schema import validate
from litellm_failover.drill.scenarios import SCENARIOS
from litellm_failover.drill.shares import Phases
from litellm_failover.drill.timeline import analyse
from litellm_failover.providers.fake.vllm import FakeVLLM

SCALE = "0.4"


def drill(tmp_path: Path, *args: str, scale: str = SCALE, out_name: str = "report") -> tuple[int, dict]:
    out = tmp_path / out_name
    code = main(["chaos", "drill", "--out", str(out), "--duration-scale", scale, "--no-progress", *args])
    report = json.loads((out / "report.json").read_text())
    return code, report


def ramp_not_measured(report: dict) -> list[str]:
    """The scenarios whose ramp the drill could not measure: too few answers in a step's window."""
    return [
        sc["name"] for sc in report["scenarios"] if (sc.get("ramp") or {}).get("verdict") == "not measured"
    ]


@pytest.mark.proxy
def test_plugin_profile_loses_nothing_on_a_kill_and_on_midstream_drops(tmp_path):
    args = ("--scenarios", "sigkill_primary,midstream_drop", "--concurrency", "6")
    code, report = drill(tmp_path, *args)
    scale, out_name = float(SCALE), "report"
    if ramp_not_measured(report):
        # On a starved host (2 CPU hogs beside the test) a request took over a second, and a
        # 0.8 s ramp step (2 s x 0.4) held 2-4 answers of the 5 a verdict needs: the drill says
        # "not measured", honestly. Everything else this run measured must hold; then once more
        # with 2 s steps, where the host can be measured, and that run is judged in full.
        for sc in report["scenarios"]:
            assert (sc["client_errors"], sc["broken_streams"]) == (0, 0), sc["failures"]
            assert all(f.startswith("the failback ramp was not measured") for f in sc["failures"]), sc
        scale, out_name = 1.0, "report-scale-1"
        code, report = drill(tmp_path, *args, scale="1.0", out_name=out_name)
    validate(report)
    assert report["profile"] == "plugin"
    by_name = {sc["name"]: sc for sc in report["scenarios"]}
    assert list(by_name) == ["sigkill_primary", "midstream_drop"]
    for sc in by_name.values():
        assert sc["failures"] == [] and sc["status"] == "passed", sc["failures"]
        assert sc["requests"] > 50 and sc["streams"] > 20
        assert (sc["client_errors"], sc["broken_streams"]) == (0, 0)
        served = sc["timeline"]["served"]
        assert sum(served["s1"]) > 0 and sum(served["p1"]) > 0  # failed over, then came back
    kill = by_name["sigkill_primary"]
    assert kill["time_to_first_standby_s"] is not None and kill["time_to_first_standby_s"] <= 1.0
    assert kill["ramp_ok"] is True
    steps = [e["percent"] for e in kill["events"] if e["type"] == "failback_step"]
    assert steps == [10.0, 50.0, 100.0]
    assert by_name["midstream_drop"]["resumed_streams"] > 0
    assert report["passed"] is True and code == 0
    assert report["config"]["litellm_settings"]["callbacks"] == ["litellm_failover.proxy_handler"]
    # Without --settings the plugin runs tuned, and the report says so with the phases it used.
    assert report["options"]["settings"] == "tuned"
    hold_down_s = report["config"]["failover_settings"]["failback"]["hold_down_s"]
    assert hold_down_s == round(2 * scale, 3)  # 2 s x 0.4
    assert report["options"]["phases"]["fault_s"] == round(6 * scale, 3)
    assert (tmp_path / out_name / "report.html").exists()


@pytest.mark.proxy
def test_a_proxy_whose_picked_port_is_taken_before_it_binds_moves_to_another(tmp_path):
    """``ProxyProcess`` picks a free port, and LiteLLM binds it seconds later: on a busy host
    another process can take the number meanwhile. The proxy moves to a new port (before it has
    answered, nobody knows the old one) instead of failing its scenario or test."""
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "hosted_vllm/m"}}]}
    proxy = ProxyProcess(config, tmp_path)
    picked = proxy.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", picked))
        taken.listen()
        with proxy:
            assert proxy.port != picked and proxy.answers()
            assert proxy.log_path.name == f"proxy-{proxy.port}.log"
    assert "address already in use" in (tmp_path / f"proxy-{picked}.log").read_text().lower()


@pytest.mark.proxy
def test_plain_litellm_breaks_streams_on_midstream_drops_and_the_drill_fails(tmp_path):
    args = ("--scenarios", "midstream_drop", "--profile", "plain", "--concurrency", "6")
    code, report = drill(tmp_path, *args)
    validate(report)
    (sc,) = report["scenarios"]
    assert sc["broken_streams"] > 0 and sc["status"] == "failed"
    assert any("stream(s) broke" in failure for failure in sc["failures"])
    assert report["passed"] is False and code == 1
    assert "failover_settings" not in report["config"]
    assert report["options"]["settings"] is None  # LiteLLM alone has no plugin settings
    fallbacks = report["config"]["router_settings"]["fallbacks"]
    assert fallbacks == [{"midstream_drop": ["midstream_drop-fallback"]}]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--scenarios", "sigkill_primary,nope"], "--scenarios: unknown scenario(s) 'nope'; known: sigkill"),
        (["--profile", "fancy"], "--profile must be one of plugin, plain, got 'fancy'"),
        (["--duration-scale", "fast"], "--duration-scale must be a number from 0.05 to 20, got 'fast'"),
        (["--duration-scale", "0"], "--duration-scale must be a number from 0.05 to 20, got 0.0"),
        (["--concurrency", "0"], "--concurrency must be an integer from 1 to 256, got 0"),
        (["--concurrency", "2.5"], "--concurrency must be an integer from 1 to 256, got '2.5'"),
    ],
)
def test_bad_input_exits_2_naming_the_option(tmp_path, capsys, args, named):
    out = tmp_path / "report"
    assert main(["chaos", "drill", "--out", str(out), "--no-progress", *args]) == 2
    assert named in capsys.readouterr().err
    assert not out.exists()


async def test_health_fail_fails_the_probes_but_still_serves():
    """The fault the panic-mode scenario needs: /health and the GPU sidecar fail, generation works."""
    async with FakeVLLM("n1") as server:
        server.set_fault("health_fail")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/health") as response:
                assert response.status == 500
            async with http.get(f"{server.url}/gpu-status") as response:
                status = await response.json()
                assert status["healthy"] is False and "health_fail" in status["reason"]
        client = openai.AsyncOpenAI(base_url=server.api_base, api_key="none", max_retries=0)
        question = [{"role": "user", "content": "still there?"}]
        answer = await client.chat.completions.create(model="fake-model", messages=question)
        assert answer.choices[0].message.content == server.answer_for(question)
        await client.close()
        server.clear_fault()
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/health") as response:
            assert response.status == 200


def _answers(node_at: list[tuple[float, str]]) -> list[Outcome]:
    return [
        Outcome(index=i, stream=False, start=t, first_byte=t + 0.1, end=t + 0.1, ok=True, served_by=node,
                error=None, broken=False, first_byte_by={node: t + 0.1})
        for i, (t, node) in enumerate(node_at)
    ]  # fmt: skip


def _traffic(start: float, end: float, share_of_p1: float) -> list[tuple[float, str]]:
    """20 answers a second; every ``1/share``-th one by p1 (deterministic, no sampling noise)."""
    count = round((end - start) * 20)
    every = round(1 / share_of_p1) if share_of_p1 else 0
    return [(start + i / 20, "p1" if every and i % every == 0 else "s1") for i in range(count)]


def test_the_ramp_check_passes_a_ramp_and_fails_a_jump():
    """The same check the drill applies, on answers laid out as a ramp and as a jump."""
    phases = Phases(fault_at=1.0, restored_at=5.0, end_at=12.0)
    events = [
        {"t": t, "type": "failback_step", "percent": p} for t, p in ((6.0, 10.0), (8.0, 50.0), (10.0, 100.0))
    ]
    ramp = (
        _traffic(5.0, 6.0, 0) + _traffic(6.0, 8.0, 0.1) + _traffic(8.0, 10.0, 0.5) + _traffic(10.0, 12.0, 1)
    )
    check = check_ramp(_answers(ramp), "p1", phases, events, (10, 50, 100))
    assert (check.verdict, check.ok, check.problems) == ("ok", True, [])
    jump = _traffic(5.0, 6.0, 0) + _traffic(6.0, 12.0, 1)
    check = check_ramp(_answers(jump), "p1", phases, events, (10, 50, 100))
    assert (check.verdict, check.ok) == ("failed", False)
    assert "got 100% of" in check.problems[0] and "while the ramp was at 10%" in check.problems[0]
    check = check_ramp(_answers(jump), "p1", phases, events[:2], (10, 50, 100))
    assert not check.ok and "reached only 10%, 50% of 10%, 50%, 100%" in check.problems[0]
    aborted = [{"t": 5.5, "type": "failback_step", "percent": 10.0, "step": 1}]
    aborted += [{**event, "step": n} for n, event in enumerate(events, 1)]
    check = check_ramp(_answers(ramp), "p1", phases, aborted, (10, 50, 100))
    assert (check.verdict, check.problems) == ("ok", [])
    assert plain_ramp_ok(_answers(ramp), "p1", phases) is True  # without events (plain profile)
    assert plain_ramp_ok(_answers(jump), "p1", phases) is False
    check = check_ramp(_answers(jump), "p1", phases, [], (10, 50, 100))
    assert not check.ok and "with no failback ramp step recorded" in check.problems[0]


def _short_ramp() -> tuple[Phases, list[dict], list[Outcome]]:
    """The smallest duration scale as the issue saw it: the steps come 0.1 s apart at 2.26-2.46 s,
    while answers arrive every 0.25 s; the half-second buckets from the restore (1.62 s, 2.12 s)
    held a few answers each and never lined up with a step."""
    phases = Phases(fault_at=0.5, restored_at=1.62, end_at=3.2)
    events = [
        {"t": t, "type": "failback_step", "percent": p, "step": n}
        for n, (t, p) in enumerate(((2.26, 10.0), (2.36, 50.0), (2.46, 100.0)), 1)
    ]
    answers = [(1.62 + i * 0.25, "p1" if 1.62 + i * 0.25 >= 2.26 else "s1") for i in range(7)]
    return phases, events, _answers(answers)


def test_a_ramp_whose_step_windows_hold_too_few_answers_is_not_measured_never_ok():
    phases, events, outcomes = _short_ramp()
    check = check_ramp(outcomes, "p1", phases, events, (10, 50, 100))
    assert (check.verdict, check.ok, check.problems) == ("not measured", None, [])
    # The windows are the step events' own: each from its step to the next, with its count.
    steps = [w for w in check.windows if w["step"]]
    assert [(w["start"], w["end"], w["percent"]) for w in steps] == [
        (2.26, 2.36, 10.0), (2.36, 2.46, 50.0), (2.46, 3.2, 100.0)
    ]  # fmt: skip
    assert all(w["n"] < MIN_STEP_REQUESTS and not w["measured"] for w in steps[:2])
    # The same answers four times as dense, still in those windows: a jump it can see fails.
    dense = _answers([(2.26 + 0.2 + i * 0.01, "p1") for i in range(10)])
    wide = [{**e, "t": e["t"] + k} for k, e in zip((0.0, 0.6, 1.2), events, strict=True)]
    check = check_ramp(dense, "p1", Phases(0.5, 1.62, 5.0), wide, (10, 50, 100))
    assert check.verdict == "failed" and "while the ramp was at 10%" in check.problems[0]


def test_an_unmeasured_ramp_fails_only_the_scenario_that_requires_it():
    phases, events, outcomes = _short_ramp()
    required, optional = SCENARIOS["sigkill_primary"], SCENARIOS["hang"]
    assert required.ramp_required and not optional.ramp_required
    entry = analyse(optional, "plugin", outcomes, phases, events, (10, 50, 100))
    assert entry["ramp_ok"] is None and entry["ramp"]["verdict"] == "not measured"
    assert entry["status"] == "passed" and entry["failures"] == []
    entry = analyse(required, "plugin", outcomes, phases, events, (10, 50, 100))
    assert entry["ramp_ok"] is None and entry["ramp"] == {
        "verdict": "not measured", "required": True, "windows": entry["ramp"]["windows"]
    }  # fmt: skip
    assert entry["status"] == "failed"
    (failure,) = [f for f in entry["failures"] if "ramp" in f]
    assert (
        failure.startswith("the failback ramp was not measured")
        and "0 for the 10% step in 2.26-2.36 s" in failure
    )


def test_the_cli_summary_has_a_ramp_column_that_says_not_measured(capsys):
    from litellm_failover.drill.cli import _print_summary

    phases, events, outcomes = _short_ramp()
    entry = analyse(SCENARIOS["hang"], "plugin", outcomes, phases, events, (10, 50, 100))
    _print_summary({"profile": "plugin", "passed": True, "duration_s": 3.2, "scenarios": [entry]})
    header, row = capsys.readouterr().out.splitlines()[1:3]
    assert header.split()[-1] == "ramp" and row.endswith(" not measured")

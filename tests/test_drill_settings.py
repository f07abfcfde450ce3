"""``chaos drill --settings tuned|default`` and the comparison bench's ``--settings``, without a run.

- A bad value exits 2 naming it (the drill's CLI and the bench), before anything starts.
- ``default`` gives the plugin exactly its own defaults (only the database set), whatever the
  duration scale, and leaves the LiteLLM side (model list, timeouts, retries) as ``tuned`` has it.
- The phases follow from the settings in use: ``tuned`` keeps the lengths the drill always had,
  ``default`` and any slower settings make the fault and the recovery longer, by what detection
  and failback need, so the failback ramp can finish and be judged inside the recovery.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from litellm_failover.cli import main
from litellm_failover.drill import timing
from litellm_failover.drill.options import DrillOptions
from litellm_failover.drill.profiles import SETTINGS, build_config, database_url, failover_settings
from litellm_failover.drill.timing import detection_s, failback_s, phase_plan
from litellm_failover.settings.failover import parse_settings

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {
    "sigkill_primary": [
        ("p1", 1, "http://127.0.0.1:9001/v1", "http://127.0.0.1:9001/gpu"),
        ("s1", 2, "http://127.0.0.1:9002/v1", ""),
    ]
}


@pytest.mark.parametrize("value", ["fast", "Default", ""])
def test_a_bad_settings_value_exits_2_naming_it(tmp_path, capsys, value):
    out = tmp_path / "report"
    assert main(["chaos", "drill", "--out", str(out), "--no-progress", "--settings", value]) == 2
    assert f"--settings must be one of tuned, default, got {value!r}" in capsys.readouterr().err
    assert not out.exists()  # refused before anything started


def test_the_bench_refuses_a_bad_settings_value_with_exit_2_naming_it():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "failover_comparison.py"), "--settings", "fast"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "--settings must be one of tuned, default, got 'fast'" in done.stderr


@pytest.mark.parametrize("scale", [1.0, 0.4, 3.0])
def test_default_settings_are_the_plugins_own_defaults_with_only_the_database_set(tmp_path, scale):
    config = build_config("plugin", GROUPS, workdir=tmp_path, scale=scale, settings="default")
    block = config["failover_settings"]
    assert block == {"database_url": database_url(tmp_path)}  # the duration scale touches nothing
    parsed = parse_settings(block).model_dump(exclude={"database_url"})
    assert parsed == parse_settings({}).model_dump(exclude={"database_url"})
    assert parse_settings(block).sessions.enabled is True  # sessions stay at their default too


def test_only_the_failover_settings_differ_between_tuned_and_default(tmp_path):
    tuned = build_config("plugin", GROUPS, workdir=tmp_path, scale=1.0, settings="tuned")
    default = build_config("plugin", GROUPS, workdir=tmp_path, scale=1.0, settings="default")
    assert tuned["failover_settings"] != default["failover_settings"]
    for key in ("model_list", "router_settings", "litellm_settings"):
        assert tuned[key] == default[key], key  # timeouts, retries, tiers: the same LiteLLM
    params = default["model_list"][0]["litellm_params"]
    assert (params["timeout"], params["stream_timeout"]) == (3, 3)
    assert default["router_settings"] == {"num_retries": 2, "retry_after": 0}
    # The plain profile has no failover_settings, so --settings cannot change it.
    plain = [build_config("plain", GROUPS, workdir=tmp_path, scale=1.0, settings=name) for name in SETTINGS]
    assert plain[0] == plain[1] and "failover_settings" not in plain[0]


@pytest.mark.parametrize("scale", [1.0, 0.4, 2.0])
def test_tuned_settings_keep_the_phases_the_drill_always_had(tmp_path, scale):
    plan = phase_plan("plugin", failover_settings("tuned", workdir=tmp_path, scale=scale), scale)
    assert plan.warm_s == pytest.approx(timing.WARM_S * scale)
    assert plan.fault_s == pytest.approx(timing.FAULT_S * scale)
    assert plan.recovery_min_s == pytest.approx(timing.RECOVERY_MIN_S * scale)
    assert plan.recovery_max_s == pytest.approx(timing.RECOVERY_MAX_S * scale)
    assert plan.ramp_steps == (10.0, 50.0, 100.0)
    assert plan.step_interval_s == pytest.approx(2.0 * scale)
    assert phase_plan("plain", None, scale) == phase_plan(
        "plugin", failover_settings("tuned", workdir=tmp_path, scale=scale), scale
    )


def test_default_settings_lengthen_the_fault_and_recovery_by_what_they_need(tmp_path):
    defaults = parse_settings({})
    tuned = parse_settings(failover_settings("tuned", workdir=tmp_path, scale=1.0))
    plan = phase_plan("plugin", failover_settings("default", workdir=tmp_path, scale=1.0), 1.0)
    # 1 s probes failing after 2 s, two rounds 0.25 s apart: 5.25 s against the tuned 2.6 s.
    assert detection_s(defaults) == pytest.approx(1.0 + 2 * 2.0 + 0.25)
    assert plan.fault_s == pytest.approx(timing.FAULT_S + detection_s(defaults) - detection_s(tuned))
    assert plan.fault_s > detection_s(defaults) + 3  # seconds of the standby serving after the ejection
    # The ramp the recovery waits for and judges is the plugin's: 10 -> 50 -> 100 % every 30 s.
    assert plan.ramp_steps == tuple(defaults.failback.ramp_steps)
    assert plan.step_interval_s == defaults.failback.step_interval_s == 30.0
    # Long enough for the hold-down and every step, with what the tuned plan had to spare on top.
    needed = defaults.failback.hold_down_s + plan.ramp_span_s
    assert needed == pytest.approx(90.0)
    assert plan.recovery_max_s == pytest.approx(
        timing.RECOVERY_MAX_S + failback_s(defaults) - failback_s(tuned)
    )
    assert plan.recovery_max_s > needed + 2 * defaults.outlier.base_ejection_s
    # The duration scale shortens the drill's own phases, never what the settings need.
    small = phase_plan("plugin", failover_settings("default", workdir=tmp_path, scale=0.4), 0.4)
    assert small.recovery_max_s > needed and small.step_interval_s == 30.0


def test_the_plan_follows_whatever_settings_are_in_use(tmp_path):
    """Not a table for two names: a longer hold-down or slower probes give a longer phase."""
    block = {"failback": {"hold_down_s": 100.0}, "health": {"max_probe_latency_s": 4.0}}
    plan = phase_plan("plugin", block, 1.0)
    default = phase_plan("plugin", failover_settings("default", workdir=tmp_path, scale=1.0), 1.0)
    assert plan.recovery_max_s == pytest.approx(default.recovery_max_s + 70.0)
    assert plan.fault_s == pytest.approx(default.fault_s + 2 * 2.0)


def test_options_default_to_tuned():
    assert DrillOptions().settings == "tuned"
    assert DrillOptions(settings="default").selected()

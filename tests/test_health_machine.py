"""The per-deployment state machine: hysteresis, outlier ejection, backoff, half-open recovery."""

from __future__ import annotations

from factories import bad_report, good_report, model_list, saturated_report, specs_for

from litellm_failover.health import DeploymentHealth, HealthState
from litellm_failover.outlier import Outcome
from litellm_failover.settings import parse_settings


def make(settings: dict | None = None, probed: bool = True) -> DeploymentHealth:
    parsed = parse_settings(settings or {})
    spec = specs_for(model_list(("g", "a", 1, 1.0)), parsed)[0]
    return DeploymentHealth(spec, parsed, probed=probed)


def test_needs_n_failed_rounds_to_go_down_and_m_good_rounds_to_come_up():
    h = make({"health": {"unhealthy_threshold": 3, "healthy_threshold": 2}})
    assert h.apply_probe(bad_report(), 0) is None
    assert h.apply_probe(bad_report(), 1) is None
    assert h.state is HealthState.HEALTHY
    down = h.apply_probe(bad_report("HTTP 503"), 2)
    assert down is not None and down.to_state is HealthState.UNHEALTHY
    assert "3 failed probe rounds" in down.reason and "HTTP 503" in down.reason

    up1 = h.apply_probe(good_report(), 3)
    assert up1 is not None and up1.to_state is HealthState.RECOVERING
    assert not h.state.routable
    up2 = h.apply_probe(good_report(), 4)
    assert up2 is not None and up2.to_state is HealthState.HEALTHY


def test_a_good_round_resets_the_failure_count():
    h = make({"health": {"unhealthy_threshold": 2}})
    h.apply_probe(bad_report(), 0)
    h.apply_probe(good_report(), 1)
    assert h.apply_probe(bad_report(), 2) is None
    assert h.state is HealthState.HEALTHY


def test_failure_while_recovering_goes_back_down():
    h = make({"health": {"unhealthy_threshold": 1, "healthy_threshold": 3}})
    h.apply_probe(bad_report(), 0)
    h.apply_probe(good_report(), 1)
    assert h.state is HealthState.RECOVERING
    back = h.apply_probe(bad_report(), 2)
    assert back is not None and back.to_state is HealthState.UNHEALTHY


def test_saturation_degrades_and_lowers_weight_without_ejecting():
    h = make()
    before = h.effective_weight(0)
    t = h.apply_probe(saturated_report(0.99), 0)
    assert t is not None and t.to_state is HealthState.DEGRADED
    assert h.state.routable
    assert h.effective_weight(0) < before * 0.2
    t = h.apply_probe(good_report(), 1)
    assert t is not None and t.to_state is HealthState.HEALTHY


def test_connect_error_ejects_at_once():
    h = make()
    t = h.record_failure(Outcome.CONNECT_ERROR, 0)
    assert t is not None and t.to_state is HealthState.UNHEALTHY and t.source == "traffic"
    assert "connection refused" in t.reason


def test_server_errors_count_toward_threshold_and_client_errors_do_not():
    h = make({"outlier": {"consecutive_errors": 3}})
    assert h.record_failure(Outcome.SERVER_ERROR, 0) is None
    assert h.record_failure(Outcome.CLIENT_ERROR, 0) is None
    assert h.record_failure(Outcome.TIMEOUT, 0) is None
    t = h.record_failure(Outcome.STREAM_CUT, 0)
    assert t is not None and t.to_state is HealthState.UNHEALTHY
    assert "3 consecutive stream_cut" in t.reason


def test_success_resets_consecutive_errors():
    h = make({"outlier": {"consecutive_errors": 2}})
    h.record_failure(Outcome.SERVER_ERROR, 0)
    h.record_success(0.1, 0)
    assert h.record_failure(Outcome.SERVER_ERROR, 0) is None


def test_ejection_time_doubles_and_probes_only_count_after_it():
    h = make({"outlier": {"base_ejection_s": 10, "max_ejection_s": 25}, "health": {"healthy_threshold": 1}})
    h.record_failure(Outcome.CONNECT_ERROR, 0)
    assert h.outlier.ejected_until == 10
    assert h.apply_probe(good_report(), 5) is None  # half-open rounds wait for the ejection time
    assert h.state is HealthState.UNHEALTHY
    assert h.apply_probe(good_report(), 11).to_state is HealthState.HEALTHY
    h.record_failure(Outcome.CONNECT_ERROR, 12)
    assert h.outlier.ejected_until == 12 + 20
    h.apply_probe(good_report(), 33)
    h.record_failure(Outcome.CONNECT_ERROR, 34)
    assert h.outlier.ejected_until == 34 + 25  # capped


def test_ejection_count_decays_after_a_quiet_spell():
    h = make({"outlier": {"base_ejection_s": 1, "ejection_decay_s": 100}})
    h.record_failure(Outcome.CONNECT_ERROR, 0)
    h.state = HealthState.HEALTHY
    h.record_failure(Outcome.CONNECT_ERROR, 500)
    assert h.outlier.ejection_count == 1


def test_unprobed_deployment_comes_back_on_the_timer():
    h = make({"outlier": {"base_ejection_s": 5}}, probed=False)
    h.record_failure(Outcome.CONNECT_ERROR, 0)
    assert h.tick(4) is None
    t = h.tick(5)
    assert t is not None and t.to_state is HealthState.HEALTHY and t.source == "timer"


def test_probed_deployment_never_comes_back_on_the_timer_alone():
    h = make({"outlier": {"base_ejection_s": 5}})
    h.record_failure(Outcome.CONNECT_ERROR, 0)
    assert h.tick(100) is None
    assert h.state is HealthState.UNHEALTHY


def test_dynamic_weight_follows_the_issue_formula():
    h = make()
    now = 0.0
    for _ in range(10):
        h.record_success(2.5, now)  # latency_score = 1 - 2.5/5 = 0.5
    h.traffic.latency_ewma_s = 2.5
    for _ in range(90):
        h.record_success(2.5, now)
    for _ in range(5):
        h.record_failure(Outcome.OVERLOADED, now)  # 5 errors of 105: error_score = 1 - 0.0476*10
    error_rate = 5 / 105
    expected = (0.5 + max(0.0, 1 - error_rate * 10)) / 2
    assert abs(h.effective_weight(now) - expected) < 1e-6

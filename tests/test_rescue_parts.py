"""Rescue (issue 12 §1), the parts without a Router: which ejections rescue, and the counter."""

from __future__ import annotations

import pytest

from litellm_failover.events import FailoverEvent
from litellm_failover.metrics.catalog import REQUESTS_RESCUED
from litellm_failover.metrics.counters import EventCounters
from litellm_failover.rescue import stopped_answering


def state_change(
    source: str, from_state: str = "healthy", to_state: str = "unhealthy", **details
) -> FailoverEvent:
    return FailoverEvent(
        "state_change",
        "chat",
        deployment_id="p1",
        details={"from_state": from_state, "to_state": to_state, "source": source, **details},
    )


@pytest.mark.parametrize(
    ("event", "rescues"),
    [
        (state_change("probe"), True),  # failed probe rounds: it does not answer
        (state_change("fleet"), True),  # another replica ejected it
        (state_change("traffic", outcome="connect_error"), True),
        (state_change("traffic", outcome="timeout"), True),
        (state_change("traffic", outcome="stream_cut"), True),
        (state_change("probe", from_state="degraded"), True),
        (state_change("traffic", outcome="server_error"), False),  # it answers, with 5xx, fast
        (state_change("ramp"), False),  # a failback ramp aborted: nothing hangs on it
        (state_change("probe", from_state="recovering"), False),  # not routed: nothing waits on it
        (state_change("probe", to_state="degraded"), False),
        (FailoverEvent("failover", "chat", deployment_id="p1", details={"source": "probe"}), False),
    ],
)
def test_only_an_ejection_for_not_answering_rescues(event, rescues):
    assert stopped_answering(event) is rescues


def test_request_rescued_events_are_counted_by_cause_with_a_bounded_label():
    counters = EventCounters()
    for cause in ("ejected", "ejected", "first_token_timeout", "made-up\nvalue"):
        counters(FailoverEvent("request_rescued", "chat", deployment_id="p1", details={"cause": cause}))
    counts = counters.snapshot()[REQUESTS_RESCUED]
    assert counts == {
        ("chat", "p1", "p1", "ejected"): 2,
        ("chat", "p1", "p1", "first_token_timeout"): 1,
        ("chat", "p1", "p1", "other"): 1,
    }

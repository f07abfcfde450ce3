"""Every metric the plugin exports, as data: the one list the exporter, the docs, the alert rules
and the Grafana dashboard are all checked against, so none of them can drift from the others.

``CATALOG`` is a tuple of ``MetricSpec``: ``name`` is the full name as exposed (a counter's with
its ``_total``, an info metric's with its ``_info``; a histogram's is the base of its ``_bucket``,
``_sum`` and ``_count`` series), ``kind``, ``help`` and ``labels``. The collector builds every
family from an entry here and from nothing else (``families.Family``); the docs' metrics reference
page is generated from ``CATALOG``; ``tests/test_metrics_assets.py`` checks that the shipped rules
(``examples/prometheus``) and dashboard (``examples/grafana``) use only names and labels listed here.

Names follow Prometheus' conventions (prometheus.io/docs/practices/naming): one ``litellm_failover_``
prefix, base units (seconds), ``_total`` only on counters, no gauge ending in ``_count``. A
deployment's series carry ``model_id`` beside ``deployment`` (the same value: LiteLLM's
``model_info.id``), because LiteLLM's own metrics label a deployment ``model_id``, so
``... * on(model_id) group_left litellm_deployment_state`` joins the two.

This module itself imports only the standard library: it is data, for the exporter and the docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

PREFIX = "litellm_failover_"

GROUP = ("model_group",)
DEPLOYMENT = ("model_group", "deployment", "model_id")

# Probe latencies: a healthy local vLLM answers in milliseconds, a busy one in tens to hundreds,
# and a probe times out after a few seconds (health.probe_timeout_s).
PROBE_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    INFO = "info"


class Merge(StrEnum):
    """How two plugins' samples with the same name and labels combine on the default registry.

    ``FIRST``: they describe the same thing twice (two Routers serving one model group); the
    first plugin's value is kept and the clash is logged. ``SUM``: per-plugin amounts (queued or
    dropped rows) add up to the process's. ``MIN``: a "connected" flag is 1 only if every plugin's
    is (and the build info, 1 in every plugin, is shown once without a clash).
    """

    FIRST = "first"
    SUM = "sum"
    MIN = "min"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    merge: Merge = Merge.FIRST
    buckets: tuple[float, ...] = ()  # histograms only: the upper bounds, +Inf implied


def _spec(
    name: str,
    kind: Kind,
    help: str,
    labels: tuple[str, ...] = (),
    *,
    merge: Merge = Merge.FIRST,
    buckets: tuple[float, ...] = (),
) -> MetricSpec:
    suffix = {Kind.COUNTER: "_total", Kind.INFO: "_info"}.get(kind, "")
    return MetricSpec(PREFIX + name + suffix, kind, help, labels, merge, buckets)


# -- deployments (read from the health records and routing tables at scrape time) -----------

DEPLOYMENT_STATE = _spec(
    "deployment_state",
    Kind.GAUGE,
    "1 for the deployment's current health state, 0 for the others.",
    (*DEPLOYMENT, "state"),
)
DEPLOYMENT_EFFECTIVE_WEIGHT = _spec(
    "deployment_effective_weight",
    Kind.GAUGE,
    "Effective weight in the current routing table (0: not routed).",
    DEPLOYMENT,
)
DEPLOYMENT_SERVING = _spec(
    "deployment_serving", Kind.GAUGE, "1 if the deployment is in its group's active tier.", DEPLOYMENT
)
DEPLOYMENT_TIER = _spec(
    "deployment_tier", Kind.GAUGE, "The deployment's tier (litellm_params.order).", DEPLOYMENT
)
DEPLOYMENT_RAMP_FACTOR = _spec(
    "deployment_ramp_factor", Kind.GAUGE, "Slow-start traffic factor (1.0: full share).", DEPLOYMENT
)
DEPLOYMENT_IN_FLIGHT_REQUESTS = _spec(
    "deployment_in_flight_requests", Kind.GAUGE, "Requests and streams in flight.", DEPLOYMENT
)
DEPLOYMENT_DRAINING = _spec(
    "deployment_draining", Kind.GAUGE, "1 while the deployment is draining.", DEPLOYMENT
)
DEPLOYMENT_EJECTIONS = _spec(
    "deployment_ejections",
    Kind.GAUGE,
    "Recent ejections counted for flap damping (each lengthens the next ejection; the count "
    "decays after a healthy period, so it is a gauge).",
    DEPLOYMENT,
)
PROBE_CHECK_OK = _spec(
    "probe_check_ok",
    Kind.GAUGE,
    "1 if the check passed in the last probe round.",
    (*DEPLOYMENT, "check"),
)
PROBE_LATENCY_SECONDS = _spec(
    "probe_latency_seconds",
    Kind.HISTOGRAM,
    "Latency of the deployment's active probes, one observation per probe report.",
    DEPLOYMENT,
    buckets=PROBE_LATENCY_BUCKETS,
)

# -- groups ------------------------------------------------------------------------------------

GROUP_PANIC = _spec(
    "group_panic", Kind.GAUGE, "1 while the group routes to every member (panic mode).", GROUP
)
GROUP_ACTIVE_TIER = _spec("group_active_tier", Kind.GAUGE, "The tier the group serves from right now.", GROUP)

# -- counted from the core's events ----------------------------------------------------------

FAILOVERS = _spec(
    "failovers",
    Kind.COUNTER,
    "Failovers: changes of a group's serving deployments (reason: what caused them) and "
    "requests served by other than their first pick (reason=request).",
    (*GROUP, "reason"),
)
STATE_CHANGES = _spec(
    "state_changes",
    Kind.COUNTER,
    "Health state transitions, by the state entered.",
    (*DEPLOYMENT, "state"),
)
STREAMS_RESUMED = _spec(
    "streams_resumed",
    Kind.COUNTER,
    "Streams that broke and were continued on another deployment (stream_resumed events).",
    GROUP,
)
REQUESTS_RESCUED = _spec(
    "requests_rescued",
    Kind.COUNTER,
    "Attempts failed on purpose and retried elsewhere at once, by cause: `ejected` (the deployment "
    "stopped answering) or `first_token_timeout` (request_rescued events).",
    (*DEPLOYMENT, "cause"),
)
STREAMS_BROKEN = _spec(
    "streams_broken",
    Kind.COUNTER,
    "Streams that broke and could not be continued: the client saw an error (stream_broken events).",
    GROUP,
)
DRAINS_STARTED = _spec("drains_started", Kind.COUNTER, "Drains started (drain_started events).", DEPLOYMENT)
DRAINS_COMPLETED = _spec(
    "drains_completed",
    Kind.COUNTER,
    "Drains completed: in-flight work finished, was cut at the timeout, or the deployment was "
    "undrained first (drain_completed events).",
    DEPLOYMENT,
)

# -- the store writer ----------------------------------------------------------------------------

WRITER_QUEUE_DEPTH = _spec(
    "writer_queue_depth", Kind.GAUGE, "Rows waiting for the database (all kinds).", merge=Merge.SUM
)
WRITER_WRITTEN_ROWS = _spec(
    "writer_written_rows", Kind.COUNTER, "Rows written, by kind.", ("kind",), merge=Merge.SUM
)
WRITER_DROPPED_ROWS = _spec(
    "writer_dropped_rows",
    Kind.COUNTER,
    "Rows dropped because the buffer was full or the writer stopped, by kind.",
    ("kind",),
    merge=Merge.SUM,
)
WRITER_REJECTED_ROWS = _spec(
    "writer_rejected_rows",
    Kind.COUNTER,
    "Rows the database refused (dropped after a retry).",
    merge=Merge.SUM,
)
WRITER_CONNECTED = _spec(
    "writer_connected", Kind.GAUGE, "1 while the store writer reaches its database.", merge=Merge.MIN
)

# -- alerts ------------------------------------------------------------------------------------

ALERTS_SENT = _spec(
    "alerts_sent",
    Kind.COUNTER,
    "Alert deliveries that a destination took (one alert to one destination).",
    merge=Merge.SUM,
)
ALERTS_FAILED = _spec(
    "alerts_failed",
    Kind.COUNTER,
    "Alert deliveries given up after their retries (each is also an alert_failed event).",
    merge=Merge.SUM,
)

# -- fleet, prober, build ----------------------------------------------------------------------

FLEET_CONNECTED = _spec("fleet_connected", Kind.GAUGE, "1 while this replica reaches Redis.", merge=Merge.MIN)
FLEET_MESSAGES = _spec(
    "fleet_messages",
    Kind.COUNTER,
    "Fleet messages published by this replica, applied from others, or ignored.",
    ("direction",),
    merge=Merge.SUM,
)
MESSAGES_REJECTED = _spec(
    "messages_rejected",
    Kind.COUNTER,
    "Operator commands and fleet messages rejected as not validly signed, never acted on; `transport` "
    "is redis, database or standing, `reason` one of unsigned, malformed_tag, unknown_key, "
    "bad_signature, too_old, future.",
    ("transport", "reason"),
    merge=Merge.SUM,
)
PROBE_ROUNDS = _spec("probe_rounds", Kind.COUNTER, "Active probe rounds completed.", merge=Merge.SUM)
BUILD_INFO = _spec(
    "build",
    Kind.INFO,
    "Always 1; the labels say which litellm-failover and which LiteLLM this process runs.",
    ("version", "litellm_version"),
    merge=Merge.MIN,
)

CATALOG: tuple[MetricSpec, ...] = (
    DEPLOYMENT_STATE,
    DEPLOYMENT_EFFECTIVE_WEIGHT,
    DEPLOYMENT_SERVING,
    DEPLOYMENT_TIER,
    DEPLOYMENT_RAMP_FACTOR,
    DEPLOYMENT_IN_FLIGHT_REQUESTS,
    DEPLOYMENT_DRAINING,
    DEPLOYMENT_EJECTIONS,
    PROBE_CHECK_OK,
    PROBE_LATENCY_SECONDS,
    GROUP_PANIC,
    GROUP_ACTIVE_TIER,
    FAILOVERS,
    STATE_CHANGES,
    STREAMS_RESUMED,
    STREAMS_BROKEN,
    REQUESTS_RESCUED,
    DRAINS_STARTED,
    DRAINS_COMPLETED,
    WRITER_QUEUE_DEPTH,
    WRITER_WRITTEN_ROWS,
    WRITER_DROPPED_ROWS,
    WRITER_REJECTED_ROWS,
    WRITER_CONNECTED,
    ALERTS_SENT,
    ALERTS_FAILED,
    FLEET_CONNECTED,
    FLEET_MESSAGES,
    MESSAGES_REJECTED,
    PROBE_ROUNDS,
    BUILD_INFO,
)

BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in CATALOG}

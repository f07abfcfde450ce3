"""Bounded reads, JSON decoding, metrics parsing and secret-free reasons."""

from __future__ import annotations

import pytest
from provider_servers import huge, json_answer, serve, text

from litellm_failover.providers import http
from litellm_failover.providers.base import ProbeReport, ProbeTarget
from litellm_failover.providers.errors import MalformedAnswer
from litellm_failover.providers.probe_client import ProbeClient, ProbeHttpError
from litellm_failover.providers.prometheus import Series, parse_metrics, read_series, select_families
from litellm_failover.providers.runner import run_probe
from litellm_failover.providers.thresholds import ProbeThresholds


async def test_get_reads_whole_small_bodies_and_rejects_big_ones():
    routes = {
        "/ok": json_answer({"a": 1}),
        "/big": huge(5000, declare_length=True),
        "/big-chunked": huge(5000, declare_length=False),
    }
    async with serve(routes) as srv, ProbeClient() as session:
        answer = await http.get(session, f"{srv.url}/ok", max_body_bytes=100)
        assert answer.status == 200 and http.decode_json(answer, "x") == {"a": 1}
        for path in ("/big", "/big-chunked"):
            with pytest.raises(MalformedAnswer, match=f"^{srv.url}{path}: body over 1000 bytes$"):
                await http.get(session, f"{srv.url}{path}", max_body_bytes=1000)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "status is not JSON: empty body"),
        (
            b"{oops",
            "status is not JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        (b"\xff\xfe", "status is not JSON: not UTF-8 text"),
    ],
)
def test_decode_json_reasons(body, reason):
    with pytest.raises(MalformedAnswer) as err:
        http.decode_json(http.HttpAnswer("http://h", 200, body, 0.0), "status")
    assert str(err.value) == reason


def test_safe_url_strips_credentials_and_query():
    assert http.safe_url("https://user:pw@host:8443/v1/models?key=sk-1#frag") == "https://host:8443/v1/models"
    assert http.scrub("failed: http://u:p@h/x?token=abc then") == "failed: http://h/x then"


def test_format_seconds():
    assert [http.format_seconds(v) for v in (2.0, 0.25, 0.3, 15.0)] == ["2.0 s", "0.25 s", "0.3 s", "15.0 s"]


def test_prometheus_parser_handles_colons_and_counter_suffixes():
    samples = parse_metrics(
        b"# TYPE vllm:prompt_tokens_total counter\n"
        b'vllm:prompt_tokens_total{model_name="m"} 5\n'
        b"# TYPE vllm:num_requests_running gauge\n"
        b'vllm:num_requests_running{model_name="m",engine="0"} 2\n'
        b'vllm:num_requests_running{model_name="m",engine="1"} 3\n'
    )
    # the parser renames the counter *family*; the sample keeps the name the server wrote
    assert "vllm:prompt_tokens_total" in samples
    assert read_series(samples, Series(("vllm:num_requests_running",), "sum")) == 5
    assert read_series(samples, Series(("vllm:num_requests_running",), "max")) == 3
    assert read_series(samples, Series(("vllm:absent",), "sum", required=False)) is None


# Around the wanted families: what an exporter writes for other types (a counter typed without
# ``_total``, which the parser renames to ``..._total``; a histogram; ``_created`` series), a wanted
# name inside a label value and inside another family's help text, and names that only start like
# a wanted one.
PAGE = """\
# HELP tgi_request_count Requests; vllm:num_requests_running is not read here.
# TYPE tgi_request_count counter
tgi_request_count 100
tgi_request_count_created 1.7e+09
# HELP vllm:time_to_first_token_seconds TTFT.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="vllm:num_requests_running"} 1
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="vllm:num_requests_running"} 2
vllm:time_to_first_token_seconds_count{model_name="vllm:num_requests_running"} 2
vllm:time_to_first_token_seconds_sum{model_name="vllm:num_requests_running"} 0.3
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0"} 2
  vllm:num_requests_running{engine="1"} 3
vllm:num_requests_running_by_lora{lora="a"} 9
#\tTYPE\tvllm:num_requests_waiting\tgauge
vllm:num_requests_waiting\t4
vllm:num_requests_waitingroom 7
"""


def test_selection_keeps_a_families_lines_and_nothing_that_only_mentions_it():
    selected = select_families(PAGE, ("vllm:num_requests_running", "vllm:num_requests_waiting"))
    assert selected.splitlines() == [
        "# TYPE vllm:num_requests_running gauge",
        'vllm:num_requests_running{engine="0"} 2',
        '  vllm:num_requests_running{engine="1"} 3',
        "#\tTYPE\tvllm:num_requests_waiting\tgauge",
        "vllm:num_requests_waiting\t4",
    ]
    # a counter's and a histogram's lines go by their suffixed names
    # (help lines are left out: they hold no value)
    assert select_families(PAGE, ("tgi_request_count_total",)).splitlines() == PAGE.splitlines()[1:4]
    histogram = select_families(PAGE, ("vllm:time_to_first_token_seconds_count",)).splitlines()
    assert histogram == PAGE.splitlines()[5:10]
    assert select_families(PAGE, ("vllm:absent",)) == ""
    assert select_families(PAGE, ()) == select_families(PAGE, ("",)) == ""


@pytest.mark.parametrize(
    "names",
    [
        ("vllm:num_requests_running",),
        ("vllm:num_requests_waiting", "vllm:num_requests_running_by_lora"),
        ("tgi_request_count_total", "tgi_request_count_created"),
        ("vllm:time_to_first_token_seconds_bucket", "vllm:time_to_first_token_seconds_sum"),
    ],
)
def test_selected_parse_reads_what_the_whole_parse_reads(names):
    whole, selected = parse_metrics(PAGE.encode()), parse_metrics(PAGE.encode(), names)
    for name in names:
        assert selected.series(name) == whole.series(name) != []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "metrics text empty"),
        (b" \n\t\n", "metrics text empty"),
        (b"\xff\xfe vllm:num_requests_running 1\n", "metrics text unparseable: not UTF-8"),
        # nothing of the wanted families: parsed whole, so a page that is not Prometheus text
        # at all says so rather than "missing"
        (b"<html><body>Bad gateway</body></html>", "metrics text unparseable: "),
        (b"vllm:num_requests_running{engine=0} 1\n", "metrics text unparseable: Invalid labels"),
    ],
    ids=["empty", "blank", "not-utf-8", "html", "garbage-in-family"],
)
def test_selected_parse_reasons(body, reason):
    with pytest.raises(MalformedAnswer) as err:
        parse_metrics(body, ("vllm:num_requests_running",))
    assert str(err.value).startswith(reason), str(err.value)


def test_a_valid_page_without_the_families_reads_and_reports_them_missing():
    samples = parse_metrics(b"other_metric 1\n", ("vllm:num_requests_running",))
    with pytest.raises(MalformedAnswer, match=r"^vllm:num_requests_running missing$"):
        read_series(samples, Series(("vllm:num_requests_running",), "sum"))


def test_without_names_the_whole_page_is_judged():
    """What the DCGM reader gets (it names no families): garbage anywhere rejects the page."""
    page = PAGE + "unrelated_metric three\n"
    assert parse_metrics(page.encode(), ("vllm:num_requests_running",)).series("vllm:num_requests_running")
    with pytest.raises(MalformedAnswer, match="could not convert string to float"):
        parse_metrics(page.encode())


class _Raises:
    """A prober with a bug: the runner must still return a report."""

    kind = "broken"

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.target = ProbeTarget(
            deployment_id="x", api_base=None, api_key="sk-key-in-error", thresholds=ProbeThresholds()
        )

    async def probe(self, session: ProbeClient) -> ProbeReport:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (RuntimeError("boom"), "unexpected RuntimeError: boom"),
        (KeyError("gpus"), "unexpected KeyError: 'gpus'"),
        (
            RuntimeError("GET http://u:pw@h/x?api_key=1 with sk-key-in-error"),
            "unexpected RuntimeError: GET http://h/x with [redacted]",
        ),
        (TimeoutError(), "timed out"),  # a prober's own timeout, not the runner's deadline
    ],
)
async def test_runner_turns_any_exception_into_a_failed_health_check(exc, reason):
    async with ProbeClient() as session:
        report = await run_probe(_Raises(exc), session)
    assert [(c.name, c.ok, c.reason) for c in report.checks] == [("http_health", False, reason)]


async def test_server_that_drops_the_connection():
    async def drop(request):
        request.transport.close()
        return await text("")(request)

    async with serve({"/x": drop}) as srv, ProbeClient() as session:
        with pytest.raises(ProbeHttpError) as err:
            await http.get(session, f"{srv.url}/x", max_body_bytes=100)
    assert http.describe_error(err.value) == "server closed the connection without answering"

"""The one duration grammar shared by every CLI flag and control command."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from litellm_failover.durations import DurationError, duration_arg, parse_duration, parse_since


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("500ms", 0.5),
        (".5", 0.5),
        ("1.5m", 90.0),
        (" 2H ", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        (30, 30.0),
        (0.25, 0.25),
    ],
)
def test_every_spelling_of_a_duration(text: object, seconds: float) -> None:
    assert parse_duration(text, "--for") == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "--for: not a duration (got 'soon'"),
        ("5 minutes", "--for: not a duration (got '5 minutes'"),
        ("0", "--for: must be more than 0 seconds (got '0')"),
        ("-5m", "--for: must be more than 0 seconds (got '-5m')"),
        (True, "--for: must be a number of seconds (got True)"),
        (float("inf"), "--for: must be more than 0 seconds"),
    ],
)
def test_a_bad_duration_names_the_flag_and_the_value(value: object, message: str) -> None:
    with pytest.raises(DurationError) as err:
        parse_duration(value, "--for")
    assert str(err.value).startswith(message)


def test_zero_only_where_allowed() -> None:
    assert parse_duration("0", "--wait", allow_zero=True) == 0.0
    with pytest.raises(DurationError, match=r"^--wait: must be 0 or more seconds \(got '-1'\)$"):
        parse_duration("-1", "--wait", allow_zero=True)


def test_the_argparse_type_leaves_naming_the_flag_to_argparse() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=duration_arg())
    assert parser.parse_args(["--interval", "5m"]).interval == 300.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be more than 0 seconds \(got '0'\)$"):
        duration_arg()("0")


def test_since_takes_the_same_durations_or_an_iso_time() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    assert parse_since("90", now) == now - timedelta(seconds=90)
    assert parse_since("500ms", now) == now - timedelta(milliseconds=500)
    assert parse_since("1w", now) == now - timedelta(weeks=1)
    assert parse_since("20250531", now) == datetime(2025, 5, 31, tzinfo=UTC)  # a date, not seconds
    with pytest.raises(DurationError, match=r"^invalid --since value 'yesterday': use a duration"):
        parse_since("yesterday", now)

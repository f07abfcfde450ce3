"""``failover_settings.alerts``: where notifications go, which events send one, and how often.

The destinations are secrets, validated by ``litellm_failover.alerts.urls`` (imported lazily:
the alerts package imports the settings), and shown in errors by their scheme or host only.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from litellm_failover.settings.base import StrictModel


def _secret_error(message: str) -> PydanticCustomError:
    """A validation error whose input is a secret: ``_format_error`` shows the message (which
    names only what is safe: a scheme, a host) and never the value."""
    return PydanticCustomError("failover_secret_value", "{detail}", {"detail": message, "secret": True})


def _check_apprise_url(url: str) -> str:
    from litellm_failover.alerts.urls import apprise_url_problem  # lazy: alerts imports settings

    problem = apprise_url_problem(url)
    if problem is not None:
        raise _secret_error(problem)
    return url.strip()


def _check_webhook_url(url: str) -> str:
    from litellm_failover.alerts.urls import webhook_url_problem

    problem = webhook_url_problem(url)
    if problem is not None:
        raise _secret_error(problem)
    return url.strip()


def _check_header_name(name: str) -> str:
    from litellm_failover.alerts.urls import header_problem

    problem = header_problem(name, "")
    if problem is not None:
        raise PydanticCustomError("failover_header_name", "{detail}", {"detail": problem})
    return name


def _check_header_value(value: str) -> str:
    from litellm_failover.alerts.urls import header_problem

    problem = header_problem("x", value)
    if problem is not None:
        raise _secret_error(problem)
    return value


AppriseUrl = Annotated[str, AfterValidator(_check_apprise_url)]
WebhookUrl = Annotated[str, AfterValidator(_check_webhook_url)]
HeaderName = Annotated[str, AfterValidator(_check_header_name)]
HeaderValue = Annotated[str, AfterValidator(_check_header_value)]

ALERT_EVENT_TYPES = (
    "failover",
    "failback_step",
    "failback_completed",
    "ramp_aborted",
    "drain_started",
    "drain_completed",
    "panic_mode",
)


class AlertSettings(StrictModel):
    """Notifications of failovers, failbacks, ramp aborts, drains and panic mode.

    The destinations are secrets: they are kept out of ``repr``, and a bad one is refused naming
    its key path and scheme, never its value.
    """

    apprise_urls: list[AppriseUrl] = Field(
        default_factory=list,
        repr=False,
        description=(
            "Apprise URLs to notify (Slack, Teams, PagerDuty, e-mail, `json://`/`jsons://`, ...). Secrets: "
            "never logged; an URL apprise cannot parse refuses start-up, naming its key path and scheme "
            "only."
        ),
    )
    webhook_urls: list[WebhookUrl] = Field(
        default_factory=list,
        repr=False,
        description=(
            "Webhooks that get each alert as a JSON `POST` (http or https). Secrets: named by scheme and "
            "host only."
        ),
    )
    webhook_headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        repr=False,
        description="Headers sent with every webhook request (e.g. `Authorization`). Values are secrets.",
    )
    event_types: list[str] = Field(
        default_factory=lambda: list(ALERT_EVENT_TYPES),
        description="Event types that send an alert. `alert_failed` is refused (no loops).",
    )
    dedup_window_s: float = Field(
        300.0,
        ge=0,
        description=(
            "The same alert (group, event type, deployment, from/to, reason) again within this is suppressed"
            " and counted. `0` turns deduplication off."
        ),
    )
    rate_limit_count: int = Field(
        10,
        ge=1,
        description=(
            "At most this many alerts per model group per `rate_limit_window_s`; more are suppressed, "
            "counted, and the latest is sent as a digest when the window has room."
        ),
    )
    rate_limit_window_s: float = Field(300.0, gt=0, description="The per-group rate-limit window in seconds.")
    timeout_s: float = Field(10.0, gt=0, description="Time limit of one delivery attempt to one destination.")
    max_attempts: int = Field(
        5,
        ge=1,
        description=(
            "Attempts per destination before the alert is given up and an `alert_failed` event is written."
        ),
    )
    retry_backoff_s: float = Field(
        1.0, gt=0, description="Wait before the first retry; it doubles with each attempt (with jitter)."
    )
    retry_backoff_max_s: float = Field(60.0, gt=0, description="Longest wait between two attempts.")
    max_queue: int = Field(
        1000,
        ge=1,
        description=(
            "Alerts waiting for, or in, delivery; beyond it new alerts are dropped, counted and warned "
            "about, never blocking a request."
        ),
    )

    @field_validator("event_types")
    @classmethod
    def _no_alert_on_alert_failures(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.strip():
                raise ValueError("an event type must not be empty")
        if "alert_failed" in value:
            raise ValueError(
                "alert_failed cannot send an alert (a failing destination would alert about itself)"
            )
        return list(dict.fromkeys(name.strip() for name in value))

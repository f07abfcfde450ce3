"""Sending one alert to one destination, once, within a time limit.

Two kinds of destination: an apprise URL (Slack, Teams, PagerDuty, email, ...) and a plain JSON
webhook. Each attempt either returns or raises ``DeliveryError`` whose text is safe to log and
store: errors are described by construction (status code, exception class, "timed out"), never
by ``str(exc)`` of a library exception, which may quote the URL with its token.

Retries, backoff and bookkeeping are the dispatcher's; a target knows only how to send once.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from litellm_failover.alerts.apprise_log import guard_apprise_log
from litellm_failover.alerts.message import AlertMessage
from litellm_failover.alerts.urls import describe_webhook, load_apprise_service, scheme_of
from litellm_failover.settings import FailoverConfigError

if TYPE_CHECKING:
    from litellm_failover.settings import AlertSettings

_APPRISE_TYPES = {"info": "info", "success": "success", "warning": "warning", "critical": "failure"}


class DeliveryError(Exception):
    """One failed attempt; the message is secret-free by construction."""


class Target(Protocol):
    name: str  # "webhook_urls[0] http://host:port": key path and safe description
    kind: str

    async def send(self, message: AlertMessage, timeout: float) -> None: ...  # noqa: ASYNC109


class WebhookTarget:
    """POST the payload as JSON; any 2xx is delivered, anything else is retried."""

    kind = "webhook"

    def __init__(self, index: int, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.headers = dict(headers)
        self.name = f"webhook_urls[{index}] {describe_webhook(url)}"
        self.session: aiohttp.ClientSession | None = None  # the dispatcher's, set at start

    async def send(self, message: AlertMessage, timeout: float) -> None:  # noqa: ASYNC109
        if self.session is None:
            raise DeliveryError("not started")
        try:
            async with self.session.post(
                self.url,
                json=message.payload,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,  # a redirect would re-send the headers to another host
            ) as response:
                if not 200 <= response.status < 300:
                    raise DeliveryError(f"HTTP {response.status}")
                await response.read()
        except DeliveryError:
            raise
        except TimeoutError:
            raise DeliveryError(f"timed out after {timeout:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise DeliveryError(f"cannot connect ({type(exc.os_error).__name__})") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"request failed ({type(exc).__name__})") from None


class AppriseTarget:
    """One apprise URL, one ``Apprise`` object: retried on its own, so a working Slack is not
    re-notified because the e-mail next to it failed.

    apprise's ``notify`` is blocking (most services use ``requests``), so it runs in a worker
    thread of the alerter's own small pool (``executor``, set at start): a hanging service must
    not occupy the event loop's default executor, which LiteLLM uses too. The attempt gives up
    after ``timeout``; a thread past its time cannot be killed, but apprise's own socket
    timeouts end it, and its late result is ignored.
    """

    kind = "apprise"

    def __init__(self, index: int, url: str) -> None:
        import apprise

        service = load_apprise_service(url)
        if service is None:  # AlertSettings refuses these; this is for settings built unvalidated
            raise FailoverConfigError(
                f"invalid configuration: failover_settings.alerts.apprise_urls[{index}]: "
                f"apprise cannot parse or load this URL (scheme {scheme_of(url)})"
            )
        self._apprise = apprise.Apprise()
        self._apprise.add(service)
        self.name = f"apprise_urls[{index}] {scheme_of(url)} ({service.service_name})"
        self.executor: Executor | None = None  # the dispatcher's, set at start

    async def send(self, message: AlertMessage, timeout: float) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        try:
            result = await asyncio.wait_for(
                loop.run_in_executor(self.executor, self._notify, message), timeout
            )
        except TimeoutError:
            raise DeliveryError(f"timed out after {timeout:g}s") from None
        if not result:
            raise DeliveryError("apprise reported the notification as not delivered")

    def _notify(self, message: AlertMessage) -> Any:
        return self._apprise.notify(
            body=message.body, title=message.title, notify_type=_APPRISE_TYPES[message.severity]
        )


def build_targets(settings: AlertSettings) -> list[Target]:
    if settings.apprise_urls:
        guard_apprise_log(settings.apprise_urls)
    targets: list[Target] = [AppriseTarget(i, url) for i, url in enumerate(settings.apprise_urls)]
    targets += [
        WebhookTarget(i, url, settings.webhook_headers) for i, url in enumerate(settings.webhook_urls)
    ]
    return targets

"""Alerting: failovers, failbacks, ramp aborts, drains and panic mode, told to people.

``Alerter`` is the entry point (``core.listeners.append(alerter.on_event)``). Where things are
decided: ``policy`` (which events alert, dedup, per-group rate limit), ``message`` (what an alert
says), ``delivery`` (apprise and JSON webhook senders), ``dispatcher`` (the bounded queue and
the background task with retries), ``urls`` (checking and naming destinations without secrets).
"""

from __future__ import annotations

from litellm_failover.alerts.dispatcher import Alerter
from litellm_failover.alerts.message import AlertMessage, build_message
from litellm_failover.alerts.policy import ALERT_FAILED, Admission, AlertPolicy

__all__ = ["ALERT_FAILED", "Admission", "AlertMessage", "AlertPolicy", "Alerter", "build_message"]

"""Running one probe round so that the probe loop never dies and never waits too long.

``run_probe`` is the only way the core should run a prober. It enforces the round's deadline
(``max_probe_latency_s``), turns a timeout (a hung node, a body trickling in byte by byte) into
failed ``probe_latency`` and ``http_health`` checks that say what was still being read, turns
any exception that escapes a prober (a bug, by contract) into a failed ``http_health``, and
strips the deployment's API key out of every reason before the report leaves the providers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from litellm_failover.providers import http
from litellm_failover.providers.base import CheckName, CheckResult, Prober, ProbeReport
from litellm_failover.providers.probe_client import ProbeClient
from litellm_failover.providers.thresholds import ProbeThresholds


async def run_probe(prober: Prober, session: ProbeClient) -> ProbeReport:
    """One round of ``prober`` within its deadline. Never raises (except cancellation)."""
    target = prober.target
    limit = target.thresholds.max_probe_latency_s
    start = time.monotonic()
    deadline = asyncio.timeout(limit)
    try:
        async with deadline:
            report = await prober.probe(session)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        elapsed = time.monotonic() - start
        if isinstance(exc, TimeoutError) and deadline.expired():
            report = timed_out(limit, elapsed, getattr(prober, "pending", ()))
        else:
            report = ProbeReport(
                checks=(CheckResult.failed(CheckName.HTTP_HEALTH, http.describe_error(exc)),),
                latency_s=elapsed,
            )
    return redact(report, target.api_key)


def timed_out(limit_s: float, elapsed_s: float, pending: tuple[str, ...] = ()) -> ProbeReport:
    """The report of a round that ran out of time."""
    text = f"no answer within {http.format_seconds(limit_s)}"
    waiting = f" (waiting on {', '.join(pending)})" if pending else ""
    return ProbeReport(
        checks=(
            CheckResult.failed(CheckName.HTTP_HEALTH, text + waiting),
            CheckResult.failed(CheckName.PROBE_LATENCY, text, elapsed_s),
        ),
        latency_s=elapsed_s,
    )


def latency_check(latency_s: float, thresholds: ProbeThresholds) -> CheckResult:
    """``probe_latency`` for a read that finished: how long the health (or models) read took,
    answered or not. A refused connection is fast: it fails ``http_health``, not this."""
    limit = thresholds.max_probe_latency_s
    if latency_s >= limit:
        return CheckResult.failed(
            CheckName.PROBE_LATENCY,
            f"answered in {http.format_seconds(latency_s)} (limit {http.format_seconds(limit)})",
            latency_s,
        )
    return CheckResult.passed(CheckName.PROBE_LATENCY, f"{latency_s * 1000:.0f} ms", latency_s)


def redact(report: ProbeReport, secret: str | None) -> ProbeReport:
    """Belt and braces: adapters never put a key in a reason, but an echoed error might."""
    if not secret or len(secret) < 4 or not any(secret in c.reason for c in report.checks):
        return report
    checks = tuple(
        dataclasses.replace(c, reason=c.reason.replace(secret, "[redacted]")) if secret in c.reason else c
        for c in report.checks
    )
    return dataclasses.replace(report, checks=checks)

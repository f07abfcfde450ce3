"""How traffic moves when it is told to or must: failback and slow start, drains, canary shifts,
mid-stream resumes, and the fault injection drills use to rehearse them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from litellm_failover.settings.base import StrictModel

FailbackMode = Literal["auto", "manual"]


class FailbackSettings(StrictModel):
    """How traffic comes back to a recovered primary tier, and to a node recovering inside a
    tier (slow start, after Envoy's ``slow_start``): held down, then ramped in steps."""

    mode: FailbackMode = Field(
        "auto", description="auto: ramp back after hold_down_s; manual: wait for failback(group)."
    )
    hold_down_s: float = Field(
        30.0, ge=0, description="The primary must be routable without a break this long before it ramps."
    )
    ramp_steps: list[float] = Field(
        default_factory=lambda: [10.0, 50.0, 100.0],
        description="Percent of the group's new requests per step; increasing, ending at 100.",
    )
    step_interval_s: float = Field(30.0, gt=0, description="Seconds per ramp step.")
    abort_errors: int = Field(
        3, ge=1, description="Failed attempts on the ramping deployments within one step that abort it."
    )
    slow_start: bool = Field(
        True, description="Ramp a deployment that recovers inside the serving tier (weight x step)."
    )

    @field_validator("ramp_steps")
    @classmethod
    def _valid_steps(cls, value: list[float]) -> list[float]:
        from litellm_failover.switching.steps import check_steps  # lazy: switching imports settings

        return list(check_steps(value))


class DrainSettings(StrictModel):
    """Graceful drain: in-flight work finishes, new work goes elsewhere."""

    timeout_s: float = Field(
        300.0, gt=0, description="In-flight work still running after this is counted as cut."
    )
    in_flight_ttl_s: float = Field(
        900.0,
        gt=0,
        description="An attempt with no end signal after this is forgotten (counted as expired).",
    )


class ShiftSettings(StrictModel):
    """Canary shifts (``shift(group, to, steps, interval_s)``)."""

    abort_errors: int = Field(
        3, ge=1, description="Failed attempts on the shift target within one step that roll it back."
    )


InexactContinuation = Literal["best_effort", "error"]


class StreamSettings(StrictModel):
    """Mid-stream failover (issue 5): a stream that breaks after its first chunks continues on
    another healthy deployment, and the client sees one unbroken stream."""

    resume: bool = Field(
        True, description="Continue a broken stream elsewhere; off: a break ends the stream with an error."
    )
    max_resumes: int = Field(
        2, ge=0, description="Continuations one stream may start; a later break ends it with an error."
    )
    inter_token_timeout_s: float | None = Field(
        30.0, gt=0, description="No chunk for this long (after the first) is a break; null: no limit."
    )
    inexact_continuation: InexactContinuation = Field(
        "error",
        description="Deployments with no exact continuation (OpenAI, Azure, TGI): best_effort or error.",
    )


class ChaosSettings(StrictModel):
    """Fault injection for drills (issue 5): errors, added latency and stream cuts on chosen
    deployments, started with ``litellm-failover chaos inject``. Off unless enabled here, so a
    production config that does not say so refuses every chaos command."""

    enabled: bool = Field(False, description="Accept chaos inject/clear commands on this replica.")
    max_duration_s: float = Field(
        3600.0, gt=0, description="Longest a fault may last; a longer --for or --until is refused."
    )

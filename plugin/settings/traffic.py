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
        "auto",
        description=(
            "`auto`: a recovered primary tier ramps back after `failback.hold_down_s`; `manual`: the group "
            "stays on the standby until `failback(group)` / `litellm-failover failback GROUP`."
        ),
    )
    hold_down_s: float = Field(
        30.0,
        ge=0,
        description=(
            "The primary must be routable without a break this long before traffic starts coming back (any "
            "ejection or drain restarts the count)."
        ),
    )
    ramp_steps: list[float] = Field(
        default_factory=lambda: [10.0, 50.0, 100.0],
        description=(
            "Percent of the group's new requests the primary tier gets at each failback step, and the weight"
            " factor of a slow start; strictly increasing, each in (0, 100], ending at 100. `[100]` brings "
            "traffic back at once."
        ),
    )
    step_interval_s: float = Field(30.0, gt=0, description="Seconds per ramp step (failback and slow start).")
    abort_errors: int = Field(
        3,
        ge=1,
        description=(
            "Failed attempts (5xx, timeouts, refused connections, cut streams) on the ramping deployments "
            "within one step that abort the ramp and eject them again."
        ),
    )
    slow_start: bool = Field(
        True,
        description=(
            "Slow-start a deployment that recovers inside the serving tier (weight x each ramp step in turn)."
        ),
    )

    @field_validator("ramp_steps")
    @classmethod
    def _valid_steps(cls, value: list[float]) -> list[float]:
        from litellm_failover.switching.steps import check_steps  # lazy: switching imports settings

        return list(check_steps(value))


class DrainSettings(StrictModel):
    """Graceful drain: in-flight work finishes, new work goes elsewhere."""

    timeout_s: float = Field(
        300.0,
        gt=0,
        description=(
            "A drain waits this long for in-flight work; what still runs is then counted as cut (the "
            "deployment stays drained)."
        ),
    )
    in_flight_ttl_s: float = Field(
        900.0,
        gt=0,
        description=(
            "An attempt with no end signal after this long is forgotten (counted as `expired`): a lost "
            "signal never holds a drain."
        ),
    )


class ShiftSettings(StrictModel):
    """Canary shifts (``shift(group, to, steps, interval_s)``)."""

    abort_errors: int = Field(
        3,
        ge=1,
        description=(
            "Failed attempts on a canary shift's target within one step that stop the shift and roll it back."
        ),
    )


InexactContinuation = Literal["best_effort", "error"]


class StreamSettings(StrictModel):
    """Mid-stream failover: a stream that breaks after its first chunks continues on
    another healthy deployment, and the client sees one unbroken stream."""

    resume: bool = Field(
        True,
        description=(
            "Continue a broken stream on another healthy deployment. `false`: a break (including a made-up "
            "finish or a stall) ends the stream with an error."
        ),
    )
    max_resumes: int = Field(
        2,
        ge=0,
        description=(
            "Continuations one stream may start (a continuation that fails to start counts); a break after "
            "the last ends the stream with an error."
        ),
    )
    inter_token_timeout_s: float | None = Field(
        30.0,
        gt=0,
        description=(
            "A stream that sends no chunk for this long (after its first) is broken and continues elsewhere;"
            " `null`: no limit."
        ),
    )
    first_token_timeout_s: float | None = Field(
        None,
        gt=0,
        description=(
            "A stream whose first token has not come this long after its attempt started is retried on "
            "another deployment and counts as a timeout toward outlier detection. `null`: derived from the "
            "group's own recent time to first token (see `rescue.first_token_*`)."
        ),
    )
    inexact_continuation: InexactContinuation = Field(
        "error",
        description=(
            "When only deployments with no exact continuation are left (OpenAI, Azure, OpenAI-compatible, "
            "TGI): `error` ends the stream with an error, `best_effort` continues it as well as the API "
            "allows."
        ),
    )


class ChaosSettings(StrictModel):
    """Fault injection for drills: errors, added latency and stream cuts on chosen
    deployments, started with ``litellm-failover chaos inject``. Off unless enabled here, so a
    production config that does not say so refuses every chaos command."""

    enabled: bool = Field(
        False,
        description=(
            "Accept `litellm-failover chaos inject` / `chaos clear` (and `plugin.chaos_inject` / "
            '`chaos_clear`) on this replica. Off: every chaos command is refused ("chaos is disabled: set '
            'failover_settings.chaos.enabled: true") and nothing is injected. Enable it on staging, not in '
            "production."
        ),
    )
    max_duration_s: float = Field(
        3600.0,
        gt=0,
        description=(
            "Longest a fault may last; a `--for` or `--until` further away is refused by the replica."
        ),
    )

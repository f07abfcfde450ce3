"""``rescue``: no request waits on a node the plugin has given up on (issue 12 §1).

Two triggers fail an attempt that has not delivered a byte so LiteLLM retries it elsewhere at
once: its deployment is ejected because it stopped answering, or a stream's first token is late
(``streams.first_token_timeout_s``; the derivation of its default lives here). The caps guard
against amplification when an ejection was a false positive.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from litellm_failover.settings.base import StrictModel


class RescueSettings(StrictModel):
    """Rescue of attempts in flight on a deployment that stopped answering, and the derived
    first-token timeout for streams."""

    enabled: bool = Field(
        True,
        description=(
            "When a deployment is ejected because it stopped answering (failed probes, refused or reset "
            "connections, timeouts, a stall), fail every attempt on it that has not yet delivered a byte, so "
            "LiteLLM retries it on another deployment at once instead of at its own timeout."
        ),
    )
    max_per_ejection: int = Field(
        128,
        ge=0,
        description=(
            "Attempts one ejection may rescue; the rest wait out their own timeout (a false positive "
            "never has all its work redone)."
        ),
    )
    max_per_s: float = Field(
        50.0,
        gt=0,
        description=(
            "Rescues per second across the replica, ejections and first-token timeouts together (a token "
            "bucket holding one second's worth); beyond it rescues wait their turn, so the retries of a "
            "large ejection reach the other deployments spread out."
        ),
    )
    first_token_p99_multiplier: float = Field(
        4.0,
        gt=0,
        description=(
            "Derived first-token timeout (`streams.first_token_timeout_s: null`): this many times the "
            "group's recent p99 time to first token, within the floor and ceiling."
        ),
    )
    first_token_floor_s: float = Field(
        2.0, gt=0, description="Derived first-token timeout: never shorter than this."
    )
    first_token_ceiling_s: float = Field(
        30.0,
        gt=0,
        description=(
            "Derived first-token timeout: never longer than this; also the timeout while the group has "
            "fewer than `first_token_min_samples` streams to learn from."
        ),
    )
    first_token_min_samples: int = Field(
        20, ge=1, description="Completed streams a group needs before its own p99 sets the timeout."
    )
    first_token_window: int = Field(
        256, ge=1, le=10_000, description="Recent streams per group whose time to first token is kept."
    )

    @model_validator(mode="after")
    def _floor_below_ceiling(self) -> RescueSettings:
        if self.first_token_floor_s > self.first_token_ceiling_s:
            raise ValueError(
                f"first_token_floor_s ({self.first_token_floor_s}) must not exceed "
                f"first_token_ceiling_s ({self.first_token_ceiling_s})"
            )
        return self

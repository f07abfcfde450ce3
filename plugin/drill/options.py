"""The drill's options, checked before anything starts: a typo fails in a second, not a minute in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from litellm_failover.drill.profiles import PROFILES, SETTINGS
from litellm_failover.drill.scenarios import SCENARIO_NAMES, SCENARIOS, Scenario


class DrillInputError(ValueError):
    """Bad drill options: the message names the option and the value (CLI exit 2)."""


@dataclass
class DrillOptions:
    scenarios: Sequence[str] | None = None
    profile: str = "plugin"
    out: Path = Path("./drill-report")
    duration_scale: float = 1.0
    concurrency: int = 8
    settings: str = "tuned"  # the plugin profile's failover_settings (profiles.SETTINGS)
    workdir: Path | None = None  # default: <out>/work-<profile>

    def selected(self) -> list[Scenario]:
        """Validate the options; the scenarios to run, in the battery's order."""
        if self.profile not in PROFILES:
            raise DrillInputError(f"--profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if self.settings not in SETTINGS:
            raise DrillInputError(f"--settings must be one of {', '.join(SETTINGS)}, got {self.settings!r}")
        scale = self.duration_scale
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0.05 <= scale <= 20:
            raise DrillInputError(f"--duration-scale must be a number from 0.05 to 20, got {scale!r}")
        concurrency = self.concurrency
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
            raise DrillInputError(f"--concurrency must be an integer from 1 to 256, got {concurrency!r}")
        names = list(self.scenarios) if self.scenarios else list(SCENARIO_NAMES)
        unknown = [name for name in names if name not in SCENARIOS]
        if unknown or not names:
            raise DrillInputError(
                f"--scenarios: unknown scenario(s) {', '.join(repr(n) for n in unknown) or '(none given)'}; "
                f"known: {', '.join(SCENARIO_NAMES)}"
            )
        return [SCENARIOS[name] for name in SCENARIO_NAMES if name in names]

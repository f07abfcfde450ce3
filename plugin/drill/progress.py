"""The drill's progress display: a rich Live panel on a terminal, plain lines otherwise.

Both show the same things: scenario i/n, its phase, elapsed time, requests, client errors,
broken streams and who served the last two seconds of answers. Plain lines are written only at
phase changes so a CI log stays readable.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, deque
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from litellm_failover.drill.load import Outcome

RECENT_S = 2.0


class Progress:
    """Null progress: what the runner calls; subclasses show it."""

    def begin(self, profile: str, names: list[str]) -> None: ...

    def note(self, message: str) -> None: ...

    def scenario(self, index: int, total: int, name: str) -> None: ...

    def phase(self, phase: str) -> None: ...

    def record(self, outcome: Outcome) -> None: ...

    def scenario_ran(self) -> None:
        """The current scenario's load is over (its verdict comes after the events are read)."""

    def scenario_done(self, entry: dict[str, Any]) -> None: ...

    def end(self, result: dict[str, Any]) -> None: ...

    def close(self) -> None:
        """Stop any live display (also after an error); safe to call twice."""


class _Counting(Progress):
    def __init__(self) -> None:
        self.profile = ""
        self.index = 0
        self.total = 0
        self.name = ""
        self.phase_name = ""
        self.started = time.monotonic()
        self.scenario_started = time.monotonic()
        self.requests = 0
        self.errors = 0
        self.broken = 0
        self.recent: deque[tuple[float, str]] = deque(maxlen=2000)
        self.done: list[dict[str, Any]] = []
        self.ran: list[dict[str, Any]] = []

    def begin(self, profile: str, names: list[str]) -> None:
        self.profile = profile
        self.total = len(names)
        self.started = time.monotonic()

    def scenario(self, index: int, total: int, name: str) -> None:
        self.index, self.total, self.name = index, total, name
        self.scenario_started = time.monotonic()
        self.requests = self.errors = self.broken = 0
        self.recent.clear()

    def phase(self, phase: str) -> None:
        self.phase_name = phase

    def record(self, outcome: Outcome) -> None:
        self.requests += 1
        self.errors += outcome.client_error
        self.broken += outcome.broken
        if outcome.ok and outcome.served_by:
            self.recent.append((time.monotonic(), outcome.served_by))

    def scenario_ran(self) -> None:
        self.ran.append(
            {
                "name": self.name,
                "status": "ran",
                "requests": self.requests,
                "client_errors": self.errors,
                "broken_streams": self.broken,
            }
        )

    def scenario_done(self, entry: dict[str, Any]) -> None:
        self.done.append(entry)

    def serving(self) -> str:
        cutoff = time.monotonic() - RECENT_S
        counts = Counter(node for at, node in self.recent if at >= cutoff)
        total = sum(counts.values())
        if not total:
            return "-"
        return " ".join(f"{node} {count / total:.0%}" for node, count in sorted(counts.items()))


class LinesProgress(_Counting):
    """One line per phase change and per finished scenario."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr

    def _print(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[drill {self.profile} {elapsed:6.1f}s] {text}", file=self.stream, flush=True)

    def begin(self, profile: str, names: list[str]) -> None:
        super().begin(profile, names)
        self._print(f"{len(names)} scenario(s): {', '.join(names)}")

    def note(self, message: str) -> None:
        self._print(message)

    def scenario(self, index: int, total: int, name: str) -> None:
        super().scenario(index, total, name)
        self._print(f"scenario {index}/{total} {name}")

    def phase(self, phase: str) -> None:
        serving = self.serving()
        super().phase(phase)
        self._print(
            f"  {self.name}: {phase} (requests {self.requests}, errors {self.errors}, "
            f"broken {self.broken}, serving {serving})"
        )

    def scenario_ran(self) -> None:
        super().scenario_ran()
        self._print(
            f"  {self.name}: load over (requests {self.requests}, errors {self.errors}, broken {self.broken})"
        )

    def scenario_done(self, entry: dict[str, Any]) -> None:
        super().scenario_done(entry)
        line = f"  {entry['name']}: {entry['status'].upper()}"
        if entry["status"] == "skipped":
            line += f" ({entry['skip_reason']})"
        else:
            line += (
                f" requests {entry['requests']}, errors {entry['client_errors']}, "
                f"broken {entry['broken_streams']}, standby {_s(entry['time_to_first_standby_s'])}, "
                f"failback {_s(entry['time_to_failback_s'])}"
            )
        self._print(line)
        for failure in entry.get("failures", []):
            self._print(f"    - {failure}")

    def end(self, result: dict[str, Any]) -> None:
        totals = result["totals"]
        self._print(
            f"{'PASSED' if result['passed'] else 'FAILED'} in {result['duration_s']:.1f}s: "
            f"{totals['requests']} requests, {totals['client_errors']} client errors, "
            f"{totals['broken_streams']} broken streams, {totals['resumed_streams']} resumed"
        )


class LiveProgress(_Counting):
    """A rich Live table: finished scenarios above, the running one below, refreshed 4x a second."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console(stderr=True)
        self.notes: deque[str] = deque(maxlen=3)
        self.live = Live(console=self.console, refresh_per_second=4, get_renderable=self._render)

    def begin(self, profile: str, names: list[str]) -> None:
        super().begin(profile, names)
        self.live.start()

    def note(self, message: str) -> None:
        self.notes.append(message)

    def close(self) -> None:
        self.live.stop()

    def end(self, result: dict[str, Any]) -> None:
        self.live.stop()
        totals = result["totals"]
        self.console.print(
            f"[bold]{'PASSED' if result['passed'] else 'FAILED'}[/] in {result['duration_s']:.1f}s: "
            f"{totals['requests']} requests, {totals['client_errors']} client errors, "
            f"{totals['broken_streams']} broken streams, {totals['resumed_streams']} resumed"
        )

    def _render(self) -> Table:
        elapsed = time.monotonic() - self.started
        table = Table(
            title=f"chaos drill, profile {self.profile}: {elapsed:.0f}s",
            caption=self.notes[-1] if self.notes else None,
        )
        for column in ("#", "scenario", "status", "time", "requests", "errors", "broken", "serving / result"):
            table.add_column(column)
        for i, entry in enumerate(self.done or self.ran, 1):
            style = {"passed": "green", "failed": "red"}.get(entry["status"], "yellow")
            result = (
                ""
                if entry["status"] == "ran"
                else (
                    f"standby {_s(entry.get('time_to_first_standby_s'))}, "
                    f"failback {_s(entry.get('time_to_failback_s'))}"
                )
            )
            table.add_row(
                str(i), entry["name"], f"[{style}]{entry['status']}[/]", "", str(entry.get("requests", "")),
                str(entry.get("client_errors", "")), str(entry.get("broken_streams", "")), result,
            )  # fmt: skip
        if self.name and not self.done and len(self.ran) < self.index:
            table.add_row(
                f"{self.index}/{self.total}", self.name, self.phase_name,
                f"{time.monotonic() - self.scenario_started:.1f}s", str(self.requests), str(self.errors),
                str(self.broken), self.serving(),
            )  # fmt: skip
        return table


def make_progress(enabled: bool, stream: IO[str] | None = None) -> Progress:
    """Live on a terminal, lines otherwise, nothing when disabled."""
    if not enabled:
        return Progress()
    target = stream or sys.stderr
    if target.isatty():
        return LiveProgress()
    return LinesProgress(target)


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}s"

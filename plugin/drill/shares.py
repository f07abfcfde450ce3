"""The measurements the drill's checks share: phases, a node's share of answers, its first answer.

Times are seconds since the scenario's load started. Traffic is attributed to the moment a
request was sent (the routing decision), which is what a routing weight changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from litellm_failover.drill.load import Outcome

BUCKET_S = 0.5


@dataclass(frozen=True, slots=True)
class Phases:
    fault_at: float
    restored_at: float
    end_at: float


def share_in(outcomes: Sequence[Outcome], node: str, start: float, end: float) -> tuple[float | None, int]:
    """The node's share of the answers sent in [start, end), and how many answers that was."""
    window = [o for o in outcomes if o.ok and start <= o.start < end]
    if not window:
        return None, 0
    return sum(o.served_by == node for o in window) / len(window), len(window)


def first_answer_by(
    outcomes: Sequence[Outcome], node: str, after: float, *, sent_after: bool = False
) -> float | None:
    """Seconds from ``after`` to the first byte ``node`` sent in a good answer after it.

    A stream continued on ``node`` counts from ``node``'s own first chunk. ``sent_after``: only
    requests sent after ``after`` (a failback is a routing decision; a request held by a hung
    node and released at the restore is not one).
    """
    times = [
        o.first_byte_by[node]
        for o in outcomes
        if o.ok and node in o.first_byte_by and (not sent_after or o.start >= after)
    ]
    later = [t for t in times if t >= after]
    return round(min(later) - after, 3) if later else None


def failback_shares(outcomes: Sequence[Outcome], node: str, phases: Phases) -> list[dict[str, float]]:
    shares = []
    t = phases.restored_at
    while t < phases.end_at:
        share, n = share_in(outcomes, node, t, t + BUCKET_S)
        if share is not None:
            shares.append({"t": round(t, 3), "share": round(share, 3), "n": n})
        t += BUCKET_S
    return shares

"""A stream mid-answer on a node ejected for not answering moves on at once (issue 12 §1).

The rescue (``litellm_failover.rescue``) fails attempts that have delivered nothing; a stream that
already sent text is the stream resumer's, and without this module it would wait on the hung node
for the whole ``streams.inter_token_timeout_s`` (30 s by default) before continuing elsewhere.

``LiveStreams`` holds every running stream part by deployment (``ResumingStream`` adds a part
when it starts and removes it when it ends, breaks, or its client leaves). ``StreamEjections``,
a ``FailoverCore`` listener, acts on the same ejections as the rescue (``stopped_answering``:
failed probes, another replica's ejection, refused or reset connections, timeouts, cut streams).

The rule, with X = the deployment's ``health.max_probe_latency_s`` (2 s by default), never more
than ``streams.inter_token_timeout_s``:

- a part that has been waiting **X or longer** for its next chunk is cut now, and continues on
  another deployment exactly like a stalled stream (the text the client has, word for word);
- every other part on that deployment keeps going, with X as its inter-token limit from now on;
- a continuation still opening there (a stream that broke elsewhere, waiting for this deployment's
  first chunk) is cancelled now, whatever its wait so far: its connection closes (the engine frees
  the request), the deployment counts as failed for that stream, and the next one is asked, within
  ``streams.max_resumes``, as for an open that failed (``ResumingStream`` registers the open too).
  A node that does not answer will not send that first chunk either, and nothing of it has reached
  the client, so nothing can be duplicated.

Why X: it is how long the plugin already lets a probe go unanswered before calling the node
dead, so a stream that has been silent as long has failed the same test. A node ejected because
it hung has sent nothing since it hung, which is longer than X by the time two probes of X each
have failed, so its streams are cut at the ejection. A slow but healthy node ejected by a false
positive (probes timing out under load) still streams, with gaps far below X: its streams are
not duplicated, and one that does go silent for X afterwards is cut then.

A stream is left alone, to its own timeout, when cutting it could not continue it: resuming off
(``streams.resume: false``: then nothing here acts at all), ``streams.max_resumes`` used up, a
tool call or ``n > 1`` being streamed, or no other deployment to continue on. Each of these is
counted (``stats``, under ``status()["stream_ejection"]``), as are the parts cut and limited and
the opens cancelled (``opens_cut``). The same holds for an open: one whose stream could not go on
after it (its cancellation would leave ``streams.max_resumes`` used up, or no other deployment)
keeps waiting, to the open's own timeout (``streams.inter_token_timeout_s``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litellm_failover.rescue.rescuer import stopped_answering

if TYPE_CHECKING:
    from litellm_failover.events import FailoverEvent
    from litellm_failover.health import DeploymentHealth
    from litellm_failover.settings import StreamSettings
    from litellm_failover.streams.resume import ResumingStream
    from litellm_failover.streams.stall import StallWatch

KEPT = ("max_resumes", "not_resumable", "no_alternative")


@dataclass(slots=True, eq=False)
class LivePart:
    """One running part of a client's stream: where it runs, its stall watch, and its stream (by
    weak reference: a stream its client dropped must not be kept alive by this registry).
    ``opening``: the part is a continuation still being opened there (its watch waits on the open)."""

    deployment: str
    watch: StallWatch
    stream: weakref.ref[ResumingStream]
    opening: bool = False


class LiveStreams:
    """Running stream parts by deployment; at most ``max_parts`` (beyond, a part is not tracked
    and is left to its own timeout, counted in ``untracked``)."""

    def __init__(self, max_parts: int = 100_000) -> None:
        self.max_parts = max_parts
        self.untracked = 0
        self._by_deployment: dict[str, set[LivePart]] = {}
        self._count = 0

    def add(
        self, deployment: str, watch: StallWatch, stream: ResumingStream, *, opening: bool = False
    ) -> LivePart | None:
        if self._count >= self.max_parts:
            self.untracked += 1
            return None
        part = LivePart(deployment, watch, weakref.ref(stream), opening)
        self._by_deployment.setdefault(deployment, set()).add(part)
        self._count += 1
        return part

    def remove(self, part: LivePart | None) -> None:
        """The part ended; safe to call twice."""
        if part is None:
            return
        parts = self._by_deployment.get(part.deployment)
        if parts is None or part not in parts:
            return
        parts.discard(part)
        self._count -= 1
        if not parts:
            del self._by_deployment[part.deployment]

    def on(self, deployment: str) -> list[LivePart]:
        return list(self._by_deployment.get(deployment, ()))

    def __len__(self) -> int:
        return self._count


class StreamEjections:
    def __init__(
        self,
        settings: StreamSettings,
        health: Mapping[str, DeploymentHealth],
        *,
        default_probe_limit_s: float,
        max_parts: int = 100_000,
    ) -> None:
        self.settings = settings
        self.live = LiveStreams(max_parts)
        self._health = health  # the core's records, live: a deployment added at run time is there
        self._default_probe_limit_s = default_probe_limit_s
        self.cut = 0  # silent for X or longer at the ejection: cut then
        self.limited = 0  # still streaming at the ejection: X as their limit from then on
        self.cut_after_limit = 0  # of those, the ones that went silent for X later
        self.opens_cut = 0  # continuations still opening at the ejection: cancelled then
        self.kept: Counter[str] = Counter()  # left to their own timeout, by why (``KEPT``)

    def grace_s(self, deployment: str) -> float:
        """X: the deployment's probe latency limit, never more than the inter-token timeout."""
        record = self._health.get(deployment)
        limit = record.spec.health.max_probe_latency_s if record is not None else self._default_probe_limit_s
        timeout = self.settings.inter_token_timeout_s
        return limit if timeout is None else min(limit, timeout)

    def on_event(self, event: FailoverEvent) -> None:
        """``FailoverCore`` listener. Acts on the next loop turn, after the core's table swap
        (which comes after its events), so the continuation's pick already excludes the node."""
        if not self.settings.resume or event.deployment_id is None or not stopped_answering(event):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop, no streams running
        details = event.details
        why = str(details.get("outcome") or details.get("source") or "stopped answering")
        loop.call_soon(self.eject, event.deployment_id, why)

    def eject(self, deployment: str, why: str) -> dict[str, int]:
        """Apply the rule to every running part on ``deployment``; returns what it did."""
        grace = self.grace_s(deployment)
        done: Counter[str] = Counter()
        for part in self.live.on(deployment):
            stream = part.stream()
            if stream is None:
                continue  # dropped by its client; its finaliser removes it
            kept = stream.why_kept(deployment)
            if kept is not None:
                self.kept[kept] += 1
                done[kept] += 1
                continue
            if part.opening:
                # Nothing of it reached the client, and a node ejected for not answering will
                # not send its first chunk either: the next deployment is asked now.
                if part.watch.cut(f"{deployment} was ejected ({why}) while a continuation was opening on it"):
                    self.opens_cut += 1
                    done["open_cut"] += 1
                continue
            silent = part.watch.silent_s()
            if silent is not None and silent >= grace:
                cause = f"{deployment} was ejected ({why}) after this stream's {silent:.1f}s without a chunk"
                if part.watch.cut(cause):
                    self.cut += 1
                    done["cut"] += 1
                continue
            cause = (
                f"{deployment} was ejected ({why}) and then sent no chunk for {grace:g}s "
                "(health.max_probe_latency_s)"
            )
            if part.watch.tighten(grace, cause, self._limit_fired):
                self.limited += 1
                done["limited"] += 1
        return dict(done)

    def _limit_fired(self) -> None:
        self.cut_after_limit += 1

    def stats(self) -> dict[str, Any]:
        return {
            "enabled": self.settings.resume,
            "tracked": len(self.live),
            "untracked": self.live.untracked,
            "cut": self.cut,
            "limited": self.limited,
            "cut_after_limit": self.cut_after_limit,
            "opens_cut": self.opens_cut,
            "kept": {why: self.kept[why] for why in KEPT},
        }

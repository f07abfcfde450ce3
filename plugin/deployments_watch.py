"""Deployments as LiteLLM has them now: added, changed and deleted ones managed while it runs.

LiteLLM's model list changes under a running Router: ``add_deployment``, ``upsert_deployment``
and ``delete_deployment``, which the proxy's model-management API and its database reload call
too. ``DeploymentWatch`` compares LiteLLM's current deployments with what the plugin manages (by
``model_info.id`` and a hash of the fields the plugin reads) and applies the difference to every
part that keeps a per-deployment view: the core (``membership``), the prober, the request path's
deployment dicts, session pins, the request book's in-flight counts, the stream resumer and the
redactor. It runs on its own cadence (at most one probe interval) and at once from the request
path when LiteLLM offers a deployment the plugin does not know (``screen``), so an added
deployment takes traffic on its first request and a deleted one gets none after the call returns.

A deployment whose ``model_info.failover`` is invalid is refused with the key path at fault: it is
kept out of every pick (never routed half-configured), listed in ``status()["unmanaged"]`` with
the reason, and the running deployments are untouched. Whatever LiteLLM routes that the plugin
does not manage is listed there too, so nothing is ever silently unmanaged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

from litellm_failover.deployments import DeploymentSpec, read_deployment
from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.litellm_compat import current_deployments, marker_check, marker_reader
from litellm_failover.membership import Membership
from litellm_failover.probes import SharedProbe, build_probes
from litellm_failover.redact import LITELLM_LOGGERS, guard_loggers
from litellm_failover.settings import FailoverConfigError, FailoverSettings

logger = logging.getLogger("litellm_failover")

FULL_EVERY = 20  # refresh ticks between full comparisons of every deployment's fields
_SECRET_PARAMS = ("api_key", "aws_secret_access_key", "vertex_credentials")


def secrets_of(specs: Iterable[DeploymentSpec]) -> list[str]:
    """The credentials in deployments' params, for the redactors."""
    found = []
    for spec in specs:
        for key in _SECRET_PARAMS:
            value = spec.litellm_params.get(key)
            if isinstance(value, str):
                found.append(value)
    return found


def fingerprint(raw: Mapping[str, Any]) -> str:
    """A hash of what the plugin reads of a deployment: its group, LiteLLM params and failover block."""
    info = raw.get("model_info") if isinstance(raw.get("model_info"), Mapping) else {}
    fields = [raw.get("model_name"), raw.get("litellm_params"), (info or {}).get("failover")]
    text = json.dumps(fields, sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def deployment_id_of(raw: Any) -> str | None:
    info = raw.get("model_info") if isinstance(raw, Mapping) else None
    value = info.get("id") if isinstance(info, Mapping) else None
    return str(value) if value else None


class Core(Protocol):
    """What the watch needs of ``FailoverCore``."""

    health: Mapping[str, Any]

    def change_membership(
        self, change: Membership, *, probed: Callable[[DeploymentSpec], bool], source: str = ...
    ) -> None: ...

    def emit(self, event: FailoverEvent) -> None: ...


class Parts(Protocol):
    """The other per-deployment views the watch keeps current (``LiveParts``)."""

    def probes_added(self, probes: Sequence[SharedProbe]) -> None: ...

    def probes_removed(self, deployment_ids: Sequence[str]) -> None: ...

    def released(self, deployment_id: str, group: str) -> int: ...

    def specs_changed(self, specs: Mapping[str, DeploymentSpec], removed: Sequence[str]) -> None: ...

    def add_secrets(self, secrets: Sequence[str]) -> None: ...

    def redact(self, text: str) -> str: ...


class LiveParts:
    """``Parts`` over the plugin's prober, session pins, request book, stream resumer, redactor
    and offer matcher (``litellm_compat.offers``)."""

    def __init__(self, prober: Any, pins: Any, book: Any, streams: Any, redact: Any, offers: Any) -> None:
        self._prober, self._pins, self._book = prober, pins, book
        self._streams, self._redact, self._offers = streams, redact, offers

    def probes_added(self, probes: Sequence[SharedProbe]) -> None:
        self._prober.add(probes)

    def probes_removed(self, deployment_ids: Sequence[str]) -> None:
        self._prober.remove(deployment_ids)

    def released(self, deployment_id: str, group: str) -> int:
        """Forget the session pins and in-flight attempts of a deleted deployment; the pins dropped."""
        self._book.forget_deployment(deployment_id)
        sessions = self._pins.pinned_to(group, deployment_id, max(1, len(self._pins)))
        for session_id in sessions:
            self._pins.forget(session_id, group)
        return len(sessions)

    def specs_changed(self, specs: Mapping[str, DeploymentSpec], removed: Sequence[str]) -> None:
        self._streams.track(specs, removed)
        # 1.110 offers copies, matched by value: a deployment added now is this plugin's to route.
        self._offers.claim(specs.keys())

    def add_secrets(self, secrets: Sequence[str]) -> None:
        if secrets:
            self._redact.add(secrets)
            guard_loggers(LITELLM_LOGGERS, secrets)  # LiteLLM logs providers' errors verbatim

    def redact(self, text: str) -> str:
        return self._redact(text, limit=1000)


class DeploymentWatch:
    def __init__(
        self,
        router: Any,
        settings: FailoverSettings,
        core: Core,
        parts: Parts,
        *,
        deployments: MutableMapping[str, dict],
        group_of: MutableMapping[str, str],
        instance_id: str,
        clock: Callable[[], float],
        read: Callable[[Any], list[dict]] = current_deployments,
    ) -> None:
        self._router = router
        self._settings = settings
        self._core = core
        self._parts = parts
        self._deployments = deployments  # shared with the request path and sessions: id -> LiteLLM dict
        self._group_of = group_of
        self._instance_id = instance_id
        self._clock = clock
        self._read = read
        self._hashes = {i: fingerprint(raw) for i, raw in deployments.items()}
        self._seen: tuple[int, ...] = tuple(map(id, read(router)))
        self._read_marker = marker_reader(router)  # the Router's kind decided once
        self._unchanged = marker_check(router)  # per pick: the marker compared without building it
        self._marker = self._read_marker()
        self.refused: dict[str, dict[str, Any]] = {}  # id -> why (problems), kept out of picks
        self._refused_hashes: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self.refreshes = 0
        self.changes = 0
        self.failures = 0

    @property
    def interval_s(self) -> float:
        """Within one probe interval, and no slower than the routing tables' refresh."""
        return min(self._settings.health.interval_s, self._settings.weights.refresh_interval_s)

    # -- the request path --------------------------------------------------------------------

    def screen(self, healthy: list[dict]) -> list[dict]:
        """LiteLLM's offer for one pick, with refused deployments taken out. When LiteLLM's list
        has changed since the plugin read it (a constant-time check: a pick must not scan its
        group), the plugin reads it first, so an added deployment is routed by the plugin on its
        first request and a deleted one is already out of the tables."""
        self.catch_up()
        return self._without_refused(healthy)

    def _without_refused(self, healthy: list[dict]) -> list[dict]:
        refused = self.refused
        if refused:
            healthy = [d for d in healthy if deployment_id_of(d) not in refused]
        return healthy

    def catch_up(self) -> None:
        """Read LiteLLM's list now if it has changed since the plugin last did (constant time when
        it has not); for whatever must not act on a deployment LiteLLM has just deleted."""
        if not self._unchanged(self._marker):
            self.refresh(quick=True)

    def guard_route(self, route: Callable[..., list[dict]]) -> Callable[..., list[dict]]:
        def guarded(group: str, healthy: list[dict], request_kwargs: Any, messages: Any = None) -> list[dict]:
            # ``screen`` inline: this runs on every pick, and the usual case is two checks.
            if not self._unchanged(self._marker):
                self.refresh(quick=True)
            if self.refused:
                healthy = self._without_refused(healthy)
            return route(group, healthy, request_kwargs, messages) if healthy else []

        return guarded

    def guard_prepare(self, prepare: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def guarded(group: str, healthy: list[dict], request_kwargs: Any, messages: Any = None) -> None:
            healthy = self.screen(healthy)
            if healthy:
                await prepare(group, healthy, request_kwargs, messages)

        return guarded

    # -- refresh ----------------------------------------------------------------------------

    def refresh(self, *, quick: bool = False) -> bool:
        """Read LiteLLM's deployments and apply what changed; True if anything did. ``quick``: only
        if the list holds other dicts than last time (the request path; LiteLLM replaces a
        deployment's dict whenever it adds or updates one)."""
        try:
            self._marker = self._read_marker()
            raw = self._read(self._router)
            seen = tuple(map(id, raw))
            if quick and seen == self._seen:
                return False
            self._seen = seen
            self.refreshes += 1
            return self._apply(raw)
        except Exception:  # never break a request or the loop; the next refresh tries again
            self.failures += 1
            logger.exception("reading LiteLLM's deployments failed")
            return False

    def _apply(self, model_list: list[dict]) -> bool:
        health = self._settings.health
        current: dict[str, tuple[int, dict, str]] = {}
        for index, raw in enumerate(model_list):
            deployment_id = deployment_id_of(raw)
            if deployment_id is not None and deployment_id not in current:
                current[deployment_id] = (index, raw, fingerprint(raw))
        managed = self._core.health
        removed = [i for i in managed if i not in current]
        added: list[DeploymentSpec] = []
        updated: list[DeploymentSpec] = []
        for deployment_id, (index, raw, digest) in current.items():
            if deployment_id in managed and self._hashes.get(deployment_id) == digest:
                self._deployments[deployment_id] = raw  # LiteLLM's dict now, same fields
                continue
            if self._refused_hashes.get(deployment_id) == digest:
                continue  # refused already; said so once
            try:
                spec = read_deployment(index, raw, health)
                build_probes([spec])  # a provider kind or probe URL it cannot use is refused too
            except Exception as exc:  # one bad deployment never stops the others being read
                problems = (
                    exc.problems
                    if isinstance(exc, FailoverConfigError)
                    else [f"model_list[{index}]: unreadable ({type(exc).__name__})"]
                )
                self._refuse(deployment_id, raw, digest, problems)
                if deployment_id in managed:
                    removed.append(deployment_id)  # updated into an invalid one: out of the picks
                continue
            self.refused.pop(deployment_id, None)
            self._refused_hashes.pop(deployment_id, None)
            self._hashes[deployment_id] = digest
            self._deployments[deployment_id] = raw
            (updated if deployment_id in managed else added).append(spec)
        for deployment_id in list(self.refused):
            if deployment_id not in current:
                del self.refused[deployment_id]
                self._refused_hashes.pop(deployment_id, None)
        change = Membership(added=added, updated=updated, removed=removed)
        if change:
            self._change(change)
        return bool(change)

    def _change(self, change: Membership) -> None:
        self.changes += 1
        parts = self._parts
        groups = {i: str(self._core.health[i].spec.group) for i in change.removed}
        if change.removed:
            parts.probes_removed(list(change.removed))
        touched = [*change.added, *change.updated]
        parts.add_secrets(secrets_of(touched))
        for spec in touched:
            self._group_of[spec.deployment_id] = spec.group
        self._core.change_membership(change, probed=lambda spec: spec.failover.probe)
        # Probed from now on (an updated deployment anew: its target may have moved).
        parts.probes_removed([spec.deployment_id for spec in change.updated])
        parts.probes_added(build_probes(touched))
        for deployment_id in change.removed:
            if deployment_id not in self.refused:
                self._deployments.pop(deployment_id, None)
                self._hashes.pop(deployment_id, None)
            self._group_of.pop(deployment_id, None)
            pins = parts.released(deployment_id, groups[deployment_id])
            if pins:
                logger.info("released %d session pins of removed deployment %s", pins, deployment_id)
        parts.specs_changed({spec.deployment_id: spec for spec in touched}, list(change.removed))
        logger.info(
            "LiteLLM's deployments changed: added %s, updated %s, removed %s",
            [s.deployment_id for s in change.added] or "-",
            [s.deployment_id for s in change.updated] or "-",
            list(change.removed) or "-",
        )

    def _refuse(self, deployment_id: str, raw: Mapping[str, Any], digest: str, problems: list[str]) -> None:
        group = str(raw.get("model_name") or "")
        problems = [self._parts.redact(problem) for problem in problems]  # a bad value may be a secret
        self.refused[deployment_id] = {
            "deployment_id": deployment_id,
            "model_group": group,
            "reason": "invalid configuration: " + "; ".join(problems),
        }
        self._refused_hashes[deployment_id] = digest
        self._deployments.pop(deployment_id, None)
        self._hashes.pop(deployment_id, None)
        logger.error("deployment %s refused, kept out of routing: %s", deployment_id, "; ".join(problems))
        self._core.emit(
            FailoverEvent(
                event_type=EventType.DEPLOYMENT_REFUSED.value,
                model_group=group,
                deployment_id=deployment_id,
                reason="invalid model_info.failover: not routed",
                instance_id=self._instance_id,
                details={"problems": list(problems), "source": "litellm"},
            )
        )

    # -- status and lifecycle -----------------------------------------------------------------

    def unmanaged(self) -> list[dict[str, Any]]:
        """Every deployment LiteLLM routes that the plugin does not manage, and why."""
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        managed = self._core.health
        try:
            model_list = self._read(self._router)
        except Exception as exc:  # say so rather than claim every deployment is managed
            reason = f"LiteLLM's deployments could not be read ({type(exc).__name__})"
            return [{"deployment_id": None, "model_group": "", "reason": reason}]
        for index, raw in enumerate(model_list):
            deployment_id = deployment_id_of(raw)
            group = str(raw.get("model_name") or "") if isinstance(raw, Mapping) else ""
            reason = None
            if deployment_id is None:
                reason = f"model_list[{index}]: no model_info.id"
            elif deployment_id in seen:
                reason = "duplicate model_info.id"
            elif deployment_id in self.refused:
                reason = self.refused[deployment_id]["reason"]
            elif deployment_id not in managed:
                reason = "not adopted yet (next refresh)"
            if reason is not None:
                rows.append({"deployment_id": deployment_id, "model_group": group, "reason": reason})
            if deployment_id is not None:
                seen.add(deployment_id)
        return rows

    def status(self) -> dict[str, Any]:
        return {"refreshes": self.refreshes, "changes": self.changes, "failures": self.failures}

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="failover:deployments")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self.interval_s)
            # LiteLLM replaces a deployment's dict when it adds or updates one, so comparing the
            # dicts' identities finds every change cheaply; a full comparison of the fields, now
            # and then, also finds a dict someone edited in place.
            ticks += 1
            self.refresh(quick=ticks % FULL_EVERY != 0)


__all__ = ["DeploymentWatch", "LiveParts", "fingerprint", "secrets_of"]

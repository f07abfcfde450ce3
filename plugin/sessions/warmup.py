"""Optional warm-up (``sessions.warmup``): move sessions off a deployment that left the serving
set, and prime their new node's prefix cache before their next turn arrives.

Why proactive: a session re-pinned by its own next request sends its whole history to the new
node anyway (chat requests carry it; a rebuilt Responses request too), so warming the node after
that turn would prime what is already primed. The turn that pays the cold prefill is that next
one. So when a failover takes a deployment out of its group's serving set, the most recently
used sessions pinned to it (at most ``WARMUP_MAX_SESSIONS`` per failover) are re-pinned now, and
each new node that is self-hosted (vLLM, SGLang, TGI: the kinds with a prefix cache) gets the
session's stored conversation with ``max_tokens: 1``. Sessions beyond the limit, or whose node
is a hosted API, move lazily on their next turn.

Deployments are LiteLLM's as they are now (DESIGN §2): one added after start can be a warm-up's
target, one deleted never is. So nothing here is computed from the model list at start: the
target is picked from the core's current routing table, after the plugin has caught up with
LiteLLM's list (``sync``: a deletion the deployment watch has not read yet must not be picked);
whether it keeps a prefix cache is read from its current spec; and its LiteLLM params are read
from the plugin's live map of LiteLLM's deployments just before the request is sent, so one
deleted (or changed) while the warm-up waited is skipped (or warmed as it is now).

Everything here runs in background tasks, never on a request's path; a failed warm-up is
logged and counted, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import litellm
from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.deployments import DeploymentSpec
from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.sessions.content import MESSAGE_ROLES
from litellm_failover.sessions.identity import split_pin_key
from litellm_failover.sessions.tasks import TaskSet

logger = logging.getLogger("litellm_failover")

WARMUP_MAX_SESSIONS = 32
WARMUP_CONCURRENCY = 4
WARMUP_TIMEOUT_S = 30.0


class Warmer:
    def __init__(
        self,
        *,
        deployments: Mapping[str, Mapping[str, Any]],
        self_hosted: Callable[[str], bool],
        pick: Callable[[str], str | None],
        pinned_to: Callable[[str, str, int], list[str]],
        repin: Callable[[str, str, str, str, str], None],
        engine: Callable[[], AsyncEngine | None],
        redact: Callable[[str], str] = str,
    ) -> None:
        """``deployments``: the plugin's live map of LiteLLM's deployment dicts (the deployment
        watch adds, replaces and removes them); ``self_hosted``: whether a deployment, as it is
        now, keeps a prefix cache; ``pick``: a target from the group's current routing table."""
        self._deployments = deployments
        self._self_hosted = self_hosted
        self._pick = pick
        self._pinned_to = pinned_to
        self._repin = repin
        self._engine = engine
        self._redact = redact
        self._tasks = TaskSet()
        self._limit = asyncio.Semaphore(WARMUP_CONCURRENCY)
        # Catch up with LiteLLM's deployments before a pick and a send (the plugin wires in
        # ``DeploymentWatch.catch_up``, built after the sessions).
        self.sync: Callable[[], object] = lambda: None
        self.sent = 0
        self.failed = 0
        self.skipped = 0

    def on_event(self, event: FailoverEvent) -> None:
        """A core event listener: a group's serving set changed, move what left it."""
        if event.event_type != EventType.FAILOVER.value:
            return
        before = set(event.details.get("from") or ())
        after = set(event.details.get("to") or ())
        for deployment_id in sorted(before - after):
            self._tasks.spawn(self._move(event.model_group, deployment_id), "failover:warmup")

    async def _move(self, group: str, left: str) -> None:
        self.sync()
        for session_id in self._pinned_to(group, left, WARMUP_MAX_SESSIONS):
            target = self._pick(group)
            if target is None or target == left or not self._self_hosted(target):
                self.skipped += 1
                continue
            self._repin(session_id, group, left, target, f"{left} left the serving set: moved and warmed up")
            self._tasks.spawn(self._warm(session_id, target), "failover:warmup")

    async def _warm(self, pin_key: str, deployment_id: str) -> None:
        """``pin_key``: the caller's session (``identity.pin_key``); its current branch is sent."""
        from litellm_failover.store.conversations import load_chain

        caller, session_id = split_pin_key(pin_key)
        engine = self._engine()
        if engine is None:
            self.skipped += 1
            return
        async with self._limit:
            try:
                async with asyncio.timeout(WARMUP_TIMEOUT_S):
                    stored = await load_chain(engine, caller, session_id)
                    if not stored or any(m.content is None or m.role not in MESSAGE_ROLES for m in stored):
                        self.skipped += 1  # hashes only, or items a chat prefix can't carry
                        return
                    # As LiteLLM has it now: it may have been deleted or changed while this waited.
                    self.sync()
                    deployment = self._deployments.get(deployment_id)
                    if deployment is None or not self._self_hosted(deployment_id):
                        self.skipped += 1
                        return
                    messages = [{"role": m.role, "content": m.content} for m in stored]
                    params = dict(deployment.get("litellm_params") or {})
                    await litellm.acompletion(**params, messages=messages, max_tokens=1, stream=False)
                self.sent += 1
            except Exception as exc:
                self.failed += 1
                logger.warning(
                    "session warm-up of %s on %s failed: %s",
                    session_id,
                    deployment_id,
                    self._redact(str(exc)),
                )

    async def stop(self) -> None:
        await self._tasks.stop()

    def stats(self) -> dict[str, int]:
        return {"warmups_sent": self.sent, "warmups_failed": self.failed, "warmups_skipped": self.skipped}


def keeps_prefix_cache(spec: DeploymentSpec) -> bool:
    """Whether a deployment's endpoint kind keeps a prefix cache worth warming (vLLM, SGLang, TGI)."""
    from litellm_failover.providers import get_adapter, infer_kind

    kind = infer_kind(spec.litellm_params, spec.failover.provider, spec.deployment_id)
    return get_adapter(kind).self_hosted
